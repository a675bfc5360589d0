"""Pieces of `gstore train` that need no model: metrics, checkpoints, config, run directory rules."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from gstore.errors import InputError, OptionError, StoreExistsError
from gstore.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gstore.train.metrics import SplitMetrics, check_metric, roc_auc
from gstore.train.run_config import RESUME_FREE, TrainConfig, validate
from gstore.train.run_dir import RunDir


def roc_auc_reference(scores, positive) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=40))
def test_roc_auc_equals_the_pairwise_definition(rows):
    scores = np.array([s for s, _ in rows], dtype=np.float64)   # few distinct values: many ties
    positive = np.array([p for _, p in rows])
    got, want = roc_auc(scores, positive), roc_auc_reference(scores, positive)
    assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want)


def test_split_metrics_accumulate_and_round_trip():
    m = SplitMetrics(binary=True)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    m.update(logits, torch.tensor([0, 1, 1]), loss=0.3)
    assert (m.correct, m.count) == (2, 3)
    assert m.loss == pytest.approx(0.3)
    back = SplitMetrics.from_state(m.to_state())
    assert back.summary() == m.summary()
    assert m.summary()["roc_auc"] == pytest.approx(roc_auc_reference([-2.0, 1.0, -0.5], [0, 1, 1]))


def test_roc_auc_is_refused_for_more_than_two_classes():
    with pytest.raises(OptionError, match="binary"):
        check_metric("roc_auc", 3)
    with pytest.raises(OptionError, match="unknown --metric"):
        check_metric("f1", 2)


def _ckpt() -> Checkpoint:
    return Checkpoint(epoch=3, batches_done=0, model={"w": torch.arange(6.0)}, optimizer={"state": {}},
                      scaler=None, loader={"epoch": 3}, progress={"best": {"score": 0.5}},
                      config={"store": "/x"}, torch_rng=torch.get_rng_state())


def test_checkpoint_round_trips(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint(p, _ckpt())
    back = load_checkpoint(p)
    assert back.epoch == 3 and torch.equal(back.model["w"], torch.arange(6.0))
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]          # no temp file left


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty", "garbage"])
def test_a_damaged_checkpoint_is_one_line_error(tmp_path, damage):
    p = tmp_path / "c.pt"
    save_checkpoint(p, _ckpt())
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "header":
        data[:6] = b"XXXXXX"
    elif damage == "empty":
        data = b""
    else:
        data = os.urandom(300)
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checkpoint .*c.pt") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)


def test_a_missing_checkpoint_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_killed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "c.pt"
    save_checkpoint(p, _ckpt())
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_checkpoint(p, Checkpoint(**{**_ckpt().__dict__, "epoch": 4}))
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


def test_fanouts_must_match_layers():
    with pytest.raises(OptionError, match=r"--fanouts has 2 hop\(s\) \(15,10\) but --layers is 3"):
        validate(TrainConfig(store="/x", layers=3, fanouts=(15, 10)))


@pytest.mark.parametrize("field,value,msg", [("method", "gin", "unknown --method"),
                                             ("model", "gin", "unknown --model"),
                                             ("dropout", 1.0, "--dropout"), ("lr", 0.0, "--lr"),
                                             ("epochs", -1, "--epochs"), ("batch_size", 0, "--batch-size"),
                                             ("patience", -2, "--patience"), ("layers", 0, "--layers")])
def test_bad_options_are_refused(field, value, msg):
    cfg = TrainConfig(store="/x")
    setattr(cfg, field, value)
    with pytest.raises(OptionError, match=msg):
        validate(cfg)


def test_config_round_trips_and_refuses_unknown_keys():
    cfg = TrainConfig(store="/x", fanouts=(5, 5), layers=2)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(OptionError, match="unknown options"):
        TrainConfig.from_json({**cfg.to_json(), "colour": "red"})


def test_resume_differences_name_the_options_that_matter():
    saved = TrainConfig(store="/x")
    now = TrainConfig(store="/x", hidden=64, lr=0.1, epochs=99, num_workers=7, partition=8)
    diffs = now.resume_differences(saved)
    assert len(diffs) == 3
    assert any(d.startswith("--hidden: saved 128, now 64") for d in diffs)
    assert any(d.startswith("--parts:") for d in diffs)
    assert {"epochs", "num_workers"} <= RESUME_FREE


def test_run_dir_rules(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(OptionError, match="not a gstore training run"):
        RunDir(user).check_new(force=True)
    assert (user / "thesis.tex").read_text() == "precious"
    RunDir(tmp_path / "new").check_new(force=False)              # absent: fine, nothing made
    assert not (tmp_path / "new").exists()
    run = RunDir(tmp_path / "run")
    run.claim(fresh=True)
    run.write_config({"store": "/x"})
    with pytest.raises(StoreExistsError, match="--resume to continue it, or --force"):
        run.check_new(force=False)
    run.check_new(force=True)
    run.claim(fresh=True)                                           # --force empties it
    assert not run.config.exists()
    with pytest.raises(OptionError, match="--resume needs"):
        RunDir(user).check_resume()
    link = tmp_path / "link"
    link.symlink_to(user)
    with pytest.raises(OptionError, match="not a directory"):
        RunDir(link).check_new(force=True)


def test_metrics_lines_of_recomputed_epochs_are_dropped(tmp_path):
    run = RunDir(tmp_path / "run")
    run.claim(fresh=True)
    for e in range(4):
        run.append_metrics({"epoch": e, "loss": 1.0 / (e + 1)})
    with open(run.metrics, "a") as f:
        f.write('{"epoch": 4, "lo')                                 # a line cut by a kill
    assert [r["epoch"] for r in run.keep_metrics(2)] == [0, 1]
    assert [r["epoch"] for r in run.read_metrics()] == [0, 1]


def test_metrics_lines_are_strict_json(tmp_path):
    import json

    run = RunDir(tmp_path / "run")
    run.claim(fresh=True)
    run.append_metrics({"epoch": 0, "loss": float("nan"), "train": {"accuracy": float("inf")}})
    line = run.metrics.read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"epoch": 0, "loss": None, "train": {"accuracy": None}}
