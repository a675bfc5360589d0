"""`gstore train` / `gstore predict` as users run them: results, the run directory, resume, bad input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gstore
from gstore.cli import main
from cli_checks import one_line_error
from store_factory import build_store
from train_graphs import community_graph, community_store
from run_checks import assert_same_run, kill_at, last_weights as _weights, stable_metrics as _metrics

FAST = ["--epochs", "3", "--hidden", "16", "--batch-size", "64", "--fanouts", "5,5", "--num-workers", "1", "--lr", "0.01",
        "-q"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return community_store(tmp_path_factory.mktemp("train") / "g.gstore")


def run(*args, ok: bool = True):
    r = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def test_sage_trains_far_above_chance_and_fills_the_run_dir(store, tmp_path):
    out = tmp_path / "run"
    r = run("train", store, "-o", out, *FAST, "--json")
    res = json.loads(r.output.strip().splitlines()[-1])
    for key in ("method", "epochs", "train_accuracy", "val_accuracy", "test_accuracy", "seconds",
                "peak_rss_bytes", "run_dir"):
        assert key in res
    assert res["method"] == "sage" and res["epochs"] == 3
    assert res["test_accuracy"] > 0.6                       # 4 classes: chance is 0.25
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fanouts"] == [5, 5] and cfg["store"] == str(store.resolve())
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    for x in lines:
        assert {"loss", "train", "val", "seconds", "batches_per_s", "wait_share"} <= set(x)
    assert (out / "checkpoints" / "last.pt").exists() and (out / "best.pt").exists()
    cls = np.load(out / "predictions" / "class.npy")
    assert cls.shape == (gstore.open(store).num_nodes,)
    import pyarrow.parquet as pq

    t = pq.read_table(out / "predictions.parquet")
    assert t.column_names[:3] == ["node_id", "dense_id", "class"]
    assert t.num_rows == len(cls) and (t.column("class").to_numpy() == cls).all()


@pytest.mark.parametrize("model", ["gcn", "sage"])
def test_cluster_gcn_trains_on_the_partition(store, tmp_path, model):
    from gstore.pipeline.partition.partition import partition_store

    s = tmp_path / "g.gstore"
    community_store(s)
    partition_store(s, 8, seed=0)
    r = run("train", s, "--method", "cluster-gcn", "--model", model, "--clusters-per-batch", "2",
            "-o", tmp_path / "run", *FAST, "--json")
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["method"] == "cluster-gcn" and res["test_accuracy"] > 0.6


def test_cluster_gcn_without_a_partition_names_the_command(store, tmp_path):
    r = run("train", store, "--method", "cluster-gcn", "-o", tmp_path / "run", *FAST, ok=False)
    line = one_line_error(r, "gstore partition", str(store), "--reorder")
    assert "-k" in line
    assert not (tmp_path / "run").exists()








def test_resume_equals_an_uninterrupted_run(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    opts = [*FAST[2:], "--epochs"]
    run("train", store, "-o", a, *opts, "4")
    run("train", store, "-o", b, *opts, "2")
    run("train", store, "-o", b, *opts, "4", "--resume")
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _metrics(a) == _metrics(b)
    assert (np.load(a / "predictions" / "class.npy") == np.load(b / "predictions" / "class.npy")).all()


@pytest.mark.parametrize("every", [0, 2])
def test_a_kill_inside_an_epoch_resumes_exactly(store, tmp_path, every):
    """SIGKILL after batch 3 of epoch 1 (of 5 batches per epoch); resume; same as never killed."""
    a, b = tmp_path / "a", tmp_path / "b"
    opts = ["--epochs", "3", "--hidden", "16", "--batch-size", "64", "--fanouts", "5,5",
            "--num-workers", "1", "-q", "--checkpoint-every", str(every)]
    run("train", store, "-o", a, *opts)
    kill_at(store, b, opts, "train:epoch1:batch3")
    assert not (b / "predictions.parquet").exists()
    run("train", store, "-o", b, *opts, "--resume")
    assert_same_run(a, b)


def test_resume_with_other_options_names_them(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *FAST)
    before = (out / "metrics.jsonl").read_text()
    r = run("train", store, "-o", out, *FAST, "--hidden", "32", "--lr", "0.1", "--resume", ok=False)
    one_line_error(r, "--hidden: saved 16, now 32", "--lr: saved 0.01, now 0.1")
    assert (out / "metrics.jsonl").read_text() == before


def test_an_existing_run_dir_needs_resume_or_force(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *FAST)
    one_line_error(run("train", store, "-o", out, *FAST, ok=False), "--resume", "--force")
    run("train", store, "-o", out, *FAST, "--force")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    one_line_error(run("train", store, "-o", mine, *FAST, "--force", ok=False), "not a gstore training run")
    assert (mine / "notes.txt").read_text() == "keep" and len(os.listdir(mine)) == 1


def test_a_corrupt_checkpoint_is_refused_on_resume(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *FAST)
    last = out / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    one_line_error(run("train", store, "-o", out, *FAST[:1], "5", *FAST[2:], "--resume", ok=False),
                   "last.pt", "crc32")


@pytest.mark.parametrize("what", ["features", "labels", "train"])
def test_a_store_missing_what_training_needs(tmp_path, what):
    src, dst, x, y, splits = community_graph(n=100)
    kw = {"features": x, "labels": y, "splits": splits}
    if what == "features":
        kw.pop("features")
    elif what == "labels":
        kw.pop("labels")
    else:
        kw["splits"] = {k: v for k, v in splits.items() if k != "train"}
    s = build_store(tmp_path / "g.gstore", src, dst, 100, **kw)
    r = run("train", s, "-o", tmp_path / "run", *FAST, ok=False)
    one_line_error(r, {"features": "features", "labels": "labels", "train": "train split"}[what])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,needle", [
    (["--fanouts", "5,5,5"], "--layers is 2"),
    (["--fanouts", "5,,5", "--layers", "3"], "field 2"),
    (["--layers", "0"], "--layers"),
    (["--device", "cuda"], "cuda"),
    (["--metric", "roc_auc"], "binary"),
])
def test_bad_options_are_one_line_and_write_nothing(store, tmp_path, args, needle):
    if needle == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run("train", store, "-o", tmp_path / "run", *FAST[:2], *args, "-q", ok=False)
    one_line_error(r, needle)
    assert not (tmp_path / "run").exists()


def test_unknown_method_and_model_are_refused(store, tmp_path):
    for opt in (["--method", "gin"], ["--model", "mlp2"]):
        r = run("train", store, "-o", tmp_path / "run", *opt, ok=False)
        assert r.exit_code == 2 and "Invalid value" in r.output
    assert not (tmp_path / "run").exists()


def test_predict_reruns_inference_of_a_run(store, tmp_path):
    out = tmp_path / "run"
    run("train", store, "-o", out, *FAST)
    first = np.load(out / "predictions" / "class.npy").copy()
    (out / "predictions.parquet").unlink()
    r = run("predict", store, "--run", out, "--json", "-q")
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["num_nodes"] == len(first) and "test_accuracy" in res
    assert (np.load(out / "predictions" / "class.npy") == first).all()
    assert (out / "predictions.parquet").exists()


def test_binary_tasks_report_roc_auc(tmp_path):
    s = community_store(tmp_path / "g.gstore", classes=2)
    r = run("train", s, "-o", tmp_path / "run", *FAST, "--metric", "roc_auc", "--json")
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["test_roc_auc"] > 0.7 and "test_accuracy" in res


def test_predict_into_store_adds_a_derived_group(tmp_path):
    s = community_store(tmp_path / "g.gstore")
    out = tmp_path / "run"
    run("train", s, "-o", out, *FAST)
    run("predict", s, "--run", out, "--into-store", "sage-preds", "-q")
    g = gstore.open(s, verify=True)
    d = g.derived("sage-preds")
    assert d.record.kind == "predictions"
    assert (np.asarray(d.arrays["class"]) == np.load(out / "predictions" / "class.npy")).all()
    assert "name=sage-preds, kind=predictions" in run("info", s).output
    r = run("predict", s, "--run", out, "--into-store", "../x", ok=False)
    one_line_error(r, "--into-store")


def test_early_stopping_and_the_plot(store, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    run("train", store, "-o", out, *FAST[2:], "--epochs", "30", "--lr", "0.05", "--patience", "2", "--plot")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1].get("stopped_early") is True and len(lines) < 30
    assert all(x["best_epoch"] <= x["epoch"] for x in lines)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_amp_on_cpu_trains(store, tmp_path):
    r = run("train", store, "-o", tmp_path / "run", *FAST, "--amp", "--json")
    assert json.loads(r.output.strip().splitlines()[-1])["test_accuracy"] > 0.5


def test_the_docs_pyg_example_runs(store, tmp_path, monkeypatch):
    """docs/training.md's PyG example, as written, on a small store."""
    pytest.importorskip("torch_geometric")
    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    code = text.split("```python\n")[1].split("```")[0]
    assert "to_pyg()" in code
    code = code.replace('gstore.open("g.gstore")', f"gstore.open({str(store)!r})")
    scope: dict = {}
    exec(compile(code, "docs/training.md", "exec"), scope)
    assert float(scope["loss"].detach()) < 1.4                            # learned something in 3 epochs


def test_cluster_gcn_with_two_workers_resumes_exactly(tmp_path):
    from gstore.pipeline.partition.partition import partition_store

    s = community_store(tmp_path / "g.gstore")
    partition_store(s, 8, seed=0, reorder=True)
    a, b = tmp_path / "a", tmp_path / "b"
    opts = ["--method", "cluster-gcn", "--model", "gcn", "--clusters-per-batch", "2", "--hidden", "16",
            "--num-workers", "2", "--checkpoint-every", "1", "-q", "--epochs", "2"]
    run("train", s, "-o", a, *opts)
    kill_at(s, b, opts, "train:epoch1:batch2")
    run("train", s, "-o", b, *opts, "--resume")
    assert_same_run(a, b)


def test_without_a_val_split_the_best_checkpoint_is_said_to_follow_train(tmp_path, caplog):
    src, dst, x, y, splits = community_graph(n=200)
    path = build_store(tmp_path / "g.gstore", src, dst, len(y), features=x, labels=y,
                       splits={"train": splits["train"], "test": splits["test"]})
    with caplog.at_level("WARNING", logger="gstore.train.run"):
        run("train", path, "-o", tmp_path / "run", *FAST)
    assert any("no val split" in r.getMessage() and "train" in r.getMessage() for r in caplog.records)
