"""`--method history`: the training step over 1-hop batches with historical embeddings (plain torch).

Forward on a 1-hop batch (in-batch nodes B, halo H, one block B u H -> B), for a GNN of L layers:
    layer 0:       z_0 = layer_0(x[B u H])                       rows of B
    layer l >= 1:  z_l = layer_l(concat(z_{l-1}[B], hist_{l-1}[H]))
    after layer l < L-1: push z_l[B] (detached) into hist_l
so each batch costs L one-hop layers over B u H, linear in depth. The layers are the GNN's own
`forward_layer` (with the same dropout / read-out steps as GNN.forward), so the trained model is the
usual GNN and predictions are the usual layer-wise inference.
- gas (GNNAutoScale): the pulled hist_l[H] rows are constants: gradients stop at the halo.
- scalable-gcn (ScalableGCN): the pulled rows are leaves; after backward their gradients are added
  to the gradient store grad_l[H]. When v is in B, the objective gets + sum_l sum(z_l[v] * grad_l[v])
  (grad_l[v] as read before this batch, a constant), which sends the cached gradient from the
  batches where v was a neighbor into the lower layers, and grad_l[v] is reset to 0. Batches hold
  the train nodes and, once every `--history-sweep` epochs, every other node (loss 0 on it): what
  pushes its histories and applies its gradient rows (pipeline/history/batches.py, SweepPlan).

`HistoryStep` implements the loop's StepHooks (train/loop.py); `HistoryRun` owns the history files
of a run: fill by layer-wise inference, `--history-refresh`, checkpoint snapshots and restore.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gstore.errors import LoaderError, OptionError
from gstore.pipeline.loader.batch import LayerBlock
from gstore.progress import NULL_PROGRESS, Progress
from gstore.train.layers import dropout

log = logging.getLogger(__name__)

HISTORY_DIR = "history"


def history_forward(model, batch, device: torch.device, *, grad_leaves: bool):
    """(logits (|B|, out), pushes [z_l (|B|, w_l) for l < L-1], halo leaves [(|H|, w_l)]).

    batch: a HistoryBatch (CPU) whose halo_rows are already overlaid."""
    blk = batch.blocks[0]
    block = LayerBlock(blk.edge_index.to(device), blk.num_src, blk.num_dst)
    x = batch.x[:blk.num_src].to(device)
    deg = None if batch.degree is None else batch.degree[:blk.num_src].to(device)
    halo = []
    for r in batch.halo_rows:
        t = torch.from_numpy(r).to(device)
        halo.append(t.requires_grad_(True) if grad_leaves else t)
    L = model.num_layers
    p = model.config.dropout
    h, state, pushes = x, None, []
    z = None
    for layer in range(L):
        h = dropout(h, p, model.training)
        z = model.forward_layer(layer, h, block, deg)
        if model.readout_dim:
            state = model.readout_step(layer, z, state)
        if layer < L - 1:
            pushes.append(z)
            h = torch.cat([z, halo[layer].to(z.dtype)]) if halo[layer].shape[0] else z
    return model.readout(state, z), pushes, halo


class HistoryStep:
    """The loop's StepHooks for history batches (see the module docstring)."""

    def __init__(self, loader, gradients: bool, device: torch.device, dtype: str) -> None:
        self.loader = loader
        self.gradients = bool(gradients)
        self.device = device
        self.dtype = np.dtype(dtype)
        self._last = None          # HistoryWrites of the previous batch of this pass (overlay)
        self._pushes: list[torch.Tensor] = []
        self._halo: list[torch.Tensor] = []

    def forward(self, model, batch) -> torch.Tensor:
        from gstore.pipeline.history.stage import overlay

        if batch.seq > 0 and batch.applied < batch.seq:
            last = self._last
            if last is None or last.seq != batch.seq - 1 or batch.applied != batch.seq - 1:
                raise LoaderError(f"history batch {batch.seq} was pulled with {batch.applied} writes "
                                  "applied and no writes of the batch before it to overlay")
            overlay(batch, last)
        elif batch.seq == 0:
            self._last = None
        if batch.y is not None:
            batch.y = batch.y.to(self.device)
        logits, self._pushes, self._halo = history_forward(model, batch, self.device,
                                                           grad_leaves=self.gradients)
        return logits

    def objective(self, batch, loss: torch.Tensor) -> torch.Tensor:
        """loss + sum_l sum(z_l[B] * grad_l[B]) for scalable-gcn; the loss itself for gas."""
        if not self.gradients or not batch.grad_rows:
            return loss
        objective = loss
        for z, g in zip(self._pushes, batch.grad_rows):
            objective = objective + (z.float() * torch.from_numpy(g).to(z.device)).sum()
        return objective

    def after_backward(self, batch) -> None:
        """Hand this batch's pushes and gradient adds to the writer (and keep them to overlay)."""
        from gstore.pipeline.history.stage import HistoryWrites

        pushes = [z.detach().to("cpu", torch.float32).numpy().astype(self.dtype) for z in self._pushes]
        grads = None
        if self.gradients:
            grads = []
            for t in self._halo:
                g = t.grad
                grads.append(np.zeros(tuple(t.shape), np.float32) if g is None
                             else g.detach().to("cpu", torch.float32).numpy().copy())
        job = HistoryWrites(batch.seq, batch.batch_ids, pushes, batch.halo_ids, grads)
        self._pushes, self._halo = [], []
        self.loader.submit(job)
        self._last = job


def history_widths(model) -> tuple[int, ...]:
    return tuple(int(model.layer_dim(l)) for l in range(model.num_layers - 1))


def history_loader(cfg, inputs):
    """The run's training loader for --method history (arrays attached by HistoryRun)."""
    from gstore.pipeline.history.batches import gas_loader, scalable_loader
    from gstore.pipeline.history.stage import HistoryLoader

    common = dict(seed=cfg.seed, prefetch=cfg.prefetch, num_workers=cfg.num_workers)
    if cfg.variant == "gas":
        inner = gas_loader(inputs.store, inputs.partition, cfg.clusters_per_batch, **common)
    else:
        inner = scalable_loader(inputs.store, int(cfg.fanouts[0]), cfg.batch_size, sweep=cfg.history_sweep,
                                **common)
    # both variants' batches hold nodes outside the train split: their labels are masked
    return HistoryLoader(inner, loss_mask=True, gradients=cfg.variant == "scalable-gcn")


class HistoryRun:
    """The history files of one run (RUN_DIR/history) and what happens to them around the loop."""

    def __init__(self, cfg, inputs, run_dir: Path, model, loader, progress: Progress = NULL_PROGRESS) -> None:
        from gstore.pipeline.history.arrays import HistoryLayout

        self.cfg, self.inputs, self.model, self.loader = cfg, inputs, model, loader
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / HISTORY_DIR
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.progress = progress
        self.layout = HistoryLayout(int(inputs.store.num_nodes), history_widths(model), cfg.history_dtype,
                                    cfg.variant == "scalable-gcn")
        self.step = HistoryStep(loader, self.layout.gradients, inputs.device, cfg.history_dtype)
        self.fills: list[dict] = []
        self._keep: str | None = None       # the snapshot the last checkpoint refers to

    # ---- start ------------------------------------------------------------------------------------
    def start(self, ckpt) -> None:
        """Restore the checkpoint's snapshot, or create the files and fill them (a new run)."""
        from gstore.pipeline.history.arrays import HistoryArrays, history_bytes_hint
        from gstore.pipeline.history.snapshot import restore_snapshot

        record = None if ckpt is None else ckpt.progress.get("history")
        if ckpt is not None and record is None:
            raise OptionError(f"the checkpoint in {self.ckpt_dir} has no history snapshot",
                              hint="start the run again with --force")
        log.info("%s", history_bytes_hint(self.layout, self.root))
        if record is not None:
            restore_snapshot(record, self.ckpt_dir, self.root)
            self.loader.arrays = HistoryArrays(self.root, self.layout)
            return
        HistoryArrays.create(self.root, self.layout).close()
        self._fill()

    def _fill(self) -> None:
        from gstore.pipeline.history.arrays import HistoryArrays
        from gstore.pipeline.history.fill import fill_embeddings

        if self.loader.arrays is not None:
            self.loader.arrays.close()
            self.loader.arrays = None
        if self.layout.widths:
            with self.progress.phase("history fill", total=None):
                self.fills.append(fill_embeddings(self.inputs.store, self.model, self.root, self.layout,
                                                  memory_budget=self.cfg.memory_budget,
                                                  device=self.inputs.device, progress=self.progress))
        self.loader.arrays = HistoryArrays(self.root, self.layout)

    def before_epoch(self, epoch: int) -> None:
        """--history-refresh E: refill every E epochs, at the start of epochs E, 2E, ..."""
        E = self.cfg.history_refresh
        if E and epoch > 0 and epoch % E == 0:
            log.info("epoch %d: refreshing the histories by layer-wise inference", epoch)
            self._fill()

    # ---- checkpoints ------------------------------------------------------------------------------
    def snapshot(self, epoch: int, batches_done: int) -> dict:
        """Apply every pending write and copy the files next to the checkpoint; the record goes into
        the checkpoint (prune() after the checkpoint is written deletes older snapshots)."""
        from gstore.pipeline.history.snapshot import take_snapshot

        self.loader.flush()
        rec = take_snapshot(self.loader.arrays.paths(), self.ckpt_dir, f"e{epoch}b{batches_done}")
        rec["layout"] = self.layout.to_json()
        self._keep = rec["dir"]
        return rec

    def prune(self) -> None:
        from gstore.pipeline.history.snapshot import prune_snapshots

        prune_snapshots(self.ckpt_dir, self._keep)

    def summary(self) -> dict:
        """For TrainResult.extra: the history files' size and what filling them cost."""
        return {"history_bytes": self.layout.nbytes, "history_files": [n for n, _, _ in self.layout.files()],
                "history_dtype": self.layout.dtype, "fills": self.fills}

    def close(self) -> None:
        if self.loader.arrays is not None:
            self.loader.arrays.close()
            self.loader.arrays = None
