"""`gstore train` / `gstore predict` against hostile input: each test is a defect found by trying to
break the commands (run dirs inside stores, concurrent runs, hand-edited config.json, absurd
options, a store that does not fit the run). Every error must be one line, exit code 1 or 2, and
leave nothing half-written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gstore.cli import main
from train_graphs import community_store
from cli_checks import one_line_error

FAST = ["--epochs", "1", "--hidden", "8", "--batch-size", "128", "--fanouts", "5,5", "--num-workers", "1", "-q"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return community_store(tmp_path_factory.mktemp("hostile") / "g.gstore", n=300)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    """A finished run; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    run("train", store, "-o", out, *FAST)
    return out


def run(*args, ok: bool = True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ---- where the run directory may be ----------------------------------------------------------------
def test_a_run_dir_inside_the_store_is_refused(store):
    """`-o g.gstore/run` was accepted: the run's files went into the store's directory, and the next
    `ingest --force` of that store deleted the trained run with it."""
    inner = store / "run"
    one_line_error(run("train", store, "-o", inner, *FAST, ok=False), "inside", str(store))
    assert not inner.exists()


# ---- two processes, one run directory --------------------------------------------------------------
def test_a_fresh_claim_does_not_take_a_live_runs_dir(tmp_path):
    """Two `gstore train --force` (or two new runs) into one RUN_DIR both passed the early check,
    then the second's claim re-marked and deleted the first's live directory, and both wrote into
    it (metrics.jsonl interleaved). The claim must refuse a run dir another live process holds."""
    from gstore import scratch
    from gstore.errors import OptionError
    from gstore.train.run_dir import RUN_PURPOSE, RunDir

    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = scratch.ScratchOwner(pid=other.pid, start_time=scratch._proc_start_time(other.pid),
                                     boot_id=scratch._boot_id(), hostname=scratch.ScratchOwner.current().hostname)
        marker = scratch.ScratchMarker(purpose=RUN_PURPOSE, target=str(d), owner=owner, created=0.0)
        (d / scratch.MARKER).write_text(json.dumps(marker.to_json()))
        with pytest.raises(OptionError, match="another gstore process"):
            RunDir(d).claim(fresh=True)
        assert (d / "config.json").exists()
        assert scratch.read_marker(d).owner.pid == other.pid
    finally:
        other.kill()
        other.wait()


# ---- config.json edited by hand --------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("fanouts", None), ("fanouts", "5,5"), ("layers", "two"),
                                         ("hidden", 8.5), ("amp", "yes"), ("seed", None), ("dropout", "x")])
def test_a_config_json_with_wrong_types_is_one_line(trained, tmp_path, field, value):
    """A config.json field of the wrong type gave a TypeError traceback (fanouts: null), or was
    compared as-is ("--layers: saved 'two'") instead of being named as a damaged config."""
    out = copy_run(trained, tmp_path / "run")
    cfg = json.loads((out / "config.json").read_text())
    cfg[field] = value
    (out / "config.json").write_text(json.dumps(cfg))
    before = (out / "metrics.jsonl").read_text()
    one_line_error(run("train", cfg["store"], "-o", out, *FAST, "--resume", ok=False), "config.json", field)
    one_line_error(run("predict", cfg["store"], "--run", out, "-q", ok=False), "config.json", field)
    assert (out / "metrics.jsonl").read_text() == before


def test_a_config_json_that_disagrees_with_the_checkpoint_is_refused(trained, tmp_path):
    """config.json edited (--hidden 8 -> 16) and --resume given the edited value: the options matched
    config.json, so the resume went on to a state_dict error that named nothing. The checkpoint
    holds the config it was trained with; the differing options are named against it."""
    out = copy_run(trained, tmp_path / "run")
    cfg = json.loads((out / "config.json").read_text())
    cfg["hidden"] = 16
    (out / "config.json").write_text(json.dumps(cfg))
    args = [a if a != "8" else "16" for a in FAST]
    one_line_error(run("train", cfg["store"], "-o", out, *args, "--resume", ok=False),
                   "last.pt", "--hidden: saved 8, now 16")


# ---- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt,value", [("--lr", "inf"), ("--weight-decay", "inf"), ("--weight-decay", "nan"),
                                       ("--lr", "nan")])
def test_non_finite_options_are_refused(store, tmp_path, opt, value):
    """--weight-decay inf trained to NaN weights (loss NaN, every score NaN) and reported success."""
    out = tmp_path / "run"
    one_line_error(run("train", store, "-o", out, *FAST, opt, value, ok=False), opt)
    assert not out.exists()


def test_a_budget_too_small_for_inference_is_refused_before_training(store, tmp_path):
    """--memory-budget 1KiB trained every epoch, then failed in layer-wise inference: the training
    time was lost and RUN_DIR was left without predictions. The budget is checked first."""
    out = tmp_path / "run"
    one_line_error(run("train", store, "-o", out, *FAST, "--memory-budget", "1KiB", ok=False),
                   "--memory-budget")
    assert not out.exists()


# ---- predict ---------------------------------------------------------------------------------------
def test_predict_on_a_store_that_does_not_fit_the_run_names_what_differs(trained, tmp_path):
    """`gstore predict OTHER --run RUN` with other feature dims ended in
    "Error(s) in loading state_dict for GNN:" and nothing else."""
    other = community_store(tmp_path / "other.gstore", n=200, dim=12, classes=3)
    line = one_line_error(run("predict", other, "--run", trained, "-q", ok=False), "12", "16")
    assert "feature" in line
    assert (trained / "predictions.parquet").exists()


def test_predict_on_a_dir_that_is_not_a_run_names_run(tmp_path, store):
    """The error for `predict --run DIR` (not a run) spoke of --resume, an option predict lacks."""
    d = tmp_path / "notarun"
    d.mkdir()
    line = one_line_error(run("predict", store, "--run", d, "-q", ok=False), "--run")
    assert "--resume" not in line


def test_a_failed_predictions_write_leaves_the_earlier_predictions_whole(trained, tmp_path, monkeypatch):
    """class.npy / score.npy were rewritten in place (open_memmap "w+") while the table went to a
    temp file: a kill or a full disk during the write left new, partial classes beside the old
    predictions.parquet. Now every file is written aside and renamed at the end."""
    import pyarrow.parquet as pq

    import gstore
    from gstore.pipeline.inference.predictions import write_predictions

    out = copy_run(trained, tmp_path / "run")
    before = {p: (out / "predictions" / p).read_bytes() for p in ("class.npy", "score.npy")}
    g = gstore.open(json.loads((out / "config.json").read_text())["store"])
    logits = np.zeros((g.num_nodes, len(g.label_names)), np.float32)

    def disk_full(self, table, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    with pytest.raises(OSError):
        write_predictions(g, logits, out)
    for p, data in before.items():
        assert (out / "predictions" / p).read_bytes() == data, p
    assert sorted(x.name for x in (out / "predictions").iterdir()) == ["class.npy", "score.npy"]


def test_temp_files_of_a_killed_predictions_write_are_removed_by_the_next_one(trained, tmp_path):
    """A SIGKILL mid-write left `class.npy.<pid>.tmp` (N int32) and friends in the run dir forever: the
    next write used its own pid's names. Now temps of dead pids are removed; a live pid's are kept."""
    import gstore
    from gstore.pipeline.inference.predictions import write_predictions

    out = copy_run(trained, tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pred = out / "predictions"
    stale = [pred / f"class.npy.{dead.pid}.tmp", pred / f"score.npy.{dead.pid}.tmp",
             out / f".predictions.parquet.{dead.pid}.tmp"]
    # a live writer's temp (this test's parent process stands in for it) and a name gstore never makes
    keep = [pred / f"class.npy.{os.getppid()}.tmp", pred / "class.npy.notapid.tmp"]
    for p in stale + keep:
        p.write_bytes(b"x" * 64)
    g = gstore.open(json.loads((out / "config.json").read_text())["store"])
    logits = np.zeros((g.num_nodes, len(g.label_names)), np.float32)
    write_predictions(g, logits, out)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)


def test_resume_after_the_store_was_rebuilt_is_refused(tmp_path):
    s = community_store(tmp_path / "g.gstore", seed=0)
    out = tmp_path / "run"
    run("train", s, "-o", out, *FAST)
    from store_factory import build_store
    from train_graphs import community_graph

    src, dst, x, y, splits = community_graph(seed=5)             # same sizes, other edges
    build_store(s, src, dst, len(y), features=x, labels=y, splits=splits, force=True)
    r = run("train", s, "-o", out, *FAST[2:], "--epochs", "2", "--resume", ok=False)
    one_line_error(r, "changed since this run's last checkpoint")


def test_resume_without_the_checkpoint_of_finished_epochs_is_refused(trained, tmp_path, store):
    out = copy_run(trained, tmp_path / "run")
    (out / "checkpoints" / "last.pt").unlink()
    before = (out / "metrics.jsonl").read_text()
    r = run("train", store, "-o", out, *FAST[2:], "--epochs", "2", "--resume", ok=False)
    one_line_error(r, "finished epochs but no checkpoints/last.pt")
    assert (out / "metrics.jsonl").read_text() == before


# ---- --method history (issue 10) ------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--variant", "gas"], "--variant gas needs --method history"),
    (["--method", "history"], "needs --variant"),
    (["--method", "history", "--variant", "gas"], "gstore partition"),
    (["--method", "history", "--variant", "scalable-gcn", "--amp"], "--amp"),
    (["--method", "history", "--variant", "scalable-gcn", "--history-refresh", "-1"], "--history-refresh"),
    (["--method", "history", "--variant", "scalable-gcn", "--history-dtype", "float64"], "float64"),
    (["--method", "history", "--variant", "scalable-gcn", "--history-sweep", "-1"], "--history-sweep"),
    (["--method", "history", "--variant", "scalable-gcn", "--history-sweep", "x"], "--history-sweep"),
    (["--method", "history", "--variant", "gas", "--history-sweep", "2"],
     "--history-sweep does not apply to --variant gas"),
    (["--history-sweep", "2"], "--history-sweep does not apply to --method sage"),
    (["--method", "history", "--variant", "sage"], "sage"),
])
def test_bad_history_options_are_one_line_and_write_nothing(store, tmp_path, args, needle):
    out = tmp_path / "run"
    one_line_error(run("train", store, "-o", out, *FAST, *args, ok=False), needle)
    assert not out.exists()


def test_a_history_resume_of_another_method_names_the_options(trained):
    """--resume of a sage run with --method history is refused, naming both options."""
    cfg = json.loads((trained / "config.json").read_text())
    r = run("train", cfg["store"], "-o", trained, *FAST, "--method", "history", "--variant",
            "scalable-gcn", "--resume", ok=False)
    one_line_error(r, "--method", "--variant")
