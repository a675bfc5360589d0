"""GraphSAGE under its old name (train/trainer.py and the demo use it): the `GNN` of train/models.py
with conv="sage". New code builds `GNN("sage", ...)` directly."""
from __future__ import annotations

from gstore.train.models import GNN


class GraphSAGE(GNN):
    """`num_layers` SAGE layers (mean aggregator, root weight), ReLU and dropout between them;
    `model(x, blocks)` -> logits of blocks[-1]'s destinations."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 dropout: float = 0.5) -> None:
        super().__init__("sage", in_dim, hidden, out_dim, num_layers, dropout=dropout)
