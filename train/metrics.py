"""Classification metrics over the loss rows of batches: accuracy and binary ROC-AUC.

`SplitMetrics` accumulates batch by batch (predictions arrive per batch; a split's rows are never all
in RAM as logits, only one float per row for ROC-AUC). ROC-AUC is the Mann-Whitney statistic with
ties counted half, computed once at the end from the positive-class scores (O(n log n) sort).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gstore.errors import OptionError

METRICS = ("accuracy", "roc_auc")
SPLITS = ("train", "val", "test")
SPLIT_CHUNK = 1 << 20


def check_metric(metric: str, num_classes: int) -> str:
    """`metric` if it applies to a `num_classes`-class task; OptionError otherwise."""
    if metric not in METRICS:
        raise OptionError(f"unknown --metric {metric!r}", hint=f"use one of {', '.join(METRICS)}")
    if metric == "roc_auc" and num_classes != 2:
        raise OptionError(f"--metric roc_auc needs a binary task; the store's labels have {num_classes} "
                          "classes", hint="use --metric accuracy")
    return metric


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of float `scores` (n,) for bool `positive` (n,); nan when one class
    is absent. Ties get the average rank (Mann-Whitney U / (n_pos * n_neg))."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    # average rank of each run of tied scores (1-based ranks)
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    ends = np.concatenate([starts[1:], [len(s)]])
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass
class SplitMetrics:
    """Running loss/accuracy (and positive-class scores for ROC-AUC) of one split."""

    binary: bool = False
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    _scores: list = field(default_factory=list, repr=False)
    _positive: list = field(default_factory=list, repr=False)

    def update(self, logits: torch.Tensor, y: torch.Tensor, loss: float | None = None) -> None:
        """logits: float (n, C) of labelled rows; y: int64 (n,) in [0, C); loss: mean over the rows."""
        n = int(y.shape[0])
        if n == 0:
            return
        self.correct += int((logits.argmax(1) == y).sum())
        self.count += n
        if loss is not None:
            self.loss_sum += float(loss) * n
        if self.binary:
            score = (logits[:, 1] - logits[:, 0]).float()   # monotone in the softmax probability
            self._scores.append(score.detach().cpu().numpy())
            self._positive.append((y == 1).cpu().numpy())

    @property
    def loss(self) -> float:
        return self.loss_sum / self.count if self.count else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")

    def roc_auc(self) -> float:
        if not self._scores:
            return float("nan")
        return roc_auc(np.concatenate(self._scores), np.concatenate(self._positive))

    def summary(self) -> dict:
        """{"accuracy": a, "roc_auc": r (binary tasks only), "count": n}."""
        out = {"accuracy": self.accuracy, "count": self.count}
        if self.binary:
            out["roc_auc"] = self.roc_auc()
        return out

    def to_state(self) -> dict:
        """JSON/torch-safe state (mid-epoch checkpoints)."""
        return {"binary": self.binary, "loss_sum": self.loss_sum, "correct": self.correct,
                "count": self.count,
                "scores": [a.tolist() for a in self._scores] if self.binary else [],
                "positive": [a.tolist() for a in self._positive] if self.binary else []}

    @staticmethod
    def from_state(d: dict) -> "SplitMetrics":
        m = SplitMetrics(bool(d["binary"]), float(d["loss_sum"]), int(d["correct"]), int(d["count"]))
        m._scores = [np.asarray(a, dtype=np.float32) for a in d.get("scores", [])]
        m._positive = [np.asarray(a, dtype=bool) for a in d.get("positive", [])]
        return m


def split_metrics(store, out_dir: Path, rec) -> dict:
    """{split: {"accuracy", "count"[, "roc_auc"]}} of the written predictions on the labelled
    nodes of each non-empty split (reads split ids, labels and predictions chunk by chunk)."""
    cls = np.load(out_dir / rec.class_path, mmap_mode="r")
    pos = np.load(out_dir / rec.positive_path, mmap_mode="r") if rec.positive_path else None
    labels = store.labels
    out = {}
    for name in SPLITS:
        ids = store.split(name)
        if not len(ids) or labels is None:
            continue
        correct = count = 0
        scores, positive = [], []
        for lo in range(0, len(ids), SPLIT_CHUNK):
            part = np.asarray(ids[lo:lo + SPLIT_CHUNK])
            y = np.asarray(labels[part])
            known = y >= 0
            part, y = part[known], y[known]
            correct += int((cls[part] == y).sum())
            count += len(part)
            if pos is not None:
                scores.append(np.asarray(pos[part]))
                positive.append(y == 1)
        m = {"accuracy": correct / count if count else float("nan"), "count": count}
        if pos is not None:
            m["roc_auc"] = roc_auc(np.concatenate(scores), np.concatenate(positive)) if scores else float("nan")
        out[name] = m
    return out
