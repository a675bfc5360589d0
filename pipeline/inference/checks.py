"""Input checks of layer-wise inference: one-line GStoreErrors before anything is written."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gstore.errors import OptionError, StoreError
from gstore.memory import parse_bytes
from gstore.pipeline.inference.chunks import working_set
from gstore.pipeline.inference.protocol import LayerwiseModel

STORAGE_DTYPES = ("float32", "float16")


def check_dtype(dtype) -> str:
    name = str(np.dtype(dtype)) if isinstance(dtype, (np.dtype, type)) else str(dtype)
    if name not in STORAGE_DTYPES:
        raise OptionError(f"inference dtype must be float32 or float16, got {dtype!r}")
    return name


def check_device(device, model) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"unknown device {device!r}", hint="use cpu, cuda or cuda:<index>") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} asked but torch sees no CUDA device", hint="use --device cpu")
    if isinstance(model, torch.nn.Module):
        param = next(iter(model.parameters()), None)
        if param is not None and param.device.type != dev.type:
            raise OptionError(f"the model's weights are on {param.device}, inference was asked to run "
                              f"on {dev}", hint=f"move the model first (model.to({str(dev)!r}))")
    return dev


def check_store(store) -> np.ndarray:
    if not store.has_array("features"):
        raise OptionError("store has no features: layer-wise inference needs node features",
                          path=store.path, hint="ingest the store again with --features")
    store.check_structure(("features",))
    features = store.features
    if features.ndim != 2 or features.dtype.name not in STORAGE_DTYPES:
        raise StoreError(f"features are {features.dtype} {features.shape}, not float32/float16 (N, F)",
                         path=store.path, hint="rebuild the store")
    return features


def check_model(model: LayerwiseModel, feature_dim: int) -> list[int]:
    """[in_dim, layer_dim(0), ..., layer_dim(L-1)] after checking the model's sizes."""
    def count(what: str, value, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise OptionError(f"model {what} must be an integer >= {lo}, got {value!r}")
        return int(value)

    layers = count("num_layers", model.num_layers, 1)
    in_dim = count("in_dim", model.in_dim, 1)
    count("out_dim", model.out_dim, 1)
    count("readout_dim", model.readout_dim, 0)
    if in_dim != feature_dim:
        raise OptionError(f"model takes {in_dim} input features, the store's features have {feature_dim}",
                          hint="use the store the model was trained on, or a model built for it")
    return [in_dim] + [count(f"layer_dim({l})", model.layer_dim(l), 1) for l in range(layers)]


def check_out_dir(out_dir: Path, targets: list[str], overwrite: bool) -> None:
    if os.path.lexists(out_dir) and not out_dir.is_dir():     # a symlink to a directory is fine
        raise OptionError("output directory exists and is not a directory", path=out_dir,
                          hint="choose another output directory")
    if len(set(targets)) != len(targets):
        raise OptionError(f"output name {targets[0]!r} is taken by the kept layers' directory",
                          hint="choose another output name")
    for name in targets:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise OptionError(f"output name {name!r} must be a plain file name (no '/', not hidden)")
        path = out_dir / name
        if not os.path.lexists(path):
            continue
        if not overwrite:
            raise OptionError(f"{name} already exists in the output directory", path=path,
                              hint="pass --force to replace it, or choose another output directory")
        if path.is_symlink() or not (path / "zarr.json").is_file():
            raise OptionError(f"{name} exists and is not an array gstore wrote, so it is not replaced",
                              path=path, hint="move it away, or choose another output directory")


def check_threads(threads: int | None) -> int:
    """numba threads for the prefetch kernels: `threads`, or what torch's pool leaves free (>= 1)."""
    import numba

    limit = int(numba.config.NUMBA_NUM_THREADS)
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(limit, cores - torch.get_num_threads()))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= limit:
        raise OptionError(f"prefetch threads must be an integer in [1, {limit}], got {threads!r}")
    return int(threads)


def check_inference_budget(store, model: LayerwiseModel, memory_budget: int | str, dtype: str = "float32") -> None:
    """BudgetError when `memory_budget` cannot hold one chunk of some layer: what layerwise_inference
    checks first, for callers (gstore train) that must refuse before hours of work, not after."""
    budget, dtype = parse_bytes(memory_budget), check_dtype(dtype)
    features = check_store(store)
    widths = check_model(model, int(features.shape[1]))
    for layer, (w_in, w_out) in enumerate(zip(widths, widths[1:])):
        layer_working_set(budget, layer, w_in, w_out, features, dtype, model)


def layer_working_set(budget: int, layer: int, w_in: int, w_out: int, features: np.ndarray,
                      dtype: str, model: LayerwiseModel):
    """The chunk plan's limits (chunks.working_set) for one layer under `budget` bytes."""
    last = layer == model.num_layers - 1
    return working_set(budget, in_width=w_in,
                       in_itemsize=features.dtype.itemsize if layer == 0 else np.dtype(dtype).itemsize,
                       out_width=w_out, out_itemsize=np.dtype(dtype).itemsize,
                       readout_dim=int(model.readout_dim), final_dim=int(model.out_dim) if last else 0,
                       layer=layer)
