"""`gstore train` as a library call: a run from store to predictions, resumable at every checkpoint.

    result = train_run(TrainConfig(store="g.gstore", method="sage"), Path("runs/a"))

Order of work: every input is checked before RUN_DIR is touched (store contents, options,
partition, device, a resume's checkpoint and config), so a bad input leaves nothing behind. Then
epochs of the one training loop (train/loop.py), a sampled evaluation every `eval_every` epochs,
a checkpoint after every epoch (and every `checkpoint_every` batches), early stopping on the
validation metric, and finally the best model's layer-wise inference over every node
(pipeline/inference) into the run's predictions, from which the reported metrics come.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

import gstore
from gstore import scratch
from gstore.errors import OptionError
from gstore.faults import fault_point
from gstore.memory import parse_bytes, peak_rss_bytes
from gstore.progress import NULL_PROGRESS, Progress
from gstore.seeding import derive_seed
from gstore.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gstore.train.distributed import (SINGLE, DistContext, ShardLog, check_same_config, merge_metrics,
                                      rank_budget, refuse_serial_only, shard_loader, wrap_model)
from gstore.train.loop import EpochProgress, EpochStats, evaluate, train_epoch
from gstore.train.metrics import SplitMetrics, check_metric, split_metrics
from gstore.train.run_config import ROW_METHODS, TrainConfig, validate
from gstore.train.run_dir import RunDir

log = logging.getLogger(__name__)

EVAL_BATCH_FACTOR = 4     # evaluation batches are this many times the training batch (no backward)


@dataclass
class RunInputs:
    """What a run reads from its store, checked once."""

    store: object                 # GraphStore
    num_classes: int
    in_dim: int
    binary: bool
    partition: object | None      # Partition (cluster-gcn), else None
    device: torch.device
    rows: object | None = None    # PropagatedFeatures (sgc, sign: train/row_run.py), else None


def with_split_metrics(d: dict, metrics: dict) -> dict:
    """`d` plus flat `<split>_accuracy` (None for an absent split) and `<split>_roc_auc` keys."""
    for split in ("train", "val", "test"):
        m = metrics.get(split, {})
        d[f"{split}_accuracy"] = m.get("accuracy")
        if "roc_auc" in m:
            d[f"{split}_roc_auc"] = m["roc_auc"]
    return d


@dataclass
class TrainResult:
    """`gstore train --json`: the run's outcome (metrics from layer-wise inference over all nodes)."""

    method: str
    model: str
    epochs: int                    # epochs trained in total (this and earlier sessions of the run)
    best_epoch: int | None
    stopped_early: bool
    metrics: dict                  # {split: {"accuracy", "count"[, "roc_auc"]}}
    seconds: float
    train_seconds: float
    inference_seconds: float
    batches_per_s: float
    wait_share: float
    peak_rss_bytes: int
    run_dir: str
    predictions: str
    resumed_from: int | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return with_split_metrics(asdict(self), self.metrics)


# ---- checks -------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """auto -> cuda:0 when available else cpu; cuda asked without CUDA: a one-line OptionError."""
    from gstore.pipeline.loader.to_device import resolve_device as loader_device

    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return loader_device(name)


def check_inputs(cfg: TrainConfig, progress: Progress = NULL_PROGRESS) -> RunInputs:
    """Open the store and check everything the run needs; OptionError/StoreError in one line.
    sgc / sign: also the propagated features (computed into the store when missing)."""
    validate(cfg)
    store = gstore.open(cfg.store)
    where = f"store {cfg.store}"
    if store.features is None:
        raise OptionError(f"{where} has no node features to train on",
                          hint="ingest with --features FILE (or generate a graph with features)")
    if store.labels is None or not store.label_names:
        raise OptionError(f"{where} has no labels", hint="ingest with --nodes FILE holding a label column")
    if not len(store.split("train")):
        raise OptionError(f"{where} has no train split",
                          hint="ingest with a split column in --nodes, or let ingest draw one (--split)")
    num_classes = len(store.label_names)
    check_metric(cfg.metric, num_classes)
    partition = None
    if cfg.method == "cluster-gcn" or (cfg.method == "history" and cfg.variant == "gas"):
        label = "cluster-gcn" if cfg.method == "cluster-gcn" else "history --variant gas"
        partition = store.partition if cfg.partition is None else store.partitions().get(int(cfg.partition))
        if partition is None:
            k = cfg.partition or max(2, min(1500, store.num_nodes // 1000))
            which = "no partition" if cfg.partition is None else f"no {cfg.partition}-way partition"
            raise OptionError(f"--method {label} needs the store's clusters, and {where} has {which}",
                              hint=f"run `gstore partition {cfg.store} -k {k} --reorder` first")
        if cfg.clusters_per_batch > partition.num_parts:
            raise OptionError(f"--clusters-per-batch {cfg.clusters_per_batch} is more than the "
                              f"{partition.num_parts} parts of the partition",
                              hint=f"use at most {partition.num_parts}")
        if not partition.contiguous:
            log.warning("the %d-way partition is not laid out contiguously: every batch reads "
                        "scattered rows; `gstore partition %s -k %d --reorder` makes batches ranges "
                        "(about 4x the batches/s)", partition.num_parts, cfg.store, partition.num_parts)
    parse_bytes(cfg.memory_budget)
    device = resolve_device(cfg.device)
    inputs = RunInputs(store, num_classes, int(store.features.shape[1]), num_classes == 2, partition, device)
    if cfg.method in ROW_METHODS:
        from gstore.train.row_run import attach_rows

        attach_rows(cfg, inputs, progress)
    return inputs


def check_checkpoint_config(saved: TrainConfig, ckpt: Checkpoint, path: Path) -> None:
    """Refuse a checkpoint trained with other options than config.json says (an edited or swapped
    config.json), naming each: the checkpoint's own config is what its weights and state fit."""
    diffs = saved.resume_differences(TrainConfig.from_json(ckpt.config, f"the config in {path}"))
    if diffs:
        raise OptionError(f"checkpoint {path} was trained with other options than config.json "
                          "says (saved = the checkpoint's): " + "; ".join(diffs),
                          hint="restore config.json (or pass --force to start a new run)")


def build_model(cfg: TrainConfig, inputs: RunInputs) -> torch.nn.Module:
    from gstore.train.models import GNN

    if cfg.method in ROW_METHODS:
        from gstore.train.row_run import build_row_model

        return build_row_model(cfg, inputs)

    torch.manual_seed(derive_seed(cfg.seed, "init"))
    model = GNN(cfg.model, inputs.in_dim, cfg.hidden, inputs.num_classes, cfg.layers,
                dropout=cfg.dropout, batch_norm=cfg.batch_norm, residual=cfg.residual, jk=cfg.jk,
                heads=cfg.heads)
    return model.to(inputs.device)


def batch_fanouts(cfg: TrainConfig) -> list[int]:
    """The sampled fanouts; the MLP baseline reads no neighbors (empty blocks: seeds only)."""
    return [0] * cfg.layers if cfg.model == "mlp" else list(cfg.fanouts)


def train_loader(cfg: TrainConfig, inputs: RunInputs):
    from gstore.pipeline.loader import ClusterLoader, NeighborLoader

    if cfg.method == "history":
        from gstore.train.history import history_loader

        return history_loader(cfg, inputs)
    common = dict(seed=cfg.seed, prefetch=cfg.prefetch, device=inputs.device, num_workers=cfg.num_workers)
    if cfg.method in ROW_METHODS:
        from gstore.train.row_run import row_loader

        return row_loader(cfg, inputs, "train", batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    if cfg.method == "sage":
        return NeighborLoader(inputs.store, batch_fanouts(cfg), cfg.batch_size, "train", **common)
    from gstore.pipeline.sampling.cluster import ClusterSampler

    part = inputs.partition
    gcn = cfg.model == "gcn"        # GCN takes the sampler's normalised weights, self-loops included
    csr = inputs.store.csr()
    sampler = ClusterSampler(csr.indptr, csr.indices, part.parts, part.num_parts, cfg.clusters_per_batch,
                             normalize=gcn, self_loops=gcn, seed=cfg.seed, perm=part.perm,
                             partptr=part.partptr, contiguous=part.contiguous, pos=part.pos,
                             kernel_threads=1 if cfg.num_workers > 1 else None, edge_ids=False)
    return ClusterLoader(inputs.store, clusters_per_batch=cfg.clusters_per_batch, split="train",
                         sampler=sampler, normalize=gcn, self_loops=gcn, seeds_first=True, **common)


def eval_loader(cfg: TrainConfig, inputs: RunInputs, split: str):
    """Sampled evaluation batches of `split` (the training fanouts, fixed order), or None if empty."""
    from gstore.pipeline.loader import NeighborLoader

    if not len(inputs.store.split(split)):
        return None
    if cfg.method in ROW_METHODS:           # exact: a row's x holds its whole (propagated) neighborhood
        from gstore.train.row_run import row_loader

        return row_loader(cfg, inputs, split, batch_size=cfg.batch_size * EVAL_BATCH_FACTOR, shuffle=False,
                          seed=derive_seed(cfg.seed, "eval") % (2**31))
    return NeighborLoader(inputs.store, batch_fanouts(cfg), cfg.batch_size * EVAL_BATCH_FACTOR, split,
                          shuffle=False, seed=derive_seed(cfg.seed, "eval") % (2**31),
                          prefetch=cfg.prefetch, device=inputs.device, num_workers=cfg.num_workers)


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class BestState:
    score: float = -math.inf
    epoch: int | None = None
    bad_evals: int = 0

    def to_state(self) -> dict:
        return {"score": self.score if math.isfinite(self.score) else None, "epoch": self.epoch,
                "bad_evals": self.bad_evals}

    @staticmethod
    def from_state(d: dict) -> "BestState":
        s = d.get("score")
        return BestState(-math.inf if s is None else float(s), d.get("epoch"), int(d.get("bad_evals", 0)))


def _score(metrics: dict, metric: str) -> float:
    v = metrics.get(metric)
    return float("nan") if v is None else float(v)


def train_run(cfg: TrainConfig, run_dir: Path, *, resume: bool = False, force: bool = False,
              progress: Progress = NULL_PROGRESS,
              on_epoch: Callable[[dict], None] | None = None, dist: DistContext | None = None) -> TrainResult:
    """Train per `cfg` into `run_dir` (new, or --resume an earlier one), then predict every node.

    `on_epoch(record)` receives each metrics.jsonl record as it is written (the CLI's epoch line).
    `dist`: this process's rank in a data-parallel job (train/distributed.py; its process group
    joined): every rank trains its shard, rank 0 alone writes RUN_DIR and predicts.
    """
    from gstore.train.run_open import open_run

    t_start = time.perf_counter()
    ctx = SINGLE if dist is None else dist
    refuse_serial_only(cfg, ctx)
    check_same_config(ctx, cfg)
    rd = RunDir(Path(run_dir))
    with ctx.agreement("the run's checks"):       # every rank raises, or none (no rank left waiting)
        o = open_run(cfg, rd, resume, force, progress, ctx)
    ckpt, inputs, model, optimizer, amp, loader = o.ckpt, o.inputs, o.model, o.optimizer, o.amp, o.loader
    best, epoch, epoch_progress = o.best, o.epoch, o.epoch_progress
    train_model = wrap_model(model, ctx, inputs.device)
    if ctx.is_main:
        rd.claim(fresh=not resume)
        if not resume:
            rd.write_config(cfg.to_json())
    hist = start_history(cfg, inputs, rd, model, loader, ckpt, progress)
    # a new run (epoch 0) starts an empty file; the other ranks read what rank 0 keeps
    kept = (rd.keep_metrics(epoch) if ctx.is_main
            else [r for r in rd.read_metrics() if int(r.get("epoch", -1)) < epoch])
    resumed_from = epoch if resume else None
    evals = {s: shard_loader(eval_loader(cfg, inputs, s), ctx, training=False) for s in ("val", "test")}
    if evals["val"] is None:
        log.warning("store %s has no val split: the best checkpoint and early stopping follow the "
                    "train %s (of sampled training batches), which rewards overfitting",
                    cfg.store, cfg.metric)
    stopped_early = bool(kept) and cfg.patience > 0 and best.bad_evals >= cfg.patience
    totals = {"batches": 0, "seconds": 0.0, "wait": 0.0}
    shards = ShardLog(ctx)
    t_train = time.perf_counter()

    def checkpoint(epoch_now: int, batches_done: int, ep: EpochProgress | None, path: Path) -> None:
        # mid-epoch: every rank's running sums (a collective: every rank calls it at the same batch)
        rank_epochs = ctx.all_gather(ep.to_state()) if ep is not None and ctx.active else None
        if not ctx.is_main:
            return
        state = {"best": best.to_state()}
        if ep is not None:
            state["epoch"] = ep.to_state()
            if rank_epochs is not None:
                state["rank_epochs"] = rank_epochs
        if hist is not None and path == rd.last:
            state["history"] = hist.snapshot(epoch_now, batches_done)
        save_checkpoint(path, Checkpoint(epoch_now, batches_done, model.state_dict(), optimizer.state_dict(),
                                         amp.scaler.state_dict() if amp.scaler.is_enabled() else None,
                                         loader.state_dict(), state, cfg.to_json(), torch.get_rng_state()))
        if hist is not None and path == rd.last:
            hist.prune()

    while epoch < cfg.epochs and not stopped_early:
        ep = epoch_progress or EpochProgress(SplitMetrics(binary=inputs.binary))
        epoch_progress = None
        if ep.batches == 0:
            loader.set_epoch(epoch)
            if hist is not None:
                hist.before_epoch(epoch)
        total = min(len(loader), cfg.max_batches) if cfg.max_batches else len(loader)
        with progress.phase(f"epoch {epoch}", total=total, unit="batches") as bar:
            if ep.batches:
                bar.advance(ep.batches)

            def on_batch(batch, p: EpochProgress) -> None:
                fault_point(f"train:epoch{epoch}:batch{p.batches}")     # crash tests
                if ctx.active:
                    fault_point(f"train:rank{ctx.rank}:epoch{epoch}:batch{p.batches}")
                shards.add(batch)
                bar.advance(1)
                bar.set_postfix(f"loss {p.metrics.loss:.4f}")
                if cfg.checkpoint_every and p.batches % cfg.checkpoint_every == 0 and p.batches < len(loader):
                    checkpoint(epoch, p.batches, p, rd.last)

            left = (max(cfg.max_batches - ep.batches, 0) or -1) if cfg.max_batches else 0
            stats = train_epoch(train_model, bounded(loader, left), optimizer, epoch=epoch, seed=cfg.seed, amp=amp,
                                progress=ep, on_batch=on_batch, step=None if hist is None else hist.step)
        shards.emit(epoch)
        totals["batches"] += stats.batches
        totals["seconds"] += stats.seconds
        totals["wait"] += stats.wait_s
        train_metrics = merge_metrics(ctx, ep.metrics)
        record = _epoch_record(stats, train_metrics)
        if ctx.active:
            record["loss"] = train_metrics.loss     # of every rank's batches, as the metrics are
        improved = False
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            for split, ld in evals.items():
                if ld is not None:
                    ld.set_epoch(0)
                    record[split] = merge_metrics(ctx, evaluate(model, bounded(ld, cfg.max_batches),
                                                                inputs.binary, amp)).summary()
            score = _score(record.get("val", record["train"]), cfg.metric)
            if math.isfinite(score) and score > best.score:
                best = BestState(score, epoch, 0)
                improved = True
            else:
                best.bad_evals += 1
            if cfg.patience and best.bad_evals >= cfg.patience:
                stopped_early = True
                record["stopped_early"] = True
        record["best_epoch"] = best.epoch
        if ctx.is_main:
            rd.append_metrics(record)
        epoch += 1
        checkpoint(epoch, 0, None, rd.last)
        if improved:
            checkpoint(epoch, 0, None, rd.best)
        if on_epoch is not None and ctx.is_main:
            on_epoch(record)
    train_seconds = time.perf_counter() - t_train
    if hist is not None:
        hist.close()
    ctx.barrier()                   # rank 0's checkpoints are complete before any rank reads best.pt
    if cfg.plot and ctx.is_main:
        from gstore.train.plot import plot_curve

        plot_curve(rd.metrics, rd.path / "curve.png")
    t_inf = time.perf_counter()
    final = rd.best if rd.best.exists() else rd.last
    pred = predict_into(inputs, cfg, model, final if final.exists() else None, rd, progress, ctx)
    inference_seconds = time.perf_counter() - t_inf
    model_name = cfg.method if cfg.method in ROW_METHODS else cfg.model
    result = TrainResult(method=cfg.method, model=model_name, epochs=epoch, best_epoch=best.epoch,
                         stopped_early=stopped_early, metrics={} if pred is None else pred.metrics,
                         seconds=time.perf_counter() - t_start, train_seconds=train_seconds,
                         inference_seconds=inference_seconds,
                         batches_per_s=totals["batches"] / totals["seconds"] if totals["seconds"] else float("nan"),
                         wait_share=totals["wait"] / totals["seconds"] if totals["seconds"] else float("nan"),
                         peak_rss_bytes=peak_rss_bytes(), run_dir=str(rd.path),
                         predictions="" if pred is None else str(rd.path / pred.table_path),
                         resumed_from=resumed_from, extra={} if hist is None else hist.summary())
    if pred is None:                # a rank other than 0: its rows of the inference are written
        return result
    from gstore.shard_array import write_json_atomic
    from gstore.cli_options import json_safe

    write_json_atomic(rd.summary, json_safe(result.to_json()))
    return result


def bounded(loader, limit: int):
    """The loader's (remaining) batches, at most `limit` of them (0 = all; a negative limit = none).
    Closing the iterator early stops the loader's threads at once, not when it is collected."""
    if limit == 0:
        yield from loader
        return
    it = iter(loader)
    try:
        for _, batch in zip(range(max(0, limit)), it):   # range first: no batch is pulled past limit
            yield batch
    finally:
        it.close()


def start_history(cfg: TrainConfig, inputs: RunInputs, rd: RunDir, model, loader, ckpt, progress):
    """--method history: the run's history files, restored from the checkpoint's snapshot or filled
    by layer-wise inference (train/history.py); None for the other methods."""
    if cfg.method != "history":
        return None
    from gstore.train.history import HistoryRun

    hist = HistoryRun(cfg, inputs, rd.path, model, loader, progress)
    hist.start(ckpt)
    return hist


def _epoch_record(stats: EpochStats, train: SplitMetrics) -> dict:
    return {"epoch": stats.epoch, "loss": stats.loss, "train": train.summary(),
            "seconds": stats.seconds, "batches": stats.batches, "batches_per_s": stats.batches_per_s,
            "wait_s": stats.wait_s, "wait_share": stats.wait_share}


def predict_into(inputs: RunInputs, cfg: TrainConfig, model: torch.nn.Module, ckpt_path: Path | None,
                 rd: RunDir, progress: Progress = NULL_PROGRESS, ctx: DistContext = SINGLE):
    """Layer-wise inference of `model` (weights from `ckpt_path` when given) over every node, into
    rd's predictions; returns the PredictionsRecord with split metrics filled in. sgc / sign: row
    batches of every node through the model instead (train/row_run.py: the graph is in the hops).
    Data-parallel: every rank computes its node range of each layer, rank 0 alone writes the
    predictions (the other ranks return None; sgc / sign predict on rank 0 alone)."""
    from gstore.pipeline.inference.layerwise import layerwise_inference

    if not ctx.is_main and cfg.method in ROW_METHODS:
        return None

    if ckpt_path is not None:
        model.load_state_dict(load_checkpoint(ckpt_path, map_location=inputs.device).model)
    model.eval()
    if cfg.method in ROW_METHODS:
        from gstore.train.row_run import row_logits

        logits, logits_path = row_logits(cfg, inputs, model, rd.path, cfg.batch_size * EVAL_BATCH_FACTOR,
                                         progress)
    else:
        out = layerwise_inference(inputs.store, model, rd.inference,
                                  memory_budget=rank_budget(cfg.memory_budget, ctx),
                                  dtype=cfg.inference_dtype, device=inputs.device, progress=progress,
                                  overwrite=True, ranks=ctx if ctx.active else None)
        if not ctx.is_main:
            return None
        logits, logits_path = out.open_output(), out.output_path
    return _predictions_from_logits(inputs, cfg, rd, logits, logits_path, progress)


def _predictions_from_logits(inputs: RunInputs, cfg: TrainConfig, rd: RunDir, logits, logits_path: Path,
                             progress: Progress):
    """rd's predictions and split metrics from `logits` (float32 (N, C), a memory map of the array
    at `logits_path` under rd.inference), which is deleted afterwards."""
    from gstore.pipeline.inference.predictions import write_predictions

    try:
        with progress.phase("predictions", total=None):
            rec = write_predictions(inputs.store, logits, rd.path,
                                    budget_bytes=parse_bytes(cfg.memory_budget) // 4)
            rec.metrics = split_metrics(inputs.store, rd.path, rec)
    finally:
        # the logits (N x classes float32) are in the predictions now; at 10^9 nodes they are
        # hundreds of GB, so they are not kept (marked first: scratch.remove deletes only its own)
        scratch.mark(logits_path, "logits", rd.path)
        scratch.remove(logits_path)
        _remove_if_empty(rd.inference)
    return rec


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
