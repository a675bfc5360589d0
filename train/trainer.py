"""A minimal GraphSAGE trainer over the prefetching NeighborLoader (used by `gstore demo`)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from gstore.errors import OptionError
from gstore.pipeline.loader import NeighborLoader
from gstore.train.sage import GraphSAGE

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    epoch: int
    loss: float
    train_acc: float
    val_acc: float
    seconds: float
    batches: int


@dataclass
class TrainReport:
    epochs: list[EpochReport] = field(default_factory=list)
    test_acc: float = float("nan")


def _accuracy(model: GraphSAGE, loader: NeighborLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            pred = model(batch.x, batch.blocks).argmax(1)
            y = batch.y[:batch.num_seeds]
            known = y >= 0
            correct += int((pred[known] == y[known]).sum())
            total += int(known.sum())
    return correct / max(total, 1)


def train_sage(store, *, fanouts: list[int], batch_size: int = 512, epochs: int = 3, hidden: int = 64,
               lr: float = 0.01, seed: int = 0, device: str = "cpu", prefetch: int = 4) -> TrainReport:
    """Train GraphSAGE on the store's train split; report val accuracy per epoch and test accuracy."""
    if store.features is None or store.labels is None or not store.label_names:
        raise OptionError("training needs features and labels in the store",
                          hint="ingest with --nodes (label column) and --features")
    torch.manual_seed(seed)
    num_classes = len(store.label_names)
    model = GraphSAGE(store.features.shape[1], hidden, num_classes, len(fanouts)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train = NeighborLoader(store, fanouts, batch_size, "train", seed=seed, device=device, prefetch=prefetch)
    evals = {s: NeighborLoader(store, fanouts, 4 * batch_size, s, shuffle=False, seed=seed, device=device)
             for s in ("val", "test") if len(store.split(s))}
    report = TrainReport()
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        loss_sum = correct = seen = batches = 0
        train.set_epoch(epoch)
        for batch in train:
            y = batch.y[:batch.num_seeds]
            known = y >= 0
            out = model(batch.x, batch.blocks)
            loss = torch.nn.functional.cross_entropy(out[known], y[known])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * int(known.sum())
            correct += int((out.argmax(1)[known] == y[known]).sum())
            seen += int(known.sum())
            batches += 1
        val = _accuracy(model, evals["val"]) if "val" in evals else float("nan")
        rep = EpochReport(epoch, loss_sum / max(seen, 1), correct / max(seen, 1), val,
                          time.perf_counter() - t0, batches)
        log.info("epoch %d: loss %.4f train acc %.3f val acc %.3f (%.1fs)", epoch, rep.loss,
                 rep.train_acc, rep.val_acc, rep.seconds)
        report.epochs.append(rep)
    if "test" in evals:
        report.test_acc = _accuracy(model, evals["test"])
    return report
