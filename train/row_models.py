"""Models on precomputed propagated features (row batches, pipeline/loader/rows.py): SGC and SIGN.

The graph is folded into the inputs before training (pipeline/propagation: A_hat^k X), so these are
plain MLPs over rows and train with the loop's `model(x, blocks, degree)` call with no blocks
(`num_layers = 0`: no graph layers; `Batch.layer_blocks(0)` is []).

    SGC  (Wu et al. 2019):   logits = Linear(F -> C)(dropout(A_hat^K X))
    SIGN (Rossi et al. 2020): for each hop k = 0..K (x holds [X, A X, ..., A^K X] side by side)
             h_k = dropout(relu(batch_norm(Linear_k(F -> hidden)(dropout(x_k)))))
         h = concat(h_0, ..., h_K)                       ((K+1) * hidden)
         head: `layers - 1` blocks Linear -> batch_norm -> relu -> dropout, then Linear(-> C)
(as PyG's examples/sign.py and the SIGN authors' ogbn code: one "inception" branch per operator,
concatenated, then a feed-forward head). `dropout` applies to the inputs and between layers, as in
the GNN models (train/models.py); the authors' code has an input dropout too.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gstore.errors import OptionError


class SGC(nn.Module):
    """Logistic regression on A_hat^K X. x: float32 (B, in_dim) -> logits float32 (B, out_dim)."""

    num_layers = 0

    def __init__(self, in_dim: int, out_dim: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.dropout = int(in_dim), int(out_dim), float(dropout)
        self.lin = nn.Linear(self.in_dim, self.out_dim)

    def forward(self, x: torch.Tensor, blocks=(), degree=None) -> torch.Tensor:
        _check_input(self, x, self.in_dim)
        return self.lin(F.dropout(x, self.dropout, self.training))


class SIGN(nn.Module):
    """SIGN over hops 0..hops of in_dim columns each. x: float32 (B, (hops + 1) * in_dim) -> logits
    float32 (B, out_dim). `layers`: layers of the head (1: a Linear straight to the classes)."""

    num_layers = 0

    def __init__(self, in_dim: int, hops: int, hidden: int, out_dim: int, layers: int = 2, *,
                 dropout: float = 0.5, batch_norm: bool = True) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hops", hops), ("hidden", hidden), ("out_dim", out_dim),
                        ("layers", layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OptionError(f"SIGN {name} must be an integer >= 1, got {v!r}")
        self.in_dim, self.hops, self.hidden, self.out_dim = in_dim, hops, hidden, out_dim
        self.dropout = float(dropout)
        self.branches = nn.ModuleList(nn.Linear(in_dim, hidden) for _ in range(hops + 1))
        self.branch_norms = nn.ModuleList(
            nn.BatchNorm1d(hidden) if batch_norm else nn.Identity() for _ in range(hops + 1))
        width = (hops + 1) * hidden
        self.head = nn.ModuleList()
        self.head_norms = nn.ModuleList()
        for _ in range(layers - 1):
            self.head.append(nn.Linear(width, hidden))
            self.head_norms.append(nn.BatchNorm1d(hidden) if batch_norm else nn.Identity())
            width = hidden
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, blocks=(), degree=None) -> torch.Tensor:
        _check_input(self, x, (self.hops + 1) * self.in_dim)
        hs = []
        x = F.dropout(x, self.dropout, self.training)
        for k, (lin, norm) in enumerate(zip(self.branches, self.branch_norms)):
            h = lin(x[:, k * self.in_dim:(k + 1) * self.in_dim])
            hs.append(F.dropout(F.relu(_normed(norm, h)), self.dropout, self.training))
        h = torch.cat(hs, dim=1)
        for lin, norm in zip(self.head, self.head_norms):
            h = F.dropout(F.relu(_normed(norm, lin(h))), self.dropout, self.training)
        return self.out(h)


def _normed(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Batch norm of h, with the running statistics for a one-row batch in training (batch
    statistics of one row are undefined: torch raises), e.g. the last batch of a split."""
    if isinstance(norm, nn.BatchNorm1d) and norm.training and h.shape[0] == 1:
        return F.batch_norm(h, norm.running_mean, norm.running_var, norm.weight, norm.bias, False,
                            0.0, norm.eps)
    return norm(h)


def _check_input(model: nn.Module, x: torch.Tensor, width: int) -> None:
    if x.dim() != 2 or x.shape[1] != width:
        raise OptionError(f"{type(model).__name__} takes rows of {width} columns, got {tuple(x.shape)}",
                          hint="the row loader's arrays must match the model (hops, feature width)")
