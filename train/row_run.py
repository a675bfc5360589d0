"""`gstore train --method sgc|sign`: what train_run (train/run.py) does differently for row methods.

The graph enters once, before training: the propagated features A_hat^k X, k = 1..hops, are
arrays of the store (pipeline/propagation, derived group `PropagationParams.key()`), computed by
`propagate` when a run finds them missing (logged; a store write through the store-update
transaction, like a cache: the next run with the same --norm / --self-loops / --propagate-dtype
reuses them, a larger --hops only adds the missing hops) and memory-mapped otherwise.

    sgc:  x = A_hat^K X                  (B, F)           SGC: Linear(F -> C)
    sign: x = [X, A_hat X, ..., A_hat^K X] (B, (K+1) F)   SIGN: per-hop MLP branches + head

Training, the per-epoch evaluation and the final predictions all read row batches
(pipeline/loader/rows.py) through the one training loop (train/loop.py); there is no graph pass
left, so predictions stream every node's rows through the model into a logits file in the run
dir's scratch (`row_logits`) and end in the same `write_predictions` / `split_metrics` as
layer-wise inference (run.predict_into).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

import gstore
from gstore import scratch
from gstore.errors import StoreError
from gstore.memory import parse_bytes
from gstore.progress import NULL_PROGRESS, Progress
from gstore.seeding import derive_seed
from gstore.train.run_config import TrainConfig

log = logging.getLogger(__name__)

LOGITS_DIR = "row-logits"          # RUN_DIR/inference/row-logits: scratch, removed after predictions
LOGITS_PURPOSE = "row-batch logits"


def propagation_params(cfg: TrainConfig):
    from gstore.pipeline.propagation import PropagationParams

    return PropagationParams(hops=cfg.hops, norm=cfg.norm, self_loops=cfg.self_loops,
                             dtype=cfg.propagate_dtype)


def attach_rows(cfg: TrainConfig, inputs, progress: Progress = NULL_PROGRESS) -> None:
    """Put the run's propagated features into `inputs.rows` (and the store reopened after a
    propagation into `inputs.store`), computing the hops the store lacks."""
    from gstore.pipeline.propagation import open_propagated, propagate

    params = propagation_params(cfg)
    rows = open_propagated(inputs.store, params)
    if rows is None:
        log.info("store %s has no %d-hop propagated features %s: computing them (kept in the store "
                 "for later runs)", cfg.store, params.hops, params.key())
        res = propagate(cfg.store, params, memory_budget=cfg.memory_budget, progress=progress)
        log.info("propagation: hops %s computed, %s reused, %.1f s", res.hops_computed, res.hops_reused,
                 res.seconds)
        inputs.store = gstore.open(cfg.store)        # its manifest now names the new arrays
        rows = open_propagated(inputs.store, params)
        if rows is None:
            raise StoreError(f"propagation of {params.key()} finished but the store does not list "
                             f"hops 1..{params.hops}", path=cfg.store, hint="run `gstore verify` on it")
    else:
        log.info("reusing the propagated features %s (hops 1..%d) of %s", params.key(), params.hops,
                 cfg.store)
    inputs.rows = rows


def method_columns(cfg: TrainConfig, rows) -> tuple[list[np.ndarray], list[str]]:
    """The arrays a batch's x puts side by side, with their names: sgc [A^K X]; sign [X, ..., A^K X]."""
    key = rows.params.key()
    names = ["features"] + [f"{key}/hop{k}" for k in range(1, len(rows.hops))]
    picked = [cfg.hops] if cfg.method == "sgc" else list(range(cfg.hops + 1))
    return [rows.hops[k] for k in picked], [names[k] for k in picked]


def build_row_model(cfg: TrainConfig, inputs) -> torch.nn.Module:
    from gstore.train.row_models import SGC, SIGN, hop_scales

    torch.manual_seed(derive_seed(cfg.seed, "init"))
    if cfg.method == "sgc":
        model = SGC(inputs.in_dim, inputs.num_classes, dropout=cfg.dropout)
    else:
        # every hop at the raw features' magnitude (row_models.hop_scales: measured on the train
        # rows, a strided sample of at most 65,536 of them; a checkpoint's saved scales replace these)
        scales = hop_scales(inputs.rows.hops[:cfg.hops + 1], np.asarray(inputs.store.split("train")))
        log.debug("sign hop scales (RMS of X / RMS of A^k X; a loaded checkpoint's replace them): %s",
                  ", ".join(f"{v:.3g}" for v in scales))
        model = SIGN(inputs.in_dim, cfg.hops, cfg.hidden, inputs.num_classes, cfg.layers,
                     dropout=cfg.dropout, input_dropout=cfg.input_dropout, batch_norm=cfg.batch_norm,
                     hop_scales=scales)
    return model.to(inputs.device)


def row_loader(cfg: TrainConfig, inputs, split, *, batch_size: int, shuffle: bool, seed: int,
               labels: bool = True):
    """Row batches of `split` (a split name, or None: every node in id order)."""
    from gstore.pipeline.loader.rows import RowLoader

    arrays, names = method_columns(cfg, inputs.rows)
    return RowLoader(inputs.store, arrays, batch_size, split, names=names, shuffle=shuffle, seed=seed,
                     prefetch=cfg.prefetch, device=inputs.device, num_workers=cfg.num_workers,
                     labels=labels)


def predict_batch_rows(cfg: TrainConfig, width: int, batch_size: int) -> int:
    """Rows per prediction batch: `batch_size`, fewer when the loader's buffers in flight
    (prefetch + 2 per worker + 2, float32 rows of `width`) would pass half the memory budget."""
    in_flight = cfg.prefetch + 2 * cfg.num_workers + 2
    cap = parse_bytes(cfg.memory_budget) // (2 * in_flight * max(1, width) * 4)
    return int(max(1, min(batch_size, cap)))


@torch.no_grad()
def row_logits(cfg: TrainConfig, inputs, model: torch.nn.Module, run_path: Path, batch_size: int,
               progress: Progress = NULL_PROGRESS) -> tuple[np.ndarray, Path]:
    """Logits of every node, float32 (N, C), streamed batch by batch into `logits.npy` of the
    scratch dir RUN_DIR/inference/row-logits (written with pwrite: no growing mapping, O(batch)
    memory). Returns the file's read-only memory map and the scratch dir (the caller removes it)."""
    from gstore.train.loop import forward

    n, c = int(inputs.store.num_nodes), int(inputs.num_classes)
    work = scratch.create(Path(run_path) / "inference" / LOGITS_DIR, LOGITS_PURPOSE, run_path)
    path = work / "logits.npy"
    try:
        header = np.lib.format.open_memmap(path, "w+", np.float32, (n, c))
        offset = header.offset
        del header
        model.eval()
        loader = row_loader(cfg, inputs, None, batch_size=predict_batch_rows(cfg, width(cfg, inputs),
                                                                             batch_size),
                            shuffle=False, seed=0, labels=False)
        fd = os.open(path, os.O_WRONLY)
        try:
            with progress.phase("predictions (row batches)", total=len(loader), unit="batches") as bar:
                for batch in loader:
                    out = np.ascontiguousarray(forward(model, batch).float().cpu().numpy())
                    view, pos = memoryview(out).cast("B"), offset + batch.index * loader.batch_size * c * 4
                    done = 0
                    while done < len(view):
                        done += os.pwrite(fd, view[done:], pos + done)
                    bar.advance(1)
        finally:
            os.close(fd)
        return np.load(path, mmap_mode="r"), work
    except BaseException as exc:
        if isinstance(exc, OSError):
            scratch.name_path_in(exc, work)
        scratch.remove(work)
        raise


def width(cfg: TrainConfig, inputs) -> int:
    arrays, _ = method_columns(cfg, inputs.rows)
    return sum(int(a.shape[1]) for a in arrays)
