"""`gstore train --method sgc|sign` as users run it: accuracy on planted communities, the
precomputed hops computed once and reused, predictions, exact resume, options that do not apply."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gstore
from gstore.cli import main
from train_graphs import community_store
from cli_checks import one_line_error
from run_checks import assert_same_run, kill_at, last_weights as _weights, stable_metrics as _metrics

COMMON = ["--batch-size", "64", "--num-workers", "1", "-q"]
SGC = ["--method", "sgc", "--epochs", "8", *COMMON]
SIGN = ["--method", "sign", "--epochs", "6", "--hidden", "16", *COMMON]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return community_store(tmp_path_factory.mktemp("sign") / "g.gstore")


def run(*args, ok: bool = True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def result(r) -> dict:
    return json.loads(r.output.strip().splitlines()[-1])






@pytest.mark.parametrize("method", ["sgc", "sign"])
def test_row_methods_beat_chance_by_a_wide_margin_and_fill_the_run_dir(store, tmp_path, method):
    out = tmp_path / "run"
    res = result(run("train", store, "-o", out, *(SGC if method == "sgc" else SIGN), "--json"))
    assert res["method"] == res["model"] == method
    assert res["test_accuracy"] > 0.85 and res["val_accuracy"] > 0.85     # 4 classes: chance 0.25
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["method"], cfg["hops"], cfg["norm"], cfg["self_loops"]) == (method, 2, "sym", True)
    lines = _metrics(out)
    assert len(lines) == (8 if method == "sgc" else 6) and "val" in lines[-1] and "test" in lines[-1]
    n = gstore.open(store).num_nodes
    cls = np.load(out / "predictions" / "class.npy")
    assert cls.shape == (n,) and (out / "predictions.parquet").exists()
    assert not (out / "inference").exists()                 # the logits scratch is gone
    labels = np.asarray(gstore.open(store).labels)
    test = np.asarray(gstore.open(store).split("test"))
    assert np.mean(cls[test] == labels[test]) == pytest.approx(res["test_accuracy"])


def test_the_hops_are_computed_once_and_reused(tmp_path, monkeypatch):
    import gstore.pipeline.propagation as propagation

    s = community_store(tmp_path / "g.gstore", n=300)
    calls = []
    real = propagation.propagate

    def counting(*a, **kw):
        calls.append(a[1].hops)
        return real(*a, **kw)

    monkeypatch.setattr(propagation, "propagate", counting)
    run("train", s, "-o", tmp_path / "a", *SGC)
    assert calls == [2]
    key = "propagate-sym-loops-float32"
    assert key in gstore.open(s).manifest.derived
    run("train", s, "-o", tmp_path / "b", *SIGN)               # same hops: reused
    assert calls == [2]
    run("train", s, "-o", tmp_path / "c", *SGC, "--norm", "rw")  # another operator: computed
    assert calls == [2, 2]
    assert {key, "propagate-rw-loops-float32"} <= set(gstore.open(s).manifest.derived)


def test_predict_reruns_the_row_predictions_of_a_run(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *SIGN)
    first = np.load(out / "predictions" / "class.npy").copy()
    (out / "predictions.parquet").unlink()
    res = result(run("predict", store, "--run", out, "--json", "-q"))
    assert (np.load(out / "predictions" / "class.npy") == first).all()
    assert (out / "predictions.parquet").exists() and res["num_nodes"] == len(first)
    assert res["test_accuracy"] == json.loads((out / "summary.json").read_text())["test_accuracy"]


def test_resume_equals_an_uninterrupted_run(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    opts = [*SIGN[:-1], "--epochs"]
    run("train", store, "-o", a, *opts, "4")
    run("train", store, "-o", b, *opts, "2")
    run("train", store, "-o", b, *opts, "4", "--resume")
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _metrics(a) == _metrics(b)
    assert (np.load(a / "predictions" / "class.npy") == np.load(b / "predictions" / "class.npy")).all()


def test_a_kill_inside_an_epoch_resumes_exactly(store, tmp_path):
    """SIGKILL after batch 3 of epoch 1 (5 batches per epoch, a checkpoint every 2); resume; same
    as never killed (dropout, batch norm statistics, optimizer state and loader position)."""
    a, b = tmp_path / "a", tmp_path / "b"
    opts = ["--method", "sign", "--epochs", "3", *COMMON, "--checkpoint-every", "2", "--hidden", "16",
            "--batch-norm"]
    run("train", store, "-o", a, *opts)
    kill_at(store, b, opts, "train:epoch1:batch3")
    assert not (b / "predictions.parquet").exists()
    run("train", store, "-o", b, *opts, "--resume")
    assert_same_run(a, b)


def test_resume_with_other_hops_names_them(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *SGC[:2], "--epochs", "1", *COMMON)
    r = run("train", store, "-o", out, *SGC[:2], "--epochs", "2", "--hops", "3", *COMMON, "--resume", ok=False)
    one_line_error(r, "--hops: saved 2, now 3")


@pytest.mark.parametrize("args,needle", [
    (["--method", "sgc", "--hops", "0"], "--hops must be"),
    (["--method", "sign", "--hops", "-2"], "--hops must be"),
    (["--method", "sign", "--hops", "65"], "--hops must be an integer in [1, 64]"),
    (["--method", "sgc", "--fanouts", "5,5"], "--fanouts does not apply to --method sgc"),
    (["--method", "sgc", "--hidden", "64"], "--hidden does not apply to --method sgc"),
    (["--method", "sign", "--clusters-per-batch", "3"], "--clusters-per-batch does not apply"),
    (["--method", "sign", "--model", "gat"], "--model does not apply to --method sign"),
    (["--hops", "3"], "--hops does not apply to --method sage"),
    (["--method", "cluster-gcn", "--no-self-loops"], "--self-loops does not apply"),
    (["--method", "history", "--variant", "scalable-gcn", "--hops", "3"],
     "--hops does not apply to --method history (leave it out: it sets the propagation"),
    (["--history-refresh", "2"], "--history-refresh does not apply to --method sage (leave it out: "
                                 "it sets the histories of --method history"),
    (["--method", "sgc", "--history-dtype", "float32"], "--history-dtype does not apply to --method sgc"),
    (["--method", "sign", "--layers", "0"], "--layers must be >= 1"),
    (["--method", "sgc", "--lr", "inf"], "--lr must be finite"),
    (["--method", "sign", "--input-dropout", "1.0"], "--input-dropout must be in [0, 1)"),
    (["--method", "sign", "--input-dropout", "-0.1"], "--input-dropout must be in [0, 1)"),
    (["--method", "sgc", "--input-dropout", "0.2"], "--input-dropout does not apply to --method sgc "
                                                    "(leave it out: only --method sign"),
    (["--input-dropout", "0.2"], "--input-dropout does not apply to --method sage"),
])
def test_bad_row_options_are_one_line_and_write_nothing(store, tmp_path, args, needle):
    before = sorted(gstore.open(store).manifest.derived)
    r = run("train", store, "-o", tmp_path / "run", *args, "-q", ok=False)
    one_line_error(r, needle)
    assert not (tmp_path / "run").exists()
    assert sorted(gstore.open(store).manifest.derived) == before     # nothing propagated either


def test_unknown_norm_and_dtype_are_refused(store, tmp_path):
    for opt in (["--norm", "left"], ["--propagate-dtype", "int8"]):
        r = run("train", store, "-o", tmp_path / "run", "--method", "sgc", *opt, ok=False)
        assert r.exit_code == 2 and "Invalid value" in r.output
    assert not (tmp_path / "run").exists()


def test_the_papers_defaults_fill_options_left_out(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, "--method", "sgc", "--epochs", "1", *COMMON)
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["lr"], cfg["dropout"], cfg["epochs"]) == (0.2, 0.0, 1)     # typed --epochs wins


def test_sign_defaults_and_its_hop_scales_in_the_checkpoint(store, tmp_path):
    from gstore.pipeline.propagation import PropagationParams, open_propagated
    from gstore.train.row_models import hop_scales

    out = tmp_path / "run"
    run("train", store, "-o", out, "--method", "sign", "--epochs", "1", "--hidden", "8", *COMMON)
    cfg = json.loads((out / "config.json").read_text())
    # the defaults chosen on validation accuracy (docs/benchmarks.md, "Training (issue 10)")
    from gstore.train.run_config import METHOD_DEFAULTS

    want_cfg = {k: v for k, v in METHOD_DEFAULTS["sign"].items() if k not in ("epochs", "hidden")}
    assert {k: cfg[k] for k in want_cfg} == want_cfg
    assert (cfg["epochs"], cfg["hidden"]) == (1, 8)                             # typed options win
    assert cfg["input_dropout"] == 0.0 and cfg["dropout"] == 0.5
    s = gstore.open(store)
    want = hop_scales(open_propagated(s, PropagationParams(hops=2)).hops, np.asarray(s.split("train")))
    assert want[0] == 1.0 and want[2] > want[1] > 1.0           # smoothing shrinks the later hops
    assert np.allclose(_weights(out)["hop_scales"].numpy(), want)
    typed = tmp_path / "typed"
    run("train", store, "-o", typed, "--method", "sign", "--epochs", "1", "--hidden", "8",
        "--input-dropout", "0.3", *COMMON)
    assert json.loads((typed / "config.json").read_text())["input_dropout"] == 0.3


def test_a_sign_checkpoint_without_hop_scales_loads_as_scales_of_one():
    from gstore.train.row_models import SIGN

    old = SIGN(4, 2, 8, 3, 1, hop_scales=[1.0, 2.0, 3.0]).state_dict()
    del old["hop_scales"]                          # as saved before the hop scales existed
    m = SIGN(4, 2, 8, 3, 1, hop_scales=[1.0, 2.0, 3.0])
    m.load_state_dict(old)
    assert torch.equal(m.hop_scales, torch.ones(3))
