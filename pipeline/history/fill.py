"""Fill a run's embedding stores with one layer-wise inference pass (no second inference code).

`fill_embeddings` runs pipeline/inference/layerwise.py with keep_layers=True and the history dtype
into a marked scratch directory under RUN_DIR/history, then moves each kept layer's data file
(raw rows at offset 0 of its zarr shard: what layer-wise inference itself memory-maps) into place
as emb_<l>, cut to N rows; the rest (the logits, the shard indexes) is deleted with the scratch dir.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from gstore import scratch
from gstore.memory import DEFAULT_MEMORY_BUDGET
from gstore.pipeline.history.arrays import HistoryLayout
from gstore.progress import NULL_PROGRESS, Progress
from gstore.shard_array import shard_path

log = logging.getLogger(__name__)

FILL_DIR = ".fill"
FILL_PURPOSE = "history fill (layer-wise inference)"


def fill_embeddings(store, model, root: Path, layout: HistoryLayout, *,
                    memory_budget: int | str = DEFAULT_MEMORY_BUDGET, device="cpu",
                    progress: Progress = NULL_PROGRESS) -> dict:
    """Write model's layer l rows of every node into root/emb_<l> (l = 0..L-2), replacing them.
    The embedding files must not be mapped meanwhile (HistoryArrays closed). Returns the inference
    result's JSON (timings, peak RSS / anon RSS)."""
    from gstore.pipeline.inference.layerwise import LAYERS_DIR, layerwise_inference

    root = Path(root)
    work = root / FILL_DIR
    if work.exists():
        scratch.reclaim(work, "an interrupted history fill")
    scratch.create(work, FILL_PURPOSE, root)
    try:
        res = layerwise_inference(store, model, work, memory_budget=memory_budget, dtype=layout.dtype,
                                  device=device, progress=progress, keep_layers=True)
        for l, width in enumerate(layout.widths):
            data = shard_path(work / LAYERS_DIR / f"layer_{l}", 2)
            if layout.num_nodes and width:
                with open(data, "r+b") as fh:
                    fh.truncate(layout.num_nodes * width * np.dtype(layout.dtype).itemsize)
                os.replace(data, root / f"emb_{l}")
            else:
                (root / f"emb_{l}").write_bytes(b"")
        log.info("history filled by layer-wise inference in %.1f s (peak anon RSS %d)", res.seconds,
                 res.peak_anon_bytes)
        return {"seconds": res.seconds, "peak_rss_bytes": res.peak_rss_bytes,
                "peak_anon_bytes": res.peak_anon_bytes}
    except OSError as exc:
        scratch.name_path_in(exc, root)
        raise
    finally:
        scratch.remove(work)

