"""One training loop for every method: batches in, optimizer steps out, metrics on the loss rows.

The loop knows nothing of stores or samplers: it takes any iterable of `Batch` (NeighborLoader,
ClusterLoader) and a model called as `model(x, blocks, degree)` on `batch.layer_blocks(L)`. Which
rows carry a loss is decided in one place (`loss_rows`). Randomness: before each batch the torch
generator is seeded from (seed, epoch, batch index) by the one seeding rule, so dropout does not
depend on what ran before; with the loaders' own (seed, epoch, index) rule, an epoch resumed at
batch k computes exactly what the uninterrupted run computed.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch
import torch.nn.functional as F

from gstore.pipeline.loader.batch import Batch
from gstore.seeding import derive_seed
from gstore.train.metrics import SplitMetrics


def loss_rows(batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the rows that carry the loss and the metrics: labelled rows (y >= 0) of
    the seeds (neighbor batches: logits are the seeds' rows) or of the split mask (cluster batches:
    logits are every batch node's rows, or only the mask rows, first, of a seeds_first batch)."""
    if batch.kind == "cluster":
        rows = logits.shape[0]          # every node, or the mask prefix of a seeds_first batch
        y = batch.y[:rows]
        keep = y >= 0
        if batch.mask is not None:
            keep &= batch.mask[:rows]
    else:
        y = batch.y[:batch.num_seeds]
        keep = y >= 0
    return logits[keep], y[keep]


def forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The model on one batch: logits of the seeds (neighbor), of every node (cluster) or of the
    loss nodes (a seeds_first cluster batch, when the model's last layer is row-local)."""
    seeds_only = batch.seeds_first and model.row_local_output
    return model(batch.x, batch.layer_blocks(model.num_layers, seeds_only), batch.degree)


class StepHooks(Protocol):
    """What a training method may change in a step (history methods, train/history.py): the
    forward (logits of the rows loss_rows selects), the objective that is back-propagated (the
    reported loss stays the cross-entropy), and work after backward (hand gradients on)."""

    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor: ...

    def objective(self, batch: Batch, loss: torch.Tensor) -> torch.Tensor: ...

    def after_backward(self, batch: Batch) -> None: ...


class Amp:
    """Mixed precision: autocast (float16 + GradScaler on CUDA, bfloat16 on CPU) or nothing."""

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = bool(enabled)
        self.device_type = device.type
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.enabled and device.type == "cuda")

    def autocast(self):
        if not self.enabled:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@dataclass
class EpochProgress:
    """Running sums of the epoch in progress (restored from a mid-epoch checkpoint)."""

    metrics: SplitMetrics
    batches: int = 0
    seconds: float = 0.0
    wait_s: float = 0.0

    def to_state(self) -> dict:
        return {"metrics": self.metrics.to_state(), "batches": self.batches, "seconds": self.seconds,
                "wait_s": self.wait_s}

    @staticmethod
    def from_state(d: dict) -> "EpochProgress":
        return EpochProgress(SplitMetrics.from_state(d["metrics"]), int(d["batches"]),
                             float(d["seconds"]), float(d["wait_s"]))


@dataclass
class EpochStats:
    """One finished epoch of training (the train split's running metrics, sampled batches)."""

    epoch: int
    loss: float
    accuracy: float
    batches: int
    seconds: float
    wait_s: float
    extra: dict = field(default_factory=dict)

    @property
    def batches_per_s(self) -> float:
        return self.batches / self.seconds if self.seconds > 0 else float("nan")

    @property
    def wait_share(self) -> float:
        """Share of the epoch the trainer spent waiting for the loader's next batch."""
        return self.wait_s / self.seconds if self.seconds > 0 else float("nan")


def train_epoch(model: torch.nn.Module, batches: Iterable[Batch], optimizer: torch.optim.Optimizer,
                *, epoch: int, seed: int, amp: Amp, progress: EpochProgress,
                on_batch: Callable[[Batch, EpochProgress], None] | None = None,
                step: StepHooks | None = None) -> EpochStats:
    """Train over `batches` (the rest of epoch `epoch`); `progress` holds the sums so far and is
    updated in place. `on_batch(batch, progress)` runs after every step (bars, mid-epoch checkpoints);
    `step` replaces the plain forward (history methods)."""
    model.train()
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t1 = time.perf_counter()
        if batch is None:
            progress.wait_s += t1 - t0
            progress.seconds += t1 - t0
            break
        torch.manual_seed(derive_seed(seed, "torch", epoch, batch.index))
        with amp.autocast():
            out = forward(model, batch) if step is None else step.forward(model, batch)
            logits, y = loss_rows(batch, out)
            loss = F.cross_entropy(logits.float(), y) if len(y) else logits.sum() * 0.0
            objective = loss if step is None else step.objective(batch, loss)
        optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(objective).backward()
        if step is not None:
            step.after_backward(batch)
        amp.scaler.step(optimizer)
        amp.scaler.update()
        progress.metrics.update(logits.detach().float(), y, float(loss.detach()))
        progress.batches += 1
        progress.wait_s += t1 - t0
        progress.seconds += time.perf_counter() - t0
        if on_batch is not None:
            on_batch(batch, progress)
        del batch
    m = progress.metrics
    return EpochStats(epoch, m.loss, m.accuracy, progress.batches, progress.seconds, progress.wait_s)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[Batch], binary: bool, amp: Amp) -> SplitMetrics:
    """Metrics of `model` (eval mode) over the loss rows of `batches`."""
    model.eval()
    out = SplitMetrics(binary=binary)
    for batch in batches:
        with amp.autocast():
            logits, y = loss_rows(batch, forward(model, batch))
        logits = logits.float()
        out.update(logits, y, float(F.cross_entropy(logits, y)) if len(y) else None)
    return out
