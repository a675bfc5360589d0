"""Models on precomputed propagated features (row batches, pipeline/loader/rows.py): SGC and SIGN.

The graph is folded into the inputs before training (pipeline/propagation: A_hat^k X), so these are
plain MLPs over rows and train with the loop's `model(x, blocks, degree)` call with no blocks
(`num_layers = 0`: no graph layers; `Batch.layer_blocks(0)` is []).

    SGC  (Wu et al. 2019):   logits = Linear(F -> C)(dropout(A_hat^K X))
    SIGN (Frasca, Rossi et al. 2020): for each hop k = 0..K (x holds [X, A X, ..., A^K X] side by side)
             h_k = dropout(relu(batch_norm(Linear_k(F -> hidden)(s_k * input_dropout(x_k)))))
         h = concat(h_0, ..., h_K)                       ((K+1) * hidden)
         head: `layers - 1` blocks Linear -> batch_norm -> relu -> dropout, then Linear(-> C)
(as PyG's examples/sign.py and the SIGN authors' ogbn code: one "inception" branch per operator,
concatenated, then a feed-forward head). `input_dropout` applies to the input rows (default: the
same as `dropout`, as in the GNN models, train/models.py; the SIGN authors' ogbn code has its own
input dropout), `dropout` after each layer. s_k (`hop_scales`, a buffer) brings every hop to the
raw features' magnitude; see hop_scales() for why.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
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
                 dropout: float = 0.5, input_dropout: float | None = None, batch_norm: bool = True,
                 hop_scales: Sequence[float] | None = None) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hops", hops), ("hidden", hidden), ("out_dim", out_dim),
                        ("layers", layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OptionError(f"SIGN {name} must be an integer >= 1, got {v!r}")
        self.in_dim, self.hops, self.hidden, self.out_dim = in_dim, hops, hidden, out_dim
        self.dropout = float(dropout)
        self.input_dropout = self.dropout if input_dropout is None else float(input_dropout)
        # hop k's columns are multiplied by hop_scales[k] before its branch (a buffer: checkpoints
        # and predictions carry it); see hop_scales() for why
        scales = torch.ones(hops + 1) if hop_scales is None else torch.as_tensor(hop_scales, dtype=torch.float32)
        if scales.shape != (hops + 1,) or not bool(torch.all(torch.isfinite(scales) & (scales > 0))):
            raise OptionError(f"SIGN hop_scales must be {hops + 1} positive finite numbers, got {hop_scales!r}")
        self.register_buffer("hop_scales", scales.clone())
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
        x = F.dropout(x, self.input_dropout, self.training)
        for k, (lin, norm) in enumerate(zip(self.branches, self.branch_norms)):
            h = lin(x[:, k * self.in_dim:(k + 1) * self.in_dim] * self.hop_scales[k])
            hs.append(F.dropout(F.relu(_normed(norm, h)), self.dropout, self.training))
        h = torch.cat(hs, dim=1)
        for lin, norm in zip(self.head, self.head_norms):
            h = F.dropout(F.relu(_normed(norm, lin(h))), self.dropout, self.training)
        return self.out(h)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint from before the hop scales (they were 1.0 then) keeps predicting as trained
        state_dict.setdefault(prefix + "hop_scales", torch.ones(self.hops + 1))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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


def hop_scales(hops, rows: np.ndarray, max_rows: int = 65536) -> list[float]:
    """Per-hop input scales for SIGN: RMS(hop 0) / RMS(hop k) over `rows` (node ids, int64; at most
    `max_rows` of them, evenly strided, are read), so every hop block enters its branch at the raw
    features' magnitude (scale 1.0 for hop 0).

    Why: propagation averages, so A_hat^k X shrinks with k where features are noisy (the bench's SBM:
    column std 1.00, 0.28, 0.12 for hops 0, 1, 2). At equal initialisation the smoothed hops, the
    informative ones, then start with smaller activations and weight decay holds their weights
    down more, and SIGN leans on the noisy raw features. `hops`: the (N, F) arrays [X, A X, ...]
    (memory maps; float16 or float32). An all-zero hop keeps scale 1.0."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > max_rows:
        rows = rows[np.linspace(0, len(rows) - 1, max_rows).astype(np.int64)]
    rows = np.sort(rows)                 # sequential reads of the memory maps
    rms = [_rms(a, rows) for a in hops]
    base = rms[0]
    return [1.0 if k == 0 or r == 0.0 or base == 0.0 else base / r for k, r in enumerate(rms)]


def _rms(a, rows: np.ndarray, chunk: int = 4096) -> float:
    """Root mean square of a[rows], read `chunk` rows at a time (float64 sums: O(chunk x F) memory
    for any number of rows)."""
    if not len(rows):
        return 0.0
    total = 0.0
    for i in range(0, len(rows), chunk):
        total += float(np.square(np.asarray(a[rows[i:i + chunk]], dtype=np.float64)).sum())
    return float(np.sqrt(total / (len(rows) * a.shape[1]))) if a.shape[1] else 0.0
