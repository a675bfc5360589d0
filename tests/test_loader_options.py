"""Option checks of the loaders and samplers: fanouts, devices, and the config a resumed state must match."""
import json

import numpy as np
import pytest
import torch

import gstore
from gstore.errors import GStoreError, OptionError
from gstore.pipeline.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.state import LoaderConfig, LoaderState
from gstore.pipeline.loader.to_device import resolve_device
from gstore.pipeline.sampling.neighbor import FANOUT_MAX, NeighborSampler, check_fanouts
from store_factory import build_store, random_graph

N = 300


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(2)
    src, dst = random_graph(N, 2000, seed=4)
    path = build_store(tmp_path_factory.mktemp("opt") / "s", src, dst, N,
                       features=rng.standard_normal((N, 4)).astype(np.float32),
                       labels=rng.integers(0, 3, N),
                       splits={"train": np.arange(0, N, 2), "val": np.arange(1, N, 4)})
    return gstore.open(path)


# ---- fanouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fanouts, words", [
    ([15, None, 5], ["fanouts[1]", "None", "not an integer"]),
    ([15, "x"], ["fanouts[1]", "'x'"]),
    ([3, -2], ["fanouts[1]", "-2", "-1"]),
    ([FANOUT_MAX + 1], ["fanouts[0]", str(FANOUT_MAX + 1), "2^31-1"]),
    ([10**20], ["fanouts[0]", "above the limit"]),
    ([2.5], ["fanouts[0]", "2.5"]),
    ([True], ["fanouts[0]", "True"]),
    ([], ["fanouts is empty"]),
    ("15,10", ["list of integers"]),
    (5, ["list of integers"]),
])
def test_bad_fanouts_are_one_line_option_errors(store, fanouts, words):
    for make in (lambda: check_fanouts(fanouts),
                 lambda: NeighborSampler(store.indptr, store.indices, fanouts),
                 lambda: NeighborLoader(store, fanouts, 16)):
        with pytest.raises(OptionError) as err:
            make()
        text = str(err.value)
        assert "\n" not in text and all(w in text for w in words), text


def test_loader_checks_fanouts_even_with_an_injected_sampler(store):
    sampler = NeighborSampler.from_store(store, [2])
    with pytest.raises(OptionError, match="fanouts"):
        NeighborLoader(store, [2, -3], 16, sampler=sampler)


def test_good_fanouts():
    assert check_fanouts([15, 10, 5]) == [15, 10, 5]
    assert check_fanouts(np.array([3, -1, 0])) == [3, -1, 0]
    assert check_fanouts([15.0, FANOUT_MAX]) == [15, FANOUT_MAX]
    assert all(type(f) is int for f in check_fanouts(np.array([1, 2])))


def test_fanout_zero_samples_no_neighbors_at_that_hop(store):
    """0 is PyG's "no neighbors at this hop": the hop's block is empty and adds no nodes."""
    seeds = np.array([0, 7, 19], dtype=np.int64)
    sub = NeighborSampler.from_store(store, [3, 0]).sample(seeds, seed=1)
    one_hop = NeighborSampler.from_store(store, [3]).sample(seeds, seed=1)
    np.testing.assert_array_equal(sub.nodes, one_hop.nodes)
    assert sub.hop_sizes == [3, len(one_hop.nodes), len(one_hop.nodes)]
    empty = sub.blocks[0]  # input layer first: the block of the second hop
    assert empty.num_edges == 0 and empty.num_src == empty.num_dst == len(one_hop.nodes)
    only = NeighborSampler.from_store(store, [0]).sample(seeds, seed=1)
    np.testing.assert_array_equal(only.nodes, seeds)
    assert only.blocks[0].num_edges == 0 and only.blocks[0].num_src == 3
    b = next(iter(NeighborLoader(store, [0], 8, shuffle=False)))
    assert b.num_nodes == b.num_seeds == 8 and b.blocks[0].num_edges == 0


# ---- devices ------------------------------------------------------------------------------------

@pytest.mark.parametrize("device, words", [
    ("banana", ["'banana' is not a device", "cuda:N"]),
    ("cuda:x", ["'cuda:x' is not a device"]),
    ("meta", ["'meta'", "CPU or a CUDA GPU"]),
    (3.5, ["3.5"]),
])
def test_bad_devices(device, words):
    with pytest.raises(OptionError) as err:
        resolve_device(device)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_bad_device_in_the_loader(store):
    with pytest.raises(OptionError, match="banana"):
        NeighborLoader(store, [2], 16, device="banana")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_says_so(store):
    for dev in ("cuda", "cuda:0", "cuda:7"):
        with pytest.raises(OptionError, match="no CUDA device is available"):
            NeighborLoader(store, [2], 16, device=dev)


@pytest.fixture()
def two_gpus(monkeypatch):
    """The CUDA runtime queries faked: two devices, the current one is 1 (device parsing is real)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


def test_cuda_resolves_to_the_current_indexed_device(two_gpus):
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device(0) == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(OptionError, match=r"2 CUDA device\(s\), cuda:0..cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(OptionError, match="--device 'cuda:7'"):
        resolve_device("cuda:7", option="--device")


# ---- resume state -------------------------------------------------------------------------------

def neighbor_state(store, **kw):
    args = dict(fanouts=[3, 2], batch_size=20, split="train", seed=1)
    args.update(kw)
    loader = NeighborLoader(store, args.pop("fanouts"), args.pop("batch_size"), args.pop("split"),
                            **args)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    it.close()
    return state


def test_state_is_json_and_resumes(store):
    state = json.loads(json.dumps(neighbor_state(store)))
    loader = NeighborLoader(store, [3, 2], 20, "train", seed=1)
    loader.load_state_dict(state)
    assert loader.state_dict() == state
    assert next(iter(loader)).index == 1
    cfg = LoaderConfig.from_json(state["config"])
    assert cfg.fanouts == (3, 2) and cfg.batch_size == 20 and LoaderConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("change, option, saved, mine", [
    (dict(batch_size=25), "batch_size", "20", "25"),
    (dict(fanouts=[3, 3]), "fanouts", "[3, 2]", "[3, 3]"),
    (dict(split="val"), "seeds", "n=150", "n=75"),
    (dict(split=np.arange(0, N, 2)[::-1].copy()), "seeds", "crc32=", "crc32="),
    (dict(shuffle=False), "shuffle", "True", "False"),
    (dict(drop_last=True), "drop_last", "False", "True"),
    (dict(replace=True), "replace", "False", "True"),
    (dict(seed=2), "seed", "1", "2"),
])
def test_state_of_another_neighbor_loader_is_refused(store, change, option, saved, mine):
    state = neighbor_state(store)
    args = dict(fanouts=[3, 2], batch_size=20, split="train", seed=1)
    args.update(change)
    loader = NeighborLoader(store, args.pop("fanouts"), args.pop("batch_size"), args.pop("split"),
                            **args)
    with pytest.raises(GStoreError) as err:
        loader.load_state_dict(state)
    text = str(err.value)
    assert f"{option}: saved " in text and saved in text and mine in text and "\n" not in text, text
    assert loader.state_dict()["batches_consumed"] == 0  # nothing was loaded


def test_state_names_every_differing_option(store):
    state = neighbor_state(store)
    with pytest.raises(OptionError) as err:
        NeighborLoader(store, [5], 30, "train", seed=1, shuffle=False).load_state_dict(state)
    for option in ("batch_size:", "fanouts:", "shuffle:", "num_batches:"):
        assert option in str(err.value)


def test_state_of_another_store_is_refused(store, tmp_path):
    src, dst = random_graph(N, 2100, seed=5)
    other = gstore.open(build_store(tmp_path / "o", src, dst, N, splits={"train": np.arange(0, N, 2)}))
    with pytest.raises(OptionError, match="store: saved"):
        NeighborLoader(other, [3, 2], 20, "train", seed=1, features=False).load_state_dict(
            neighbor_state(store))


def test_state_without_config_or_garbage_is_refused(store):
    loader = NeighborLoader(store, [3, 2], 20, "train", seed=1)
    old = {"epoch": 0, "batches_consumed": 1, "seed": 1, "num_batches": len(loader)}  # earlier format
    with pytest.raises(OptionError, match="no config"):
        loader.load_state_dict(old)
    with pytest.raises(OptionError, match="not a loader state"):
        loader.load_state_dict({"seed": 1})
    bad = neighbor_state(store)
    bad["config"]["colour"] = "red"
    with pytest.raises(OptionError, match="unknown keys"):
        loader.load_state_dict(bad)
    assert LoaderState.from_json(neighbor_state(store)).config.kind == "neighbor"


def cluster_state(store, parts, **kw):
    args = dict(num_parts=10, clusters_per_batch=3, seed=4)
    args.update(kw)
    loader = ClusterLoader(store, parts, **args)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    it.close()
    return state


@pytest.mark.parametrize("change, option", [
    (dict(clusters_per_batch=2), "clusters_per_batch"),
    (dict(parts="other"), "clusters"),
    (dict(split="val"), "seeds"),
    (dict(split=None), "seeds"),
    (dict(normalize=False), "normalize"),
    (dict(self_loops=False), "self_loops"),
    (dict(shuffle=False), "shuffle"),
    (dict(seed=5), "seed"),
])
def test_state_of_another_cluster_loader_is_refused(store, change, option):
    parts = (np.arange(N) % 10).astype(np.int32)
    state = cluster_state(store, parts)
    args = dict(num_parts=10, clusters_per_batch=3, seed=4)
    args.update(change)
    p = parts
    if args.get("parts") == "other":
        args.pop("parts")
        p = ((np.arange(N) * 7) % 10).astype(np.int32)
    loader = ClusterLoader(store, p, **args)
    with pytest.raises(OptionError, match=f"{option}: saved"):
        loader.load_state_dict(state)
    same = ClusterLoader(store, parts, num_parts=10, clusters_per_batch=3, seed=4)
    same.load_state_dict(state)
    assert next(iter(same)).index == 1


@pytest.mark.parametrize("kw, words", [
    (dict(batch_size=2.5), "batch_size must be an integer"),
    (dict(batch_size=True), "batch_size must be an integer"),
    (dict(prefetch=1.5), "prefetch must be an integer"),
    (dict(num_workers=10**6), r"num_workers must be in \[1, 256\]"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(pinned_bytes=0), "pinned_bytes must be >= 1"),
])
def test_integer_options_are_checked(store, kw, words):
    args = dict(batch_size=16)
    args.update(kw)
    with pytest.raises(OptionError, match=words):
        NeighborLoader(store, [2], args.pop("batch_size"), **args)


@pytest.mark.parametrize("kw, words", [
    (dict(clusters_per_batch=2.5), "clusters_per_batch must be an integer"),
    (dict(num_parts=10.5), "num_parts must be an integer"),
])
def test_cluster_integer_options_are_checked(store, kw, words):
    args = dict(num_parts=10, clusters_per_batch=3)
    args.update(kw)
    with pytest.raises(OptionError, match=words):
        ClusterLoader(store, (np.arange(N) % 10).astype(np.int32), **args)
