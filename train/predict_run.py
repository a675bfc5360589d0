"""`gstore predict` as a library call: a run's checkpoint over every node of a store, into the run's
predictions (and optionally into the store as a derived group).

    result = predict_run(Path("g.gstore"), Path("runs/a"), checkpoint="best")
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gstore.errors import OptionError
from gstore.memory import peak_rss_bytes
from gstore.progress import NULL_PROGRESS, Progress
from gstore.train.checkpoint import load_checkpoint
from gstore.train.run import build_model, check_checkpoint_config, check_inputs, predict_into, with_split_metrics
from gstore.train.run_config import TrainConfig
from gstore.train.run_dir import RunDir

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """`gstore predict --json`."""

    run_dir: str
    checkpoint: str
    num_nodes: int
    metrics: dict
    seconds: float
    table: str
    peak_rss_bytes: int
    store_group: str | None = None

    def to_json(self) -> dict:
        return with_split_metrics(asdict(self), self.metrics)


def predict_run(store_path: Path, run_dir: Path, *, checkpoint: str = "best", memory_budget: str | None = None,
                inference_dtype: str | None = None, device: str | None = None,
                into_store: str | None = None, progress: Progress = NULL_PROGRESS) -> PredictResult:
    """Layer-wise inference of a finished (or interrupted) run's checkpoint over every node of
    `store_path` into the run's predictions."""
    import dataclasses

    t0 = time.perf_counter()
    rd = RunDir(Path(run_dir))
    rd.check_resume("--run")
    cfg = saved = TrainConfig.from_json(rd.read_config(), str(rd.config))
    changes = {"store": str(Path(store_path).resolve())}
    if memory_budget is not None:
        changes["memory_budget"] = memory_budget
    if inference_dtype is not None:
        changes["inference_dtype"] = inference_dtype
    if device is not None:
        changes["device"] = device
    if changes["store"] != cfg.store:
        log.info("predicting on %s (the run trained on %s)", changes["store"], cfg.store)
    cfg = dataclasses.replace(cfg, **changes)
    path = rd.best if checkpoint == "best" and rd.best.exists() else rd.last
    if not path.exists():
        raise OptionError(f"run {rd.path} has no checkpoint yet", hint="train it first (gstore train ... --resume)")
    ckpt = load_checkpoint(path)            # checked (crc, format) before anything is written
    check_checkpoint_config(saved, ckpt, path)
    inputs = check_inputs(cfg, progress)
    model = build_model(cfg, inputs)
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError as exc:
        # torch's first line says only "Error(s) in loading state_dict"; the next names a shape
        why = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise OptionError(f"store {cfg.store} ({inputs.in_dim} feature columns, {inputs.num_classes} "
                          f"classes) does not fit the model of checkpoint {path}: {why}",
                          hint="predict with a store like the one the run trained on (its config.json "
                               "names it)") from None
    if into_store is not None:
        from gstore.store_update import NAME_RE

        if not NAME_RE.match(into_store):
            raise OptionError(f"--into-store {into_store!r} must be a plain name (letters, digits, - _ .)")
    rd.claim(fresh=False)
    rec = predict_into(inputs, cfg, model, None, rd, progress)
    group = None
    if into_store is not None:
        from gstore.pipeline.inference.predictions import record_predictions

        del inputs        # the store's maps close before its manifest is switched
        group = record_predictions(Path(store_path), into_store, rd.path, rec,
                                   params={"checkpoint": str(path)})
    return PredictResult(run_dir=str(rd.path), checkpoint=str(path), num_nodes=rec.num_nodes, metrics=rec.metrics,
                         seconds=time.perf_counter() - t0, table=str(rd.path / rec.table_path),
                         peak_rss_bytes=peak_rss_bytes(), store_group=group)
