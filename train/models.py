"""`GNN`: SAGE / GCN / GAT stacks over the loader's blocks, trainable and layer-wise inferable.

`GNN(conv, in_dim, hidden, out_dim, num_layers, ...)` implements the LayerwiseModel protocol
(pipeline/inference/protocol.py) and trains with `model(x, blocks, degree)`, where blocks come from
`Batch.layer_blocks(model.num_layers)`. The training forward is built from the protocol's own steps
(forward_layer, readout_step, readout), so with full-neighborhood blocks it computes exactly what
layer-wise inference computes.

Layer l (0-based), input h (rows of block l's sources, destinations first):
    h = dropout(h)                                     (training only)
    z = conv_l(h, block_l, degree)                     (num_dst, layer_dim(l))
    hidden layers (all but the last, every layer with jk):
        z = z + residual_l(h[:num_dst])                (identity when widths match, else Linear)
        z = relu(batch_norm_l(z))
Read-out: jk="none": the last layer's rows are the logits; jk="cat": Linear(L * hidden -> out) of
the concatenated layers, computed as a running sum of per-layer products (sum_l h_l W_l) so the
state is out_dim wide; jk="max": Linear(hidden -> out) of the element-wise max over layers.
GAT hidden layers concatenate `heads` heads of hidden // heads channels; the output layer averages
`heads` heads of out_dim channels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from gstore.errors import OptionError
from gstore.pipeline.inference.protocol import Aggregate
from gstore.pipeline.loader.batch import LayerBlock
from gstore.train.layers import GATConv, GCNConv, MLPLayer, SAGEConv, dropout, prefix

CONVS = ("sage", "gcn", "gat", "mlp")
JKS = ("none", "cat", "max")


def _int_option(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionError(f"model {name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides a GNN's architecture (checkpoints store it as JSON)."""

    conv: str
    in_dim: int
    hidden: int
    out_dim: int
    num_layers: int
    dropout: float = 0.5
    batch_norm: bool = False
    residual: bool = False
    jk: str = "none"
    heads: int = 4

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise OptionError(f"unknown model {self.conv!r}", hint=f"use one of {', '.join(CONVS)}")
        if self.jk not in JKS:
            raise OptionError(f"unknown jumping knowledge mode {self.jk!r}",
                              hint=f"use one of {', '.join(JKS)}")
        for name, low in (("in_dim", 1), ("hidden", 1), ("out_dim", 1), ("num_layers", 1),
                          ("heads", 1)):
            _int_option(name, getattr(self, name), low)
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
            raise OptionError(f"model dropout must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "dropout", float(d))
        for name in ("batch_norm", "residual"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"model {name} must be true or false, got {getattr(self, name)!r}")
        if self.conv == "gat" and self.hidden % self.heads:
            raise OptionError(f"gat: hidden {self.hidden} is not a multiple of heads {self.heads}",
                              hint="hidden layers concatenate the heads: pick hidden = k * heads")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "ModelConfig":
        if not isinstance(obj, dict):
            raise OptionError(f"model config must be an object, got {type(obj).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise OptionError(f"model config has unknown fields {unknown}")
        try:
            return cls(**obj)
        except TypeError as err:  # a required field missing
            raise OptionError(f"model config is incomplete: {err}") from None


class GNN(nn.Module):
    """A stack of `num_layers` convs of one kind (see the module docstring for the layer rule)."""

    def __init__(self, conv: str, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 dropout: float = 0.5, batch_norm: bool = False, residual: bool = False,
                 jk: str = "none", heads: int = 4) -> None:
        super().__init__()
        self.config = cfg = ModelConfig(conv, in_dim, hidden, out_dim, num_layers, dropout,
                                        batch_norm, residual, jk, heads)
        L = cfg.num_layers
        self._hidden_layers = L if cfg.jk != "none" else L - 1
        self._dims = [cfg.hidden if l < self._hidden_layers else cfg.out_dim for l in range(L)]
        ins = [cfg.in_dim] + self._dims[:-1]
        self.convs = nn.ModuleList(self._make_conv(ins[l], self._dims[l], l) for l in range(L))
        hidden = range(self._hidden_layers)
        self.norms = nn.ModuleList(nn.BatchNorm1d(self._dims[l]) for l in hidden) \
            if cfg.batch_norm else None
        self.residuals = nn.ModuleList(
            nn.Identity() if ins[l] == self._dims[l] else nn.Linear(ins[l], self._dims[l], bias=False)
            for l in hidden) if cfg.residual else None
        if cfg.jk == "cat":
            self.jk_lin = nn.Linear(L * cfg.hidden, cfg.out_dim)
        elif cfg.jk == "max":
            self.jk_lin = nn.Linear(cfg.hidden, cfg.out_dim)
        else:
            self.jk_lin = None

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "GNN":
        return cls(**asdict(cfg))

    def _make_conv(self, d_in: int, d_out: int, layer: int) -> nn.Module:
        cfg = self.config
        if cfg.conv == "sage":
            return SAGEConv(d_in, d_out)
        if cfg.conv == "gcn":
            return GCNConv(d_in, d_out)
        if cfg.conv == "mlp":
            return MLPLayer(d_in, d_out)
        if layer < self._hidden_layers:
            return GATConv(d_in, d_out // cfg.heads, cfg.heads, concat=True, dropout=cfg.dropout)
        return GATConv(d_in, d_out, cfg.heads, concat=False, dropout=cfg.dropout)

    @property
    def row_local_output(self) -> bool:
        """Whether a row of the last layer's output depends only on its own in-edges, not on which
        other rows are computed: false with batch norm on the last layer (jk + batch_norm), whose
        training statistics are over every row. Then a cluster batch's last layer must run on all
        of its nodes rather than only on the loss rows (Batch.layer_blocks(seeds_only=...))."""
        return not (self.norms is not None and self._hidden_layers == self.num_layers)

    # ---- LayerwiseModel protocol -------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def in_dim(self) -> int:
        return self.config.in_dim

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    @property
    def readout_dim(self) -> int:
        """cat: a running sum of logit contributions (out_dim); max: a running max (hidden)."""
        return {"none": 0, "cat": self.config.out_dim, "max": self.config.hidden}[self.config.jk]

    def layer_dim(self, layer: int) -> int:
        return self._dims[layer]

    def aggregate(self, layer: int, h_src: torch.Tensor, block: LayerBlock,
                  degree_src: torch.Tensor | None) -> Aggregate:
        return self.convs[layer].aggregate(h_src, block, degree_src)

    def merge(self, layer: int, a: Aggregate, b: Aggregate) -> Aggregate:
        return self.convs[layer].merge(a, b)

    def sum_aggregation(self, layer: int) -> str | None:
        return self.convs[layer].sum_aggregation

    def aggregate_sum(self, layer: int, total: torch.Tensor, count: torch.Tensor) -> Aggregate:
        return self.convs[layer].aggregate_sum(total, count)

    def finish(self, layer: int, h_dst: torch.Tensor, agg: Aggregate,
               degree_dst: torch.Tensor | None) -> torch.Tensor:
        return self._post(layer, h_dst, self.convs[layer].finish(h_dst, agg, degree_dst))

    def forward_layer(self, layer: int, h_src: torch.Tensor, block: LayerBlock,
                      degree_src: torch.Tensor | None) -> torch.Tensor:
        z = self.convs[layer](h_src, block, degree_src)
        residual = self.residuals is not None and layer < self._hidden_layers
        return self._post(layer, prefix(h_src, block.num_dst) if residual else None, z)

    def readout_step(self, layer: int, h: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor | None:
        jk = self.config.jk
        if jk == "none":
            return None
        if jk == "max":
            return h if state is None else torch.maximum(state, h)
        hid = self.config.hidden
        part = h @ self.jk_lin.weight[:, layer * hid:(layer + 1) * hid].t()
        return part if state is None else state + part

    def readout(self, state: torch.Tensor | None, h_last: torch.Tensor) -> torch.Tensor:
        jk = self.config.jk
        if jk == "none":
            return h_last
        if state is None:
            raise OptionError(f"jk={jk!r} read-out needs the folded state of every layer")
        if jk == "max":
            return self.jk_lin(state)
        return state + self.jk_lin.bias

    # ---- training forward ----------------------------------------------------------------------
    def _post(self, layer: int, h_dst: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        if layer >= self._hidden_layers:
            return z
        if self.residuals is not None:
            z = z + self.residuals[layer](h_dst)
        if self.norms is not None:
            bn = self.norms[layer]
            if self.training and z.shape[0] == 1:
                # one row has no batch variance (BatchNorm1d raises): a last batch of one seed
                # is normalised with the running statistics instead
                z = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False,
                                 0.0, bn.eps)
            else:
                z = bn(z)
        return F.relu(z)

    def forward(self, x: torch.Tensor, blocks: list[LayerBlock],
                degree: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (blocks[-1].num_dst, out_dim) of the last block's destinations.

        x: float32 (>= blocks[0].num_src, in_dim) rows of the batch's nodes; blocks: num_layers
        blocks, input layer first (Batch.layer_blocks); degree: float32 (n,) full-graph in-degree
        of the batch's nodes (Batch.degree; GCN needs it on blocks without edge_weight)."""
        if len(blocks) != self.num_layers:
            raise OptionError(f"model has {self.num_layers} layers but got {len(blocks)} blocks",
                              hint="use batch.layer_blocks(model.num_layers)")
        if x.shape[-1] != self.in_dim:
            raise OptionError(f"model expects {self.in_dim} input features, got {x.shape[-1]}")
        out_rows = blocks[-1].num_dst
        h = prefix(x, blocks[0].num_src)
        state = None
        p = self.config.dropout
        for layer, block in enumerate(blocks):
            h = dropout(prefix(h, block.num_src), p, self.training)
            deg = None if degree is None else prefix(degree, block.num_src)
            h = self.forward_layer(layer, h, block, deg)
            if self.readout_dim:
                state = self.readout_step(layer, prefix(h, out_rows), state)
        return self.readout(state, prefix(h, out_rows))
