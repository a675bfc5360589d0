"""Layer-wise inference equals full-batch inference, whatever the chunking; its files are cleaned up."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_layerwise import RefModel, dense_forward
from store_factory import build_store, random_graph

import gstore
from gstore.errors import BudgetError, OptionError, StoreError
from gstore.pipeline.inference import layerwise as lw
from gstore.pipeline.inference.layerwise import SCRATCH_NAME, LayerwiseResult, layerwise_inference

TINY = 6000          # bytes: chunks of a few edges and rows at these widths, hubs everywhere
HUGE = 1 << 30       # one chunk per layer


def _store(path, n, src, dst, dim=5, dtype=np.float32, seed=0, directed=True):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)
    build_store(path, src, dst, n, features=x, directed=directed)
    return gstore.open(path), x


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """40 nodes, random edges plus a hub (node 0, every node's out-edge) and isolated nodes."""
    n = 40
    src, dst = random_graph(n - 5, 150, seed=1)
    src = np.r_[src, np.arange(n - 5), 7]
    dst = np.r_[dst, np.zeros(n - 5, dtype=np.int64), 7]      # and a self-loop
    return _store(tmp_path_factory.mktemp("g") / "s", n, src, dst, directed=True)


def _dims(jk):
    return [5, 8, 8, 8] if jk == "max" else [5, 8, 6, 4]


@pytest.mark.parametrize("kind", ["sage", "gcn"])
@pytest.mark.parametrize("jk", ["none", "cat", "max"])
def test_equals_dense_full_batch(graph, tmp_path, kind, jk):
    store, x = graph
    model = RefModel(kind, _dims(jk), jk=jk)
    ref = dense_forward(model, x, store.indptr, store.indices)
    for budget in (TINY, HUGE):
        res = layerwise_inference(store, model, tmp_path / f"out{budget}", memory_budget=budget)
        np.testing.assert_allclose(np.asarray(res.open_output()), ref, rtol=1e-5, atol=1e-5)
        assert res.output.shape == (store.num_nodes, model.out_dim)
        chunks = [s.chunks for s in res.layers]
        assert (min(chunks) > 5) if budget == TINY else chunks == [1, 1, 1]
    assert sorted(os.listdir(tmp_path / f"out{TINY}")) == ["logits"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 25), m=st.integers(0, 90), budget=st.integers(6000, 60000),
       kind=st.sampled_from(["sage", "gcn"]), jk=st.sampled_from(["none", "cat"]),
       seed=st.integers(0, 2**16))
def test_random_graphs_and_budgets(tmp_path_factory, n, m, budget, kind, jk, seed):
    src, dst = random_graph(n, m, seed=seed)
    path = tmp_path_factory.mktemp("r")
    store, x = _store(path / "s", n, src, dst, dim=3, seed=seed, directed=bool(seed % 2))
    model = RefModel(kind, [3, 4, 2], jk=jk, seed=seed)
    res = layerwise_inference(store, model, path / "out", memory_budget=budget)
    np.testing.assert_allclose(np.asarray(res.open_output()),
                               dense_forward(model, x, store.indptr, store.indices), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sage", "gcn"])
def test_star_hub_is_split_and_merged(tmp_path, kind):
    n = 300
    src = np.arange(1, n)
    store, x = _store(tmp_path / "s", n, src, np.zeros(n - 1, dtype=np.int64), dim=4)
    model = RefModel(kind, [4, 6, 3])
    small = layerwise_inference(store, model, tmp_path / "small", memory_budget=20000)
    first = small.layers[0]
    assert first.hubs == 1 and first.hub_slices >= 4 and first.max_edges < n - 1
    assert model.calls["merge"] >= 2 * (first.hub_slices - 1)
    big = layerwise_inference(store, model, tmp_path / "big", memory_budget=HUGE)
    assert big.layers[0].hubs == 0
    np.testing.assert_allclose(np.asarray(small.open_output()), np.asarray(big.open_output()),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(small.open_output()),
                               dense_forward(model, x, store.indptr, store.indices), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sage", "gcn"])
def test_a_hubs_self_loop_is_src_equal_dst_in_every_slice(tmp_path, kind):
    """Models that treat self-loops apart (GAT drops src == dst edges and adds its own term once)
    must see a hub's self-loop as its own local id in whichever slice holds it."""
    n = 120
    src = np.r_[np.arange(n), 5, 5]          # every node -> 0 (0 -> 0 too), and 5 -> 5 twice
    dst = np.r_[np.zeros(n, dtype=np.int64), 5, 5]
    store, x = _store(tmp_path / "s", n, src, dst, dim=4)
    model = RefModel(kind, [4, 5, 3], drop_loops=True)
    res = layerwise_inference(store, model, tmp_path / "o", memory_budget=20000)
    assert res.layers[0].hubs == 1
    np.testing.assert_allclose(np.asarray(res.open_output()),
                               dense_forward(model, x, store.indptr, store.indices), rtol=1e-5, atol=1e-5)


def test_float16_storage_and_float16_features(tmp_path):
    n = 60
    src, dst = random_graph(n, 300, seed=4)
    store, x = _store(tmp_path / "s", n, src, dst, dim=6, dtype=np.float16, directed=False)
    assert store.features.dtype == np.float16
    model = RefModel("sage", [6, 16, 16, 5], jk="cat")
    ref = dense_forward(model, x.astype(np.float32), store.indptr, store.indices)
    exact = layerwise_inference(store, model, tmp_path / "f32", memory_budget=TINY * 4)
    np.testing.assert_allclose(np.asarray(exact.open_output()), ref, rtol=1e-5, atol=1e-5)
    half = layerwise_inference(store, model, tmp_path / "f16", memory_budget=TINY * 4, dtype="float16",
                               keep_layers=True)
    got = np.asarray(half.open_output())
    assert got.dtype == np.float32
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 5e-3 * scale
    assert not np.array_equal(got, np.asarray(exact.open_output()))    # it did round
    assert [r.dtype for r in half.kept_layers] == ["float16"] * 3


def test_keep_layers_are_zarr_arrays_of_every_layer(graph, tmp_path):
    import zarr

    store, x = graph
    model = RefModel("gcn", [5, 8, 6, 4])
    res = layerwise_inference(store, model, tmp_path / "o", memory_budget=TINY, keep_layers=True)
    names = [r.name for r in res.kept_layers]
    assert names == ["layers/layer_0", "layers/layer_1", "layers/layer_2"]
    last = zarr.open_array(str(tmp_path / "o" / "layers" / "layer_2"), mode="r")[:]
    np.testing.assert_allclose(last, np.asarray(res.open_output()), rtol=1e-6)   # jk none: output = last
    logits = zarr.open_array(str(res.output_path), mode="r")[:]
    np.testing.assert_array_equal(logits, np.asarray(res.open_output()))
    assert sorted(os.listdir(tmp_path / "o")) == ["layers", "logits"]
    back = LayerwiseResult.from_json(res.to_json())
    assert back == res


class _Spy(RefModel):
    """Records, per layer, which layer arrays exist in the scratch dir while the layer runs."""

    def __init__(self, work, *a, fail_at=None, **kw):
        super().__init__(*a, **kw)
        self.work, self.fail_at, self.seen = work, fail_at, {}

    def forward_layer(self, layer, h_src, block, degree_src):
        if layer == self.fail_at:
            raise RuntimeError("model failed")
        self.seen.setdefault(layer, sorted(os.listdir(self.work / "layers")))
        return super().forward_layer(layer, h_src, block, degree_src)


def test_each_layer_array_is_deleted_once_the_next_layer_is_done(graph, tmp_path):
    store, _ = graph
    model = _Spy(tmp_path / "o" / SCRATCH_NAME, "sage", [5, 4, 4, 4, 3])
    layerwise_inference(store, model, tmp_path / "o", memory_budget=TINY)
    assert model.seen == {0: ["layer_0"], 1: ["layer_0", "layer_1"], 2: ["layer_1", "layer_2"],
                          3: ["layer_2"]}     # the last layer writes only the output
    assert sorted(os.listdir(tmp_path / "o")) == ["logits"]


def test_a_failing_model_leaves_nothing_behind(graph, tmp_path):
    store, _ = graph
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    model = _Spy(out / SCRATCH_NAME, "sage", [5, 4, 4, 3], fail_at=2)
    with pytest.raises(RuntimeError, match="model failed"):
        layerwise_inference(store, model, out, memory_budget=TINY)
    assert sorted(os.listdir(out)) == ["mine.txt"]
    assert model.training                          # eval mode was only for the run


def test_a_prefetch_failure_reaches_the_caller(graph, tmp_path, monkeypatch):
    store, _ = graph
    calls = {"n": 0}
    real = lw.gather_features

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(lw, "gather_features", flaky)
    with pytest.raises(OSError, match="No space left") as info:
        layerwise_inference(store, RefModel("sage", [5, 4, 3]), tmp_path / "o", memory_budget=TINY)
    assert info.value.filename == str(tmp_path / "o")      # the CLI's one line names the path
    assert os.listdir(tmp_path / "o") == []


def test_an_existing_output_is_replaced_only_when_asked(graph, tmp_path):
    store, x = graph
    out = tmp_path / "o"
    layerwise_inference(store, RefModel("sage", [5, 4, 3], seed=1), out, memory_budget=TINY)
    model = RefModel("sage", [5, 4, 3], seed=2)
    with pytest.raises(OptionError, match="logits already exists"):
        layerwise_inference(store, model, out)
    res = layerwise_inference(store, model, out, overwrite=True)
    np.testing.assert_allclose(np.asarray(res.open_output()),
                               dense_forward(model, x, store.indptr, store.indices), rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(out)) == ["logits"]
    before = np.asarray(res.open_output()).copy()
    with pytest.raises(RuntimeError, match="model failed"):      # a failed rerun changes nothing
        layerwise_inference(store, _Spy(out / SCRATCH_NAME, "sage", [5, 4, 3], fail_at=1), out,
                            overwrite=True)
    np.testing.assert_array_equal(np.asarray(res.open_output()), before)
    assert sorted(os.listdir(out)) == ["logits"]
    for name in ("a/b", ".hidden", ""):
        with pytest.raises(OptionError, match="plain file name"):
            layerwise_inference(store, model, out, output_name=name)
    with pytest.raises(OptionError, match="taken by the kept layers"):
        layerwise_inference(store, model, out, output_name="layers", keep_layers=True)
    (out / "other").mkdir()
    with pytest.raises(OptionError, match="not an array gstore wrote"):
        layerwise_inference(store, model, out, overwrite=True, output_name="other")


def test_a_users_directory_named_like_the_scratch_dir_is_not_touched(graph, tmp_path):
    store, _ = graph
    mine = tmp_path / "o" / SCRATCH_NAME
    mine.mkdir(parents=True)
    (mine / "data").write_text("keep")
    with pytest.raises(StoreError, match="not made by gstore"):
        layerwise_inference(store, RefModel("sage", [5, 3]), tmp_path / "o")
    assert (mine / "data").read_text() == "keep"


def test_bad_inputs_are_one_line_errors(graph, tmp_path):
    store, _ = graph
    good = RefModel("sage", [5, 4, 3])
    cases = [
        (dict(model=RefModel("sage", [6, 3])), OptionError, "takes 6 input features, the store's features have 5"),
        (dict(memory_budget=500), BudgetError, "too small for layer 0"),
        (dict(memory_budget="lots"), OptionError, "cannot read size"),
        (dict(dtype="int8"), OptionError, "float32 or float16"),
        (dict(device="tpu:0"), OptionError, "unknown device"),
        (dict(prefetch_threads=0), OptionError, "prefetch threads must be an integer"),
        (dict(output_name="a/b"), OptionError, "plain file name"),
    ]
    if not torch.cuda.is_available():
        cases.append((dict(device="cuda"), OptionError, "no CUDA device"))
    for kw, err, text in cases:
        model = kw.pop("model", good)
        with pytest.raises(err, match=text) as info:
            layerwise_inference(store, model, tmp_path / "o", **kw)
        assert "\n" not in str(info.value)
    assert not os.path.exists(tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match="not a directory"):
        layerwise_inference(store, good, tmp_path / "file")


def test_a_store_without_features_is_refused(tmp_path):
    build_store(tmp_path / "s", np.array([0, 1]), np.array([1, 2]), 3)
    with pytest.raises(OptionError, match="store has no features"):
        layerwise_inference(gstore.open(tmp_path / "s"), RefModel("sage", [5, 3]), tmp_path / "o")


class _WrongWidth(RefModel):
    def layer_dim(self, layer):
        return super().layer_dim(layer) + 1


def test_a_model_whose_rows_disagree_with_layer_dim_is_named(graph, tmp_path):
    store, _ = graph
    with pytest.raises(OptionError, match=r"model layer 0 returned rows of shape \(\d+, 4\), expected"):
        layerwise_inference(store, _WrongWidth("sage", [5, 4, 3]), tmp_path / "o", memory_budget=TINY)
    assert os.listdir(tmp_path / "o") == []


def test_an_empty_graph_gives_an_empty_output(tmp_path):
    build_store(tmp_path / "s", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0,
                features=np.zeros((0, 5), dtype=np.float32))
    res = layerwise_inference(gstore.open(tmp_path / "s"), RefModel("sage", [5, 4, 3], jk="cat"),
                              tmp_path / "o")
    assert res.output.shape == (0, 3) and np.asarray(res.open_output()).shape == (0, 3)
    assert sorted(os.listdir(tmp_path / "o")) == ["logits"]
