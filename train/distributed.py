"""Data-parallel training: `torchrun --nproc-per-node N -m gstore train ...` (or `gstore train --nproc N`).

What each rank does (docs/distributed.md):
- memory-maps the same store (page cache shared between ranks, so N ranks do not hold N copies);
- trains on its shard of every epoch: the epoch's batches come from the one seeding rule, identical
  on every rank, and rank r takes batches r, r + W, ... (pipeline/loader/seeds.py ShardedPlan),
  the same number on every rank (the last `batches % W` of an epoch are dropped), so no rank
  waits at an epoch's end on an all-reduce that never comes;
- all-reduces gradients through DistributedDataParallel (gloo on CPU, nccl on CUDA, the device
  cuda:LOCAL_RANK);
- evaluates its share of the val/test batches, and the metrics are summed across ranks;
- leaves every write to the run dir (config, metrics, checkpoints, predictions) to rank 0.

A rank that fails makes torchrun's agent stop the others; a collective that waits longer than
`GSTORE_DIST_TIMEOUT_S` (default 1800 s) fails instead of hanging; a check that fails on one rank
fails on all of them with that rank's error (`agreement`), so no rank is left waiting at a barrier.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch

from gstore.errors import GStoreError, OptionError

log = logging.getLogger(__name__)

TIMEOUT_ENV = "GSTORE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0
# methods whose state is not one model: each rank would write its own history files
SERIAL_ONLY = {"history": "its historical embeddings live in per-run files every rank would "
                          "read and overwrite (no per-rank ownership of history rows yet)"}


class RankAgreementError(OptionError):
    """Raised on ranks other than 0 when some rank failed a check: rank 0 raises (and prints) the
    error itself, the others exit quietly with this one, so the user reads one line, not N."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (torchrun's environment). world_size 1: no group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_gather(self, obj) -> list:
        """`obj` of every rank, in rank order (pickled objects through the gloo group)."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def agreement(self, what: str) -> Iterator[None]:
        """Run a block that may fail on some ranks only (checks of inputs, files): at its end every
        rank learns whether any rank failed, and all of them raise the first failing rank's error."""
        error = None
        try:
            yield
        except GStoreError as exc:
            error = exc
        if not self.active:
            if error is not None:
                raise error
            return
        got = self.all_gather(None if error is None else str(error))
        bad = [r for r, e in enumerate(got) if e is not None]
        if not bad:
            return
        if not self.is_main:
            raise RankAgreementError(f"rank {bad[0]} failed {what}: {got[bad[0]]}")
        if error is not None:
            raise error
        raise OptionError(f"rank {bad[0]} failed {what}: {got[bad[0]]}")


SINGLE = DistContext()


class RankLostError(GStoreError):
    """A collective of this rank failed: another rank died or stopped answering (one line)."""


def lost_rank_error(ctx: DistContext, exc: RuntimeError) -> RankLostError | None:
    """The one-line error for a collective that failed (a peer's socket closed, the group's
    timeout passed), or None when `exc` is not a communication failure (then it is a bug: raise)."""
    text = str(exc)
    comm = isinstance(exc, getattr(torch.distributed, "DistError", ())) or any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection reset", "Connection closed", "timed out"))
    if not ctx.active or not comm:
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return RankLostError(f"rank {ctx.rank}: a collective with the other ranks failed (another rank died "
                         f"or hung past {TIMEOUT_ENV}={timeout_s():.0f} s): {first[:200]}")


def env_context() -> DistContext:
    """The job torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; a plain
    process (none set) is rank 0 of 1."""
    def get(name: str, default: int) -> int:
        v = os.environ.get(name)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise OptionError(f"environment variable {name}={v!r} is not an integer",
                              hint="launch with torchrun or `gstore train --nproc N`") from None

    world = get("WORLD_SIZE", 1)
    return DistContext(rank=get("RANK", 0), world_size=world, local_rank=get("LOCAL_RANK", 0),
                       local_world_size=get("LOCAL_WORLD_SIZE", world))


def threads_per_rank(ctx: DistContext) -> int:
    """This machine's cores (the ones this process may use) divided among its ranks, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, ctx.local_world_size))


def rank_budget(memory_budget: str | int, ctx: DistContext) -> int:
    """Bytes of --memory-budget one rank may use: the budget is the machine's, so the ranks on one
    machine (LOCAL_WORLD_SIZE) split it (layer-wise inference sizes its chunks to it)."""
    from gstore.memory import parse_bytes

    return parse_bytes(memory_budget) // max(1, ctx.local_world_size if ctx.active else 1)


def divide_threads(ctx: DistContext) -> int:
    """Give torch and numba this rank's share of the cores (N ranks x all cores would make torch's
    OpenMP barriers and numba's thread teams spin against each other). Call before numba's first
    kernel: its thread pool is sized once (NUMBA_NUM_THREADS), per-thread counts cannot exceed it."""
    n = threads_per_rank(ctx)
    if not ctx.active:
        return n
    os.environ["NUMBA_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    import numba

    if numba.config.NUMBA_NUM_THREADS > n:      # numba was already configured in this process
        numba.set_num_threads(n)
    log.info("rank %d/%d: %d torch and numba threads", ctx.rank, ctx.world_size, n)
    return n


def timeout_s() -> float:
    v = os.environ.get(TIMEOUT_ENV)
    if v is None:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(v)
    except ValueError:
        t = -1.0
    if not t > 0:
        raise OptionError(f"{TIMEOUT_ENV}={v!r} must be a number of seconds > 0")
    return t


def init_process_group(ctx: DistContext, device_name: str) -> None:
    """Join torchrun's group: gloo for CPU tensors and objects, nccl for CUDA tensors when the run
    trains on CUDA (device cuda:LOCAL_RANK); collectives fail after timeout_s() instead of hanging."""
    if not ctx.active or torch.distributed.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise OptionError(f"WORLD_SIZE is {ctx.world_size} but MASTER_ADDR is not set",
                          hint="launch with torchrun or `gstore train --nproc N`")
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {device_name} needs CUDA, and this torch has none", hint="use --device cpu")
    if cuda:
        if ctx.local_rank >= torch.cuda.device_count():
            raise OptionError(f"local rank {ctx.local_rank} has no GPU of its own ({torch.cuda.device_count()} "
                              "visible): nccl needs one GPU per rank",
                              hint=f"use --nproc {torch.cuda.device_count()} or --device cpu")
        torch.cuda.set_device(ctx.local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s()))
    log.info("rank %d/%d joined the %s group (local rank %d of %d)", ctx.rank, ctx.world_size, backend,
             ctx.local_rank, ctx.local_world_size)


def close_process_group(ctx: DistContext) -> None:
    if ctx.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """Each rank computes on its own GPU: any CUDA device becomes cuda:LOCAL_RANK."""
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def config_digest(cfg_json: dict) -> str:
    return hashlib.sha256(json.dumps(cfg_json, sort_keys=True).encode()).hexdigest()


def check_same_config(ctx: DistContext, cfg) -> None:
    """OptionError on every rank when the ranks resolved different run configs (other options or
    another store path on some node), naming the first rank and option that differ."""
    if not ctx.active:
        return
    mine = cfg.to_json()
    got = ctx.all_gather((config_digest(mine), mine))
    if len({d for d, _ in got}) == 1:
        return
    from gstore.train.run_config import option_name

    first = got[0][1]
    for r, (d, c) in enumerate(got):
        if d != got[0][0]:
            diffs = [f"{option_name(k)} (rank 0: {first.get(k)!r}, rank {r}: {c.get(k)!r})"
                     for k in sorted(set(first) | set(c)) if first.get(k) != c.get(k)]
            cls = OptionError if ctx.is_main else RankAgreementError
            raise cls(f"the ranks were started with different run configs: rank {r} differs from rank 0 in "
                      + "; ".join(diffs or ["its config hash"]),
                      hint="start every rank with the same command line and store path")


def refuse_serial_only(cfg, ctx: DistContext) -> None:
    if ctx.active and cfg.method in SERIAL_ONLY:
        raise OptionError(f"--method {cfg.method} cannot train data-parallel yet: {SERIAL_ONLY[cfg.method]}",
                          hint="train it in one process (no --nproc, no torchrun)")


def shard_loader(loader, ctx: DistContext, *, training: bool, what: str = "train split"):
    """This rank's share of `loader`'s epochs (seeds.ShardedPlan); training drops an epoch's last
    `batches % world_size` batches so every rank steps the same number of times."""
    if not ctx.active or loader is None:
        return loader
    from gstore.pipeline.loader.seeds import ShardedPlan

    total = int(loader.plan.num_batches)
    if training and total < ctx.world_size:
        raise OptionError(f"the {what} makes {total} batch(es) per epoch, fewer than the {ctx.world_size} ranks",
                          hint="use a smaller --batch-size / --clusters-per-batch, or fewer ranks")
    loader.plan = ShardedPlan(loader.plan, ctx.rank, ctx.world_size, drop_remainder=training)
    loader._config = None           # the config (num_batches) is computed from the plan
    if training and total % ctx.world_size:
        log.info("%s: %d batches per epoch over %d ranks: the last %d of every epoch are dropped",
                 what, total, ctx.world_size, total % ctx.world_size)
    return loader


def merge_metrics(ctx: DistContext, metrics):
    """The SplitMetrics of every rank's batches summed (the same object on every rank)."""
    if not ctx.active:
        return metrics
    from gstore.train.metrics import SplitMetrics

    states = ctx.all_gather(metrics.to_state())
    out = SplitMetrics(binary=metrics.binary)
    for s in states:
        m = SplitMetrics.from_state(s)
        out.loss_sum += m.loss_sum
        out.correct += m.correct
        out.count += m.count
        out._scores.extend(m._scores)
        out._positive.extend(m._positive)
    return out


class ShardLog:
    """Per-epoch count, sum and xor of the seed ids this rank trained on, logged at the epoch's end
    (INFO), so a run's log shows the ranks' shards partition each epoch."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.reset()

    def reset(self) -> None:
        self.batches = self.seeds = self.id_sum = self.id_xor = 0

    def add(self, batch) -> None:
        if not self.ctx.active:
            return
        ids = batch.nodes[:batch.num_seeds]
        self.batches += 1
        self.seeds += int(ids.numel())
        self.id_sum += int(ids.sum())
        self.id_xor ^= _xor(ids)

    def emit(self, epoch: int) -> None:
        if self.ctx.active:
            log.info("rank %d/%d epoch %d shard: %d batches, %d seeds, id sum %d, id xor %d", self.ctx.rank,
                     self.ctx.world_size, epoch, self.batches, self.seeds, self.id_sum, self.id_xor)
        self.reset()


def _xor(ids: torch.Tensor) -> int:
    import numpy as np

    a = ids.detach().cpu().numpy().astype(np.int64, copy=False)
    return int(np.bitwise_xor.reduce(a)) if len(a) else 0


class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DDP that answers the wrapped GNN's attributes (num_layers, row_local_output: the one
    training loop reads them), so train/loop.py does not know it is data-parallel."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """The module the training loop steps: `model` itself in one process, else DDP around it
    (state dicts, evaluation and inference keep using `model`: same parameters, no prefix)."""
    if not ctx.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return _DDP(model, device_ids=ids)
