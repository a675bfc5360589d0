"""What a generator produced (`GeneratedGraph`), shared by the R-MAT and SBM generators."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class GeneratedGraph:
    """Files and counts of one generated graph.

    `num_edges` counts edge lines written (each once; SBM graphs are meant to be read undirected).
    `node ids` in the files are `0..num_nodes-1` unless `dense_ids` is False (SBM default), in which
    case they are a seeded random injection into [0, id_range).
    """

    kind: str                              # "rmat" or "sbm"
    edges_path: Path
    edge_format: str                       # csv, tsv, npy or parquet
    num_nodes: int
    num_edges: int
    seed: int
    params: dict = field(default_factory=dict)
    nodes_path: Path | None = None         # SBM: id,label,split
    features_path: Path | None = None      # SBM: float32 (num_nodes, feature_dim), nodes.csv order
    num_classes: int | None = None
    dense_ids: bool = True
    id_range: int = 0                      # all node ids lie in [0, id_range)
    bytes_written: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("edges_path", "nodes_path", "features_path"):
            d[k] = None if d[k] is None else str(d[k])
        return d
