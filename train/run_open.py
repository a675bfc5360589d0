"""Opening a training run: every check before RUN_DIR is touched, then the model, optimizer and
training loader, restored from the checkpoint of a --resume (train/run.py's first step)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gstore.errors import OptionError
from gstore.train.checkpoint import Checkpoint, load_checkpoint
from gstore.train.distributed import DistContext, rank_budget, rank_device, shard_loader
from gstore.train.loop import Amp, EpochProgress
from gstore.train.run import (BestState, RunInputs, build_model, check_checkpoint_config, check_inputs,
                              train_loader)
from gstore.train.run_config import ROW_METHODS, TrainConfig
from gstore.train.run_dir import RunDir
from gstore.progress import Progress


@dataclass
class OpenRun:
    """A run ready to train: its checked inputs, and the state restored from a checkpoint."""

    ckpt: Checkpoint | None
    inputs: RunInputs
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    amp: Amp
    loader: object                        # the training loader (this rank's shard)
    best: BestState
    epoch: int
    epoch_progress: EpochProgress | None


def open_run(cfg: TrainConfig, rd: RunDir, resume: bool, force: bool, progress: Progress,
              ctx: DistContext) -> OpenRun:
    """Every check of a run before RUN_DIR is touched: the store, options, device, a resume's
    checkpoint and config; then the model, optimizer and loader, restored from the checkpoint."""
    from gstore.builder import check_output

    check_output(rd.path, [cfg.store])      # --force / ingest --force would delete one with the other
    if cfg.world_size != ctx.world_size:
        raise OptionError(f"the run config says {cfg.world_size} rank(s) but this job has {ctx.world_size}",
                          hint="set TrainConfig.world_size to the job's WORLD_SIZE")
    ckpt = None
    if resume:
        rd.check_resume()
        saved = TrainConfig.from_json(rd.read_config(), str(rd.config))
        diffs = cfg.resume_differences(saved)
        if diffs:
            raise OptionError("--resume with options that differ from the run's: " + "; ".join(diffs),
                              hint="pass the run's options (see its config.json), or start a new run")
        ckpt = load_checkpoint(rd.last) if rd.last.exists() else None
        if ckpt is not None:
            check_checkpoint_config(saved, ckpt, rd.last)
        elif rd.read_metrics():
            # epochs finished but their checkpoint is gone: restarting at epoch 0 would silently
            # throw the run away (and a damaged checkpoint's hint says to delete it)
            raise OptionError(f"run {rd.path} has finished epochs but no {rd.last.relative_to(rd.path)}",
                              hint="restore the checkpoint (best.pt is a copy of the best epoch's), "
                                   "or start the run again with --force")
    else:
        rd.check_new(force)
    if ctx.active and cfg.method in ROW_METHODS:
        with ctx.agreement("computing the propagated features"):    # once, by rank 0, into the store
            if ctx.is_main:
                check_inputs(cfg, progress)
    inputs = check_inputs(cfg, progress)
    inputs.device = rank_device(inputs.device, ctx)
    model = build_model(cfg, inputs)
    from gstore.pipeline.inference.checks import check_inference_budget

    if cfg.method not in ROW_METHODS:       # row methods predict by row batches, no layer pass
        check_inference_budget(inputs.store, model, rank_budget(cfg.memory_budget, ctx),
                               cfg.inference_dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = Amp(cfg.amp, inputs.device)
    loader = shard_loader(train_loader(cfg, inputs), ctx, training=True)
    best = BestState()
    epoch, epoch_progress = 0, None
    if ckpt is not None:
        saved_store = (ckpt.loader.get("config") or {}).get("store") if isinstance(ckpt.loader, dict) else None
        if saved_store is not None and saved_store != loader.config().store:
            raise OptionError(f"the store {cfg.store} changed since this run's last checkpoint (rebuilt, "
                              "reordered or replaced): resuming would not continue the same training",
                              hint="train a new run on the store as it is now (--force)")
        try:
            model.load_state_dict(ckpt.model)
            optimizer.load_state_dict(ckpt.optimizer)
            if ckpt.scaler:
                amp.scaler.load_state_dict(ckpt.scaler)
            loader.load_state_dict(ckpt.loader)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise OptionError(f"checkpoint {rd.last} does not fit this run: {str(exc).splitlines()[0]}",
                              hint="start a new run (--force)") from None
        best = BestState.from_state(ckpt.progress.get("best", {}))
        epoch = ckpt.epoch
        if ckpt.batches_done:
            states = ckpt.progress.get("rank_epochs") or [ckpt.progress["epoch"]]
            if len(states) != ctx.world_size:
                raise OptionError(f"checkpoint {rd.last} holds the running sums of {len(states)} rank(s), "
                                  f"this job has {ctx.world_size}", hint="resume with as many ranks")
            epoch_progress = EpochProgress.from_state(states[ctx.rank])
    return OpenRun(ckpt, inputs, model, optimizer, amp, loader, best, epoch, epoch_progress)
