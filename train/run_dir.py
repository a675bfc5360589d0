"""The run directory of `gstore train -o RUN_DIR`: what is in it and who may write it.

    RUN_DIR/.gstore-scratch     gstore's marker: a training run (its pid while it runs)
    RUN_DIR/config.json         every resolved option (TrainConfig), enough to rerun
    RUN_DIR/metrics.jsonl       one JSON object per finished epoch
    RUN_DIR/checkpoints/last.pt the latest checkpoint (every epoch, and every N batches on request)
    RUN_DIR/best.pt             the checkpoint with the best validation score
    RUN_DIR/history/            --method history: history arrays (train/history.py)
    RUN_DIR/predictions/...     layer-wise inference of the final model (pipeline/inference)
    RUN_DIR/predictions.parquet
    RUN_DIR/summary.json        the final TrainResult
    RUN_DIR/curve.png           learning curve (--plot, needs matplotlib)

A new run needs a new or empty RUN_DIR; an earlier run's RUN_DIR is continued with --resume or
replaced with --force (only when gstore's marker says it is a training run dir). A directory that
is anything else is refused, so `-o ~` cannot touch a user's files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gstore import scratch
from gstore.errors import OptionError, StoreExistsError
from gstore.shard_array import write_json_atomic

RUN_PURPOSE = "training run"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def inference(self) -> Path:
        return self.path / "inference"

    def is_run(self) -> bool:
        marker = scratch.read_marker(self.path) if self.path.is_dir() else None
        return marker is not None and marker.purpose == RUN_PURPOSE

    def check_new(self, force: bool) -> None:
        """Refuse (one line) a RUN_DIR a new run may not use; nothing is written."""
        p = self.path
        if not os.path.lexists(p):
            return
        if p.is_symlink() or not p.is_dir():
            raise OptionError("-o RUN_DIR exists and is not a directory", path=p, hint="choose another -o")
        if not os.listdir(p):
            return
        if not self.is_run():
            raise OptionError("-o RUN_DIR exists, is not empty and is not a gstore training run; "
                              "gstore will not write over its files", path=p,
                              hint="choose a new or empty -o")
        self._refuse_live()
        if not force:
            raise StoreExistsError("-o RUN_DIR holds an earlier training run", path=p,
                                   hint="pass --resume to continue it, or --force to replace it")

    def check_resume(self, option: str = "--resume") -> None:
        """`option` names the flag that pointed here (--resume of train, --run of predict)."""
        p = self.path
        if not p.is_dir() or not self.is_run() or not self.config.exists():
            raise OptionError(f"{option} needs the RUN_DIR of an earlier `gstore train` run (with its "
                              "config.json)", path=p, hint="start a run with -o RUN_DIR first")
        self._refuse_live()

    def _refuse_live(self) -> None:
        marker = scratch.read_marker(self.path)
        if marker is not None and marker.owner.state() == "alive" and not scratch.owned_by_me(self.path):
            raise OptionError(f"another gstore process (pid {marker.owner.pid}) is training in this RUN_DIR",
                              path=self.path, hint="wait for it, or choose another -o")

    def claim(self, fresh: bool) -> None:
        """Take the directory for this process (after every check passed): a fresh run empties an
        earlier run's directory first (it is gstore's: check_new verified the marker)."""
        # checked again here: another run may have claimed the dir since check_new / check_resume
        # (while this one opened the store), and re-marking it would let remove() delete its files
        self._refuse_live()
        if fresh and self.path.is_dir() and self.is_run():
            scratch.mark(self.path, RUN_PURPOSE, self.path)     # ours now: remove() deletes only ours
            scratch.remove(self.path)
        scratch.claim_output_dir(self.path, RUN_PURPOSE, "-o RUN_DIR")
        (self.path / "checkpoints").mkdir(exist_ok=True)

    def write_config(self, cfg_json: dict) -> None:
        write_json_atomic(self.config, cfg_json)

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text())
        except (OSError, ValueError) as exc:
            raise OptionError(f"cannot read {self.config}: {exc}", hint="start a new run") from None

    def append_metrics(self, record: dict) -> None:
        from gstore.cli_options import json_safe   # non-finite floats -> null: strict JSON lines

        with open(self.metrics, "a") as f:
            f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                break       # a line cut by a kill: everything from it on is dropped by keep_metrics
        return out

    def keep_metrics(self, before_epoch: int) -> list[dict]:
        """Keep only the records of epochs < before_epoch (a resumed run recomputes the rest)."""
        kept = [r for r in self.read_metrics() if int(r.get("epoch", -1)) < before_epoch]
        tmp = self.metrics.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.metrics)
        return kept
