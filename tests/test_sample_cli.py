import json

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from cli_checks import one_line_error as _one_line_error
from store_factory import build_store, random_graph


def one_line_error(r, *words):
    """These commands fail before logging anything: the error line is the whole output."""
    return _one_line_error(r, *words, sole=True)


N = 500


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    rng = np.random.default_rng(3)
    src, dst = random_graph(N, 4000, seed=5)
    feats = rng.standard_normal((N, 8)).astype(np.float32)
    return build_store(tmp_path_factory.mktemp("cli") / "s", src, dst, N, features=feats,
                       labels=rng.integers(0, 3, N), splits={"train": np.arange(0, N, 2)})


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res


def test_neighbor_json(store_path):
    res = run("sample", store_path, "--fanouts", "5,3", "--batch-size", "32", "--batches", "12",
              "--json", "--workers", "2", "--cache-bytes", "4KiB")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["batches"] == 12 and out["batches_per_s"] > 0 and out["edges_per_s"] > 0
    assert out["peak_rss_bytes"] > 0 and out["feature_mb_per_s"] > 0
    assert 0 < out["peak_anon_bytes"] <= out["peak_rss_bytes"]  # mapped store pages are not anonymous
    assert 0 <= out["cache_hit_rate"] <= 1


def check_dump(store_path, dump, expect_seed_count=None):
    g = gstore.open(store_path)
    files = sorted(dump.glob("batch_*.npz"))
    assert files
    for f in files:
        d = np.load(f)
        nodes, ei, seeds = d["nodes"], d["edge_index"], d["seeds"]
        assert ei.shape[0] == 2 and ei.shape[1] > 0
        assert len(np.unique(nodes)) == len(nodes)
        assert np.isin(ei, nodes).all() and np.isin(seeds, nodes).all()
        for s, t in ei.T:
            assert s in g.neighbors(int(t))
        if expect_seed_count is not None:
            assert len(seeds) <= expect_seed_count
            np.testing.assert_array_equal(nodes[:len(seeds)], seeds)
    return files


def test_neighbor_dump_and_table(store_path, tmp_path):
    res = run("sample", store_path, "--fanouts", "4,4", "--batch-size", "20", "--batches", "3",
              "--dump", tmp_path / "d", "--cold")
    assert res.exit_code == 0, res.output
    assert "batches/s" in res.output and "peak RSS" in res.output
    files = check_dump(store_path, tmp_path / "d", expect_seed_count=20)
    assert len(files) == 4  # warm-up batch included


def test_cluster_random_parts(store_path, tmp_path):
    res = run("sample", store_path, "--method", "cluster", "--random-parts", "10",
              "--clusters-per-batch", "3", "--batches", "5", "--json", "--dump", tmp_path / "c")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["batches"] == 5 and out["edges_per_s"] > 0
    check_dump(store_path, tmp_path / "c")


def test_cluster_without_partition_is_clear_error(store_path):
    res = CliRunner().invoke(main, ["sample", str(store_path), "--method", "cluster"])
    assert res.exit_code == 1
    assert "--random-parts" in res.output


def test_bad_fanouts(store_path):
    res = CliRunner().invoke(main, ["sample", str(store_path), "--fanouts", "a,b"])
    assert res.exit_code == 1 and "fanouts" in res.output


@pytest.mark.parametrize("text, words", [
    ("15,,5", ["--fanouts", "field 2 is empty"]),
    ("5,", ["field 2 is empty"]),
    ("", ["field 1 is empty"]),
    ("a,b", ["field 1", "'a'", "not an integer"]),
    ("3,1e3", ["field 2", "'1e3'"]),
    ("4,-2", ["field 2", "-2"]),
    ("99999999999999999999", ["field 1", "above the limit"]),
    ("2147483648", ["above the limit 2147483647"]),
])
def test_bad_fanouts_one_line(store_path, text, words):
    one_line_error(CliRunner().invoke(main, ["sample", str(store_path), "--fanouts", text]), *words)


def test_fanout_zero_runs_with_no_edges(store_path):
    res = run("sample", store_path, "--fanouts", "0", "--batch-size", "16", "--batches", "2", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["fanouts"] == [0] and out["mean_edges"] == 0 and out["mean_nodes"] == 16


@pytest.mark.parametrize("device, words", [
    ("banana", ["--device 'banana' is not a device", "cuda:N"]),
    ("cuda:x", ["--device 'cuda:x'"]),
    ("meta", ["--device 'meta'"]),
])
def test_bad_device_one_line(store_path, device, words):
    one_line_error(CliRunner().invoke(main, ["sample", str(store_path), "--device", device]), *words)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_device_without_gpu_one_line(store_path, device):
    one_line_error(CliRunner().invoke(main, ["sample", str(store_path), "--device", device]),
                   f"--device '{device}'", "no CUDA device is available")


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], ["--seed must be >= 0"]),
    (["--workers", "100000"], ["num_workers must be in [1, 256]"]),
    (["--method", "cluster", "--random-parts", "99999999999"], ["--random-parts", "[1, 500]"]),
    (["--dump", "/proc/gstore-no-such/x"], ["--dump directory", "/proc/gstore-no-such/x"]),
])
def test_other_bad_sample_options_one_line(store_path, args, words):
    one_line_error(CliRunner().invoke(main, ["sample", str(store_path), "--batches", "1", *args]),
                   *words)


def test_dump_never_writes_into_a_users_directory(store_path, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "batch_0.npz").write_bytes(b"my own file")
    res = run("sample", store_path, "--batches", "1", "--dump", mine)
    assert res.exit_code == 1 and "not empty" in res.output and "--dump" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert (mine / "batch_0.npz").read_bytes() == b"my own file"
    # a new dir, then the same dir again (an earlier dump's: gstore's marker says so)
    for _ in range(2):
        res = run("sample", store_path, "--batches", "1", "--dump", tmp_path / "d")
        assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d").glob("batch_*.npz"))) == 2
