"""Plain-Python serial twin of the history methods (pipeline/history + train/history.py).

One batch after the other, histories in RAM: pull emb_l[H] (and grad_l[B]), forward with the GNN's
layers, loss (+ sum z_l[B] * grad_l[B] for scalable-gcn), backward, then the writes: emb_l[B] = z_l[B]
quantised to the history dtype, grad_l[B] = 0, grad_l[H] += d objective / d emb_l[H]; optimizer step.
No threads, no overlay, no files: the semantics "batch k sees every write of batches < k".
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gstore.seeding import derive_seed
from gstore.train.layers import dropout


def serial_epoch(model, batches, optimizer, emb: list[np.ndarray], grad: list[np.ndarray] | None, *,
                 dtype: str, seed: int, epoch: int) -> dict:
    """Train one pass over `batches` (inner 1-hop CPU batches); emb / grad are updated in place.
    Both variants' batches hold nodes outside the train split (gas: whole clusters; scalable-gcn:
    the swept non-train nodes): the loss is on the batch nodes `b.mask` marks, every batch node
    pushes its rows and (scalable-gcn) applies and resets its gradient rows.
    Returns {"losses": [...], "pulled": [[halo rows per layer] per batch], "grad_pulled": [...]}."""
    out = {"losses": [], "pulled": [], "grad_pulled": []}
    model.train()
    for b in batches:
        torch.manual_seed(derive_seed(seed, "torch", epoch, b.index))
        nodes = b.nodes.numpy()
        B, H = nodes[:b.num_seeds], nodes[b.num_seeds:]
        halo = [torch.from_numpy(e[H].astype(np.float32)) for e in emb]
        for t in halo:
            t.requires_grad_(grad is not None)
        g_rows = [torch.from_numpy(g[B].copy()) for g in grad] if grad is not None else []
        out["pulled"].append([t.detach().numpy().copy() for t in halo])
        out["grad_pulled"].append([g.numpy().copy() for g in g_rows])
        blk = b.blocks[0]
        h, zs, state = b.x[:blk.num_src], [], None
        deg = b.degree[:blk.num_src]
        for layer in range(model.num_layers):
            h = dropout(h, model.config.dropout, True)
            z = model.forward_layer(layer, h, blk, deg)
            if model.readout_dim:
                state = model.readout_step(layer, z, state)
            if layer < model.num_layers - 1:
                zs.append(z)
                h = torch.cat([z, halo[layer]])
        logits = model.readout(state, z)
        y = b.y[:b.num_seeds].clone()
        y[~b.mask[:b.num_seeds]] = -1
        keep = y >= 0
        loss = F.cross_entropy(logits[keep], y[keep]) if keep.any() else logits.sum() * 0.0
        objective = loss
        for z, g in zip(zs, g_rows):
            objective = objective + (z * g).sum()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        for l, z in enumerate(zs):
            emb[l][B] = z.detach().numpy().astype(dtype)
        if grad is not None:
            for l, t in enumerate(halo):
                grad[l][B] = 0.0
                if t.grad is not None:
                    grad[l][H] = grad[l][H] + t.grad.numpy()
        optimizer.step()
        out["losses"].append(float(loss))
    return out
