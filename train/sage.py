"""GraphSAGE (mean aggregator) over the loader's sampled blocks, in plain torch (no PyG needed)."""
from __future__ import annotations

import torch
from torch import nn

from gstore.pipeline.loader.batch import LayerBlock


class SAGELayer(nn.Module):
    """h_dst' = W_self h_dst + W_neigh mean_{src -> dst} h_src."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neigh = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, h: torch.Tensor, block: LayerBlock) -> torch.Tensor:
        """h: float32 (num_src, in_dim) -> float32 (num_dst, out_dim)."""
        src, dst = block.edge_index[0], block.edge_index[1]
        agg = torch.zeros(block.num_dst, h.shape[1], dtype=h.dtype, device=h.device)
        agg.index_add_(0, dst, h[src])
        deg = torch.zeros(block.num_dst, dtype=h.dtype, device=h.device)
        deg.index_add_(0, dst, torch.ones_like(dst, dtype=h.dtype))
        agg = agg / deg.clamp(min=1).unsqueeze(1)
        return self.lin_self(h[:block.num_dst]) + self.lin_neigh(agg)


class GraphSAGE(nn.Module):
    """len(blocks) SAGE layers with ReLU and dropout between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, dropout: float = 0.5):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(SAGELayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, blocks: list[LayerBlock]) -> torch.Tensor:
        """x: (num_nodes, in_dim) features of the batch's nodes -> (num_seeds, out_dim) logits."""
        h = x[:blocks[0].num_src]
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(h, block)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
                h = nn.functional.dropout(h, self.dropout, self.training)
        return h
