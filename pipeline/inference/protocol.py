"""What layer-wise inference needs from a model: its layers one at a time, with split aggregation.

Inference computes layer l for a chunk of destination nodes from layer l-1's rows of their full
in-neighborhoods. A hub's in-edges may not fit one chunk, so a layer's neighborhood aggregation is
split in two steps: `aggregate` over any subset of a destination's in-edges gives a partial
`Aggregate`; `merge` combines partials over disjoint edge subsets; `finish` turns the merged
aggregate (and the destination's own row) into the layer's output. For every block,
`finish(l, h[:num_dst], merge(aggregate(l, h, b1), aggregate(l, h, b2)), deg[:num_dst])` equals
`forward_layer(l, h, b, deg)` when b1 and b2 split b's edges (to float tolerance).

Read-out (jumping knowledge) is row-local: `readout_step` folds each layer's rows into a running
state of `readout_dim` columns (kept on disk by inference, chunk by chunk), `readout` maps the final
state (or, with readout_dim == 0, the last layer's rows) to the model's output (logits).

Everything runs in eval mode under torch.no_grad(); tensors are float32 on the model's device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from gstore.pipeline.loader.batch import LayerBlock


@dataclass
class Aggregate:
    """A partial neighborhood aggregate for `num_dst` destinations.

    total: float32 (num_dst, k) sum of per-edge messages (for GAT: exp(score - peak)-weighted sum,
        k = heads * channels). count: float32 (num_dst,) number of edges aggregated.
    peak: GAT only, float32 (num_dst, heads) running max of attention scores; None otherwise.
    weight: GAT only, float32 (num_dst, heads) sum of exp(score - peak); None otherwise.
    """

    total: torch.Tensor
    count: torch.Tensor
    peak: torch.Tensor | None = None
    weight: torch.Tensor | None = None


class LayerwiseModel(Protocol):
    """A GNN whose layers inference can run one at a time (train/models.py GNN implements it)."""

    @property
    def num_layers(self) -> int: ...

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...

    @property
    def readout_dim(self) -> int:
        """Columns of the read-out state (0: no read-out, the last layer's output is the output)."""

    def layer_dim(self, layer: int) -> int:
        """Width of layer `layer`'s output rows (layer = 0 .. num_layers-1)."""

    def aggregate(self, layer: int, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor) -> Aggregate:
        """Partial aggregate over `block`'s edges. h_src: (num_src, layer input width) rows of the
        block's sources (destinations first); degree_src: float32 (num_src,) full-graph in-degree."""

    def merge(self, layer: int, a: Aggregate, b: Aggregate) -> Aggregate:
        """Aggregate over the union of two disjoint edge sets of the same destinations."""

    def finish(self, layer: int, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor) -> torch.Tensor:
        """Layer output (num_dst, layer_dim(layer)), normalisation, activation and residual included."""

    def forward_layer(self, layer: int, h_src: torch.Tensor, block: LayerBlock,
                      degree_src: torch.Tensor) -> torch.Tensor:
        """finish(aggregate(...)) in one call: (num_dst, layer_dim(layer))."""

    def readout_step(self, layer: int, h: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor | None:
        """Fold layer `layer`'s rows h into the read-out state rows (None on the first layer);
        returns the new state (None when readout_dim == 0)."""

    def readout(self, state: torch.Tensor | None, h_last: torch.Tensor) -> torch.Tensor:
        """Output rows (n, out_dim) from the final state (or h_last when readout_dim == 0)."""


# How a layer aggregates, when it is a sum of its sources' rows (SumAggregating.sum_aggregation):
SUM = "sum"                   # sum_u h_u (SAGE's mean divides by the count in finish)
GCN_SUM = "gcn"               # sum_u h_u / sqrt(d_u + 1), d_u = u's full in-degree
NO_NEIGHBORS = "none"         # the neighborhood is ignored (the MLP baseline)


@runtime_checkable
class SumAggregating(Protocol):
    """A LayerwiseModel whose layers may aggregate a linear function of their sources' rows; for
    those inference takes the sum path (pipeline/inference/sum_layer.py), which needs no block."""

    def sum_aggregation(self, layer: int) -> str | None:
        """SUM, GCN_SUM or NO_NEIGHBORS for a layer `aggregate_sum` can serve, None for any other
        (attention): that layer takes the block path."""

    def aggregate_sum(self, layer: int, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        """The Aggregate `aggregate` would return over every in-edge of the destinations, from
        total: float32 (num_dst, layer input width), the row sums `sum_aggregation` names, and
        count: float32 (num_dst,), their in-edge counts."""

    def finish(self, layer: int, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor) -> torch.Tensor: ...
