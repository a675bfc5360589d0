"""`gstore train --method history` as users run it: accuracy, the run directory, exact resume."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gstore.cli import main
from train_graphs import community_store
from run_checks import assert_same_run, kill_at, last_weights as weights

FAST = ["--epochs", "3", "--hidden", "16", "--num-workers", "1", "--lr", "0.01", "-q"]
VARIANTS = {"gas": ["--variant", "gas", "--clusters-per-batch", "2"],
            "scalable-gcn": ["--variant", "scalable-gcn", "--batch-size", "64", "--fanouts", "5,5"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from gstore.pipeline.partition.partition import partition_store

    s = community_store(tmp_path_factory.mktemp("histtrain") / "g.gstore", n=400)
    partition_store(s, 8, seed=0)
    return s


def run(*args, ok: bool = True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r






@pytest.mark.parametrize("variant", ["gas", "scalable-gcn"])
def test_history_methods_train_far_above_chance(store, tmp_path, variant):
    out = tmp_path / "run"
    r = run("train", store, "--method", "history", *VARIANTS[variant], "-o", out, *FAST, "--json")
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["method"] == "history" and res["test_accuracy"] > 0.6      # 4 classes: chance 0.25
    names = sorted(p.name for p in (out / "history").iterdir())
    assert names == (["emb_0"] if variant == "gas" else ["emb_0", "grad_0"])
    assert (out / "history" / "emb_0").stat().st_size == 400 * 16 * 2         # float16 (N, hidden)
    snaps = [p.name for p in (out / "checkpoints").iterdir() if p.is_dir()]
    assert snaps == ["history-e3b0"]                                           # older ones pruned
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["variant"] == variant and cfg["history_dtype"] == "float16"


@pytest.mark.parametrize("variant,every,fault,extra", [
    ("gas", 1, "train:epoch1:batch3", ["--history-refresh", "2"]),   # mid-epoch checkpoint, refresh
    ("scalable-gcn", 0, "train:epoch2:batch1", ["--history-dtype", "float32", "--history-refresh", "1",
                                                "--history-sweep", "2"]),
    ("scalable-gcn", 1, "train:epoch1:batch2", []),
])
def test_a_killed_history_run_resumes_exactly(store, tmp_path, variant, every, fault, extra):
    """SIGKILL inside an epoch (after a mid-epoch checkpoint, or with only the epoch checkpoints);
    the resumed run ends with the same weights, metrics and histories as one never killed."""
    a, b = tmp_path / "a", tmp_path / "b"
    opts = ["--method", "history", *VARIANTS[variant], *FAST, "--checkpoint-every", str(every), *extra]
    run("train", store, "-o", a, *opts)
    kill_at(store, b, opts, fault)
    run("train", store, "-o", b, *opts, "--resume")
    assert_same_run(a, b)
    for f in (a / "history").iterdir():
        assert f.read_bytes() == (b / "history" / f.name).read_bytes(), f.name


def test_resume_after_the_last_epoch_continues_with_more_epochs(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    opts = ["--method", "history", *VARIANTS["scalable-gcn"], *FAST[2:], "--epochs"]
    run("train", store, "-o", a, *opts, "3")
    run("train", store, "-o", b, *opts, "1")
    run("train", store, "-o", b, *opts, "3", "--resume")
    wa, wb = weights(a), weights(b)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_a_resume_with_another_history_sweep_is_refused(store, tmp_path):
    from cli_checks import one_line_error

    out = tmp_path / "run"
    opts = ["--method", "history", *VARIANTS["scalable-gcn"], *FAST[2:], "--epochs", "1"]
    run("train", store, "-o", out, *opts)
    r = run("train", store, "-o", out, *opts, "--history-sweep", "3", "--resume", ok=False)
    one_line_error(r, "--history-sweep: saved 1, now 3")


@pytest.mark.parametrize("layers", [1, 4])
def test_history_runs_at_any_depth(store, tmp_path, layers):
    out = tmp_path / "run"
    run("train", store, "--method", "history", "--variant", "gas", "--clusters-per-batch", "4",
        "--layers", str(layers), "--fanouts", ",".join(["3"] * layers), "--epochs", "1",
        "--hidden", "8", "--num-workers", "1", "-q", "-o", out)
    assert len(list((out / "history").iterdir())) == layers - 1


def test_a_damaged_history_snapshot_is_refused_on_resume(store, tmp_path):
    out = tmp_path / "run"
    opts = ["--method", "history", *VARIANTS["gas"], *FAST[2:], "--epochs"]
    run("train", store, "-o", out, *opts, "1")
    snap = out / "checkpoints" / "history-e1b0" / "emb_0"
    data = bytearray(snap.read_bytes())
    data[10] ^= 0xFF
    snap.write_bytes(bytes(data))
    r = run("train", store, "-o", out, *opts, "2", "--resume", ok=False)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert r.exit_code != 0 and len(lines) == 1 and "damaged" in lines[0], r.output


def test_fill_equals_layerwise_inference_of_the_initial_model(store, tmp_path):
    """Before any batch, emb_l holds layer l of the initial weights for every node."""
    import gstore
    from gstore.pipeline.inference.layerwise import layerwise_inference
    from gstore.train.run import build_model, check_inputs
    from gstore.train.run_config import TrainConfig

    out = tmp_path / "run"
    run("train", store, "--method", "history", *VARIANTS["gas"], "--epochs", "0", "--hidden", "16",
        "--history-dtype", "float32", "--layers", "3", "--fanouts", "3,3,3", "-q", "-o", out)
    cfg = TrainConfig(store=str(Path(store).resolve()), method="history", variant="gas", hidden=16, layers=3,
                      fanouts=(3, 3, 3), clusters_per_batch=2)
    inputs = check_inputs(cfg)
    model = build_model(cfg, inputs)
    res = layerwise_inference(gstore.open(store), model, tmp_path / "inf", keep_layers=True)
    for l in range(2):
        want = np.asarray(np.memmap(res.root + f"/layers/layer_{l}/c/0/0", dtype=np.float32, mode="r",
                                    shape=(400, 16)))
        got = np.fromfile(out / "history" / f"emb_{l}", dtype=np.float32).reshape(400, 16)
        np.testing.assert_array_equal(got, want)
