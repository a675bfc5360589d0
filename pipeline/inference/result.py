"""Typed results of layer-wise inference (pipeline/inference/layerwise.py): what a run wrote and cost."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gstore.shard_array import ArrayRecord, open_array


@dataclass
class LayerStats:
    """One layer's pass. Seconds are wall clock; wait_s is the time the compute loop waited for
    the prefetch thread (the share of the layer the I/O was not hidden)."""

    layer: int
    in_width: int
    out_width: int
    seconds: float
    chunks: int
    hubs: int
    hub_slices: int
    edges: int
    max_edges: int
    max_rows: int
    wait_s: float
    compute_s: float
    write_s: float
    path: str = "blocks"       # "blocks": sampled blocks and a row gather; "sum": sum_layer.py

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "LayerStats":
        return LayerStats(**d)


@dataclass
class LayerwiseResult:
    """What a layer-wise run wrote and what it cost.

    root: out_dir; output: the record of `root/output.name`, float32 (num_nodes, out_dim);
    kept_layers: records of `root/layers/layer_<l>` (keep_layers=True), rows in `dtype`.
    peak_rss_bytes: VmHWM of the process at the end (mapped file pages included); peak_anon_bytes:
    the largest RssAnon seen after a chunk; start_rss_bytes: RSS when the run began.
    """

    root: str
    output: ArrayRecord | None      # None on the ranks other than 0 of a data-parallel run
    num_nodes: int
    out_dim: int
    dtype: str
    device: str
    memory_budget: int
    seconds: float
    peak_rss_bytes: int
    peak_anon_bytes: int
    start_rss_bytes: int
    layers: list[LayerStats] = field(default_factory=list)
    kept_layers: list[ArrayRecord] = field(default_factory=list)

    @property
    def output_path(self) -> Path:
        """The output array's directory (a zarr v3 array)."""
        return Path(self.root) / self.output.name

    def open_output(self) -> np.ndarray:
        """Memory map of the output rows, float32 (num_nodes, out_dim), read-only."""
        return open_array(Path(self.root), self.output)

    def to_json(self) -> dict:
        d = asdict(self)
        d["output"] = self.output.to_json()
        d["kept_layers"] = [r.to_json() for r in self.kept_layers]
        d["layers"] = [s.to_json() for s in self.layers]
        return d

    @staticmethod
    def from_json(d: dict) -> "LayerwiseResult":
        d = dict(d)
        d["output"] = ArrayRecord.from_json(d["output"])
        d["kept_layers"] = [ArrayRecord.from_json(r) for r in d.get("kept_layers", [])]
        d["layers"] = [LayerStats.from_json(s) for s in d.get("layers", [])]
        return LayerwiseResult(**d)
