"""What a `gstore train` run directory must show in tests: last weights, stable metrics, kill/resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# metrics that depend on the clock, not on the computation
TIMING_KEYS = {"seconds", "batches_per_s", "wait_s", "wait_share"}


def last_weights(run_dir: Path) -> dict:
    """The model state of run_dir's checkpoints/last.pt."""
    from gstore.train.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.pt").model


def stable_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl of run_dir without the timing keys."""
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """Runs a and b ended with equal weights and metrics."""
    wa, wb = last_weights(a), last_weights(b)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert stable_metrics(a) == stable_metrics(b)


def kill_at(store: Path, b: Path, opts: list, fault: str) -> None:
    """`gstore train store -o b *opts` in a subprocess, SIGKILLed at GSTORE_FAULT_AT=fault."""
    env = {**os.environ, "GSTORE_FAULT_AT": fault}
    p = subprocess.run([sys.executable, "-m", "gstore", "train", str(store), "-o", str(b), *map(str, opts)],
                       env=env, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr
