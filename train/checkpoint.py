"""Checkpoints of a training run: one file each, written atomically, checked on load.

File layout: one header line `GSTORE-CHECKPOINT <version> <payload bytes> <crc32 hex>\\n`, then the
payload, a `torch.save` of a dict of tensors and plain values (loaded with weights_only=True, so a
checkpoint cannot run code). A truncated or bit-flipped file fails the length or crc check and is
refused in one line, never half-loaded. Writes go to a temp file in the same directory, are fsynced,
then renamed over the old file, so a kill leaves either the old or the new checkpoint.
"""
from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from gstore.errors import InputError

MAGIC = b"GSTORE-CHECKPOINT"
VERSION = 1
MAX_HEADER = 128


@dataclass
class Checkpoint:
    """What a run needs to continue exactly.

    epoch: the epoch in progress (== epochs completed when `batches_done` is 0).
    batches_done: batches of that epoch already trained (mid-epoch checkpoints), 0 at an epoch end.
    model / optimizer / scaler: state dicts (scaler None without AMP).
    loader: the training loader's state_dict (epoch, batches consumed, config).
    progress: the epoch's running sums (loss, metrics) when saved mid-epoch; the run's best score,
        best epoch and epochs since the best (early stopping); metrics of finished epochs are in
        metrics.jsonl.
    config: the TrainConfig JSON it was trained with.
    """

    epoch: int
    batches_done: int
    model: dict
    optimizer: dict
    scaler: dict | None
    loader: dict
    progress: dict
    config: dict
    torch_rng: torch.Tensor | None = None

    def to_payload(self) -> dict:
        return {"version": VERSION, "epoch": self.epoch, "batches_done": self.batches_done,
                "model": self.model, "optimizer": self.optimizer, "scaler": self.scaler,
                "loader": self.loader, "progress": self.progress, "config": self.config,
                "torch_rng": self.torch_rng}

    @staticmethod
    def from_payload(d: dict, path: Path) -> "Checkpoint":
        need = ("epoch", "batches_done", "model", "optimizer", "loader", "progress", "config")
        if not isinstance(d, dict) or any(k not in d for k in need):
            raise InputError(f"checkpoint {path} lacks {[k for k in need if k not in d]}",
                             hint="it was not written by gstore train; start a new run")
        return Checkpoint(int(d["epoch"]), int(d["batches_done"]), d["model"], d["optimizer"],
                          d.get("scaler"), d["loader"], d["progress"], d["config"], d.get("torch_rng"))


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically (temp file, fsync, rename, fsync of the directory)."""
    buf = io.BytesIO()
    torch.save(ckpt.to_payload(), buf)
    payload = buf.getbuffer()
    header = b"%s %d %d %08x\n" % (MAGIC, VERSION, len(payload), zlib.crc32(payload))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint; InputError naming the file and what is wrong with it."""
    hint = "the file is damaged: delete it to resume from the previous one, or start a new run"
    try:
        with open(path, "rb") as f:
            header = f.readline(MAX_HEADER)
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist", hint="train first, or pass another run")
    parts = header.split()
    if len(parts) != 4 or parts[0] != MAGIC or not header.endswith(b"\n"):
        raise InputError(f"checkpoint {path} is not a gstore checkpoint (bad header)", hint=hint)
    try:
        version, size, crc = int(parts[1]), int(parts[2]), int(parts[3], 16)
    except ValueError:
        raise InputError(f"checkpoint {path} has a damaged header", hint=hint) from None
    if version != VERSION:
        raise InputError(f"checkpoint {path} has version {version}; this gstore reads {VERSION}",
                         hint="start a new run")
    if len(data) != size:
        raise InputError(f"checkpoint {path} is truncated ({len(data)} of {size} payload bytes)",
                         hint=hint)
    if zlib.crc32(data) != crc:
        raise InputError(f"checkpoint {path} fails its crc32 check", hint=hint)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a damaged file
        raise InputError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}",
                         hint=hint) from None
    return Checkpoint.from_payload(payload, path)
