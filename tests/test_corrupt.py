"""Damaged stores are detected, named and never crash a kernel (issue 8, item 3).

The store is big enough (indptr 160 KB, indices 480 KB, features 1.3 MB) that the middle of each array
lies outside the first/last 64 KiB the cheap open-time checksum covers: before block checksums,
every damage below went unnoticed (or crashed the sampler).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gstore
from gstore.cli import main
from gstore.errors import StoreError
from gstore.shard_array import shard_path
from store_factory import build_store, random_graph

N, E_IN = 20_000, 60_000


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "s"
    src, dst = random_graph(N, E_IN, seed=3)
    rng = np.random.default_rng(3)
    build_store(path, src, dst, N, features=rng.standard_normal((N, 16)).astype(np.float32),
                labels=rng.integers(0, 4, N), splits={"train": np.arange(0, N, 10)})
    return path


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    out = tmp_path / "s"
    shutil.copytree(pristine, out)
    return out


def _flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))   # lowest bit: values stay in range


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _data_file(store: Path, name: str, ndim: int = 1) -> Path:
    return shard_path(store / name, ndim)


def _middle(store: Path, name: str) -> int:
    rec = gstore.open(store).manifest.arrays[name]
    return rec.logical_bytes // 2 // 8 * 8


@pytest.mark.parametrize("name,ndim", [("indices", 1), ("features", 2)])
def test_one_flipped_bit_in_the_middle_is_found_with_its_byte_range(store, name, ndim):
    offset = _middle(store, name)
    assert offset > 1 << 17                      # outside what the cheap checksum reads
    _flip_bit(_data_file(store, name, ndim), offset)
    gstore.open(store)                           # the cheap open does not read the middle
    with pytest.raises(StoreError, match=f"{name}: block 0 fails its crc32c"):
        gstore.open(store, verify=True)
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1, r.output
    bad = [line for line in r.output.splitlines() if "fails" in line]
    assert len(bad) == 1 and bad[0].startswith(f"{name}: block 0 fails its crc32c")
    assert "bytes [0, 4194304)" in bad[0]
    r = CliRunner().invoke(main, ["verify", str(store), "--json"])
    assert r.exit_code == 1
    report = json.loads(r.output)
    assert report["ok"] is False and len(report["problems"]) == 1
    p = report["problems"][0]
    assert p["array"] == name and p["kind"] == "block" and p["start"] <= offset < p["stop"]


def test_clean_store_verifies(store):
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1].startswith(f"{store}: OK; 6 arrays")
    report = json.loads(CliRunner().invoke(main, ["verify", str(store), "--json"]).output)
    assert report["ok"] and report["problems"] == [] and report["format_version"] == 2
    assert gstore.open(store, verify=True).num_nodes == N


def _break_indptr(store: Path) -> int:
    """8 bytes in the middle of indptr become 2^33: row v-1 then spans far past the end of indices."""
    v = N // 2
    _overwrite(_data_file(store, "indptr"), 8 * v, (1 << 33).to_bytes(8, "little"))
    return v


def test_corrupt_indptr_gives_one_line_errors_not_tracebacks(store):
    v = _break_indptr(store)
    r = CliRunner().invoke(main, ["info", str(store)])
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "corrupt array indptr" in lines[0] and f"indptr[{v + 1}]" in lines[0]
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1
    assert any(line.startswith("indptr: block 0 fails its crc32c") for line in r.output.splitlines())
    assert any(f"indptr[{v + 1}] = " in line for line in r.output.splitlines())
    g = gstore.open(store)
    with pytest.raises(StoreError, match=r"corrupt array indptr: indptr\[10001\]"):
        g.csr()
    with pytest.raises(StoreError, match="row 9999 spans"):
        g.neighbors(v - 1)


_SAMPLE_SCRIPT = """
import sys, numpy as np, gstore
from gstore.pipeline.sampling.neighbor import NeighborSampler
g = gstore.open(sys.argv[1])
try:
    s = NeighborSampler.from_store(g, [15, 10])
except gstore.StoreError as exc:
    print("StoreError:", exc)
    sys.exit(3)
for i in range(5):
    s.sample(np.array([int(sys.argv[2])]), i)
print("sampled")
"""


def test_sampler_on_corrupt_indptr_raises_instead_of_segfaulting(store):
    v = _break_indptr(store)
    # a subprocess: before the structural check this was a segfault (exit -11 / 139)
    proc = subprocess.run([sys.executable, "-c", _SAMPLE_SCRIPT, str(store), str(v - 1)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "corrupt array indptr" in proc.stdout


def test_corrupt_indices_value_is_named_before_kernels(store):
    off = _middle(store, "indices") // 4 * 4
    _overwrite(_data_file(store, "indices"), off, (N + 7).to_bytes(4, "little"))
    g = gstore.open(store)
    with pytest.raises(StoreError, match=rf"indices\[{off // 4}\] = {N + 7} is outside \[0, {N}\)"):
        g.csr()
    from gstore.pipeline.sampling.neighbor import NeighborSampler

    with pytest.raises(StoreError, match="corrupt array indices"):
        NeighborSampler.from_store(g, [2])


def test_truncated_and_index_damage_are_reported_not_raised(store):
    f = _data_file(store, "features", 2)
    rec = gstore.open(store).manifest.arrays["features"]
    _flip_bit(f, rec.data_bytes + 3)             # inside the shard index
    r = CliRunner().invoke(main, ["verify", str(store), "--json"])
    kinds = {(p["array"], p["kind"]) for p in json.loads(r.output)["problems"]}
    assert ("features", "index") in kinds and r.exit_code == 1
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 3])
    r = CliRunner().invoke(main, ["verify", str(store), "--json"])
    problems = json.loads(r.output)["problems"]
    assert r.exit_code == 1 and {p["kind"] for p in problems if p["array"] == "features"} >= {"size"}
    assert r.exception is None or isinstance(r.exception, SystemExit)
    _data_file(store, "labels").unlink()
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1 and "labels: data file labels/c/0 is missing" in r.output


def test_rebuilt_store_is_checked_again_in_the_same_process(store):
    g = gstore.open(store)
    g.csr()                                      # cached: clean
    v = _break_indptr(store)
    with pytest.raises(StoreError, match=rf"indptr\[{v + 1}\]"):
        gstore.open(store).csr()                 # the file changed: the cache does not hide it


def _as_format_v1(store: Path) -> None:
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    m = meta["attributes"]["gstore"]
    m["format_version"] = 1
    for rec in m["arrays"].values():
        rec.pop("block_bytes")
        rec.pop("block_crc32c")
    meta_path.write_text(json.dumps(meta))


def test_format_v1_store_opens_with_a_notice_and_keeps_the_structural_checks(store, caplog):
    _as_format_v1(store)
    with caplog.at_level("WARNING"):
        g = gstore.open(store)
    assert g.manifest.format_version == 1
    assert any("no block checksums" in rec.message for rec in caplog.records)
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 0, r.output
    assert "notice: format v1 arrays without block checksums" in r.output
    v = _break_indptr(store)
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1 and f"indptr[{v + 1}]" in r.output
    with pytest.raises(StoreError, match="corrupt array indptr"):
        gstore.open(store).csr()


def test_malformed_checksum_list_in_manifest_fails_on_open(store):
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["arrays"]["indices"]["block_crc32c"] = "AAAA"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="malformed block checksum list"):
        gstore.open(store)


def test_damaged_manifest_entries_are_reported_not_raised(store):
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    m = meta["attributes"]["gstore"]
    m["partitions"] = {"4": {"num_parts": "x", "arrays": {}}}
    del m["arrays"]["labels"]["block_crc32c"]
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit)
    assert "manifest: malformed entry" in r.output
    assert "labels: has no block checksums in a format-v2 manifest" in r.output
    r = CliRunner().invoke(main, ["info", str(store)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "malformed entry" in r.output
    m["arrays"]["indptr"]["block_crc32c"] = 5
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1 and "malformed manifest" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("block_bytes", [0, -5, 1, 4094])
def test_bad_block_size_in_manifest_is_a_problem_not_a_traceback(store, block_bytes):
    """block_bytes must be a positive multiple of 8: 0 divided by zero, a negative size made a
    negative buffer, and a size that is not a whole number of elements broke the structural pass."""
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["arrays"]["indices"]["block_bytes"] = block_bytes
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1
    assert f"indices: block size {block_bytes} in the manifest is not a positive multiple of 8" in r.output
    with pytest.raises(StoreError, match="malformed block checksum list"):
        gstore.open(store)


@pytest.mark.parametrize("field,value", [("chunk_rows", 0), ("chunk_rows", -3), ("data_bytes", 7),
                                         ("data_bytes", -8), ("dtype", "banana"), ("shape", []),
                                         ("shape", [-4])])
def test_damaged_array_record_is_one_line_in_every_command(store, field, value):
    """An array record whose fields contradict each other (chunk_rows 0 divided by zero, an
    unknown dtype, an empty shape, data_bytes that no layout gives) is a malformed manifest:
    one line from verify and info alike, never a traceback."""
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["arrays"]["indices"][field] = value
    meta_path.write_text(json.dumps(meta))
    for command in ("verify", "info"):
        r = CliRunner().invoke(main, [command, str(store)])
        assert r.exception is None or isinstance(r.exception, SystemExit), (command, r.exception)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1, (command, r.output)
        assert "malformed manifest" in lines[0] and "indices" in lines[0] and field in lines[0]
    with pytest.raises(StoreError, match="malformed manifest"):
        gstore.open(store)


@pytest.mark.parametrize("name", ["../outside", "/tmp/abs", "splits/../../outside", "", "a//b"])
def test_array_name_leaving_the_store_is_a_malformed_manifest(store, name):
    """Array names become paths under the store (read by open and verify, written by --reorder's
    rebuild): a name that leaves the store, or is not a plain relative path, is refused."""
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    arrays = meta["attributes"]["gstore"]["arrays"]
    arrays[name] = dict(arrays["labels"], name=name)
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "malformed manifest" in lines[0], r.output
    assert "not a relative path inside the store" in lines[0]
    with pytest.raises(StoreError, match="malformed manifest"):
        gstore.open(store)


def test_empty_store_verifies(tmp_path):
    path = build_store(tmp_path / "z", np.zeros(0, int), np.zeros(0, int), 0)
    assert gstore.open(path, verify=True).csr().indptr.tolist() == [0]
    assert CliRunner().invoke(main, ["verify", str(path)]).exit_code == 0


def test_stores_written_by_ingest_partition_and_reorder_verify_clean(tmp_path):
    # ingest copies indices with copy_file_range (finish() reads them back), partition adds arrays,
    # --reorder rewrites the store: each must leave checksums that match the bytes
    rng = np.random.default_rng(5)
    csv = tmp_path / "e.csv"
    csv.write_text("src,dst\n" + "".join(f"{a},{b}\n" for a, b in rng.integers(0, 300, (3000, 2))))
    out = tmp_path / "g"
    r = CliRunner().invoke(main, ["ingest", str(csv), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0
    r = CliRunner().invoke(main, ["partition", str(out), "-k", "4", "--reorder", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["verify", str(out), "--json"])
    report = json.loads(r.output)
    assert r.exit_code == 0 and report["ok"] and report["format_version"] == 2
    assert any(p.startswith("partition/") for p in gstore.open(out).manifest.arrays)


def test_a_file_given_as_the_store_is_named_as_such(tmp_path):
    from click.testing import CliRunner

    from gstore.cli import main

    (tmp_path / "zarr.json").write_text("{}")
    for cmd in ("info", "verify", "sample", "partition"):
        res = CliRunner().invoke(main, [cmd, str(tmp_path / "zarr.json")])
        # click's own path check (exit 2, usage line + error) or gstore's (exit 1, one line)
        assert res.exit_code in (1, 2) and "is a file" in res.output, (cmd, res.output)
        assert "Traceback" not in res.output and "missing zarr.json" not in res.output


_GATHER_SCRIPT = """
import sys, numpy as np, gstore
from gstore.pipeline.features.gather import FeatureSource
g = gstore.open(sys.argv[1])
try:
    src = FeatureSource(g, cache_bytes=int(sys.argv[2]))
    src.gather(np.arange(g.num_nodes - 1000, g.num_nodes, dtype=np.int64))
except gstore.StoreError as exc:
    print("StoreError:", exc)
    sys.exit(3)
print("gathered")
"""


@pytest.mark.parametrize("cache_bytes", [0, 1 << 20])
def test_feature_gather_on_a_short_features_array_raises_instead_of_segfaulting(store, cache_bytes):
    """A manifest whose features record has fewer rows than nodes (hand-edited, or written by a
    bug): FeatureSource (and its hot-row cache) gather rows by node id in a numba kernel, so they
    must check the row count first, not only the samplers' csr()."""
    from gstore.manifest import read_manifest, write_manifest
    from gstore.shard_array import write_array

    m = read_manifest(store)
    shutil.rmtree(store / "features")
    m.arrays["features"] = write_array(store, "features", np.ones((10, 16), np.float32))
    write_manifest(store, m)
    # a subprocess: before the check this read far past the 10-row memory map (exit -11 / 139)
    proc = subprocess.run([sys.executable, "-c", _GATHER_SCRIPT, str(store), str(cache_bytes)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "corrupt array features: has 10 rows" in proc.stdout


def test_partition_naming_an_unrecorded_array_is_reported(store):
    """A partition entry whose parts/perm/... name no array record was passed over by verify
    (reported OK) and by the structural check, which only checked the arrays it found."""
    from gstore.pipeline.partition.partition import partition_store

    partition_store(store, 2)
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["partitions"]["2"]["arrays"]["parts"] = "partition/k2/nope"
    meta_path.write_text(json.dumps(meta))
    r = CliRunner().invoke(main, ["verify", str(store)])
    assert r.exit_code == 1
    assert "partition/k2/nope: is named by the manifest but has no array record" in r.output
    with pytest.raises(StoreError, match="corrupt array partition/k2/nope: is named by the manifest"):
        gstore.open(store).csr()


@pytest.mark.parametrize("entry", ['"x"', '{"key": 5}', '[1]'])
def test_partition_entry_that_is_not_an_object_is_a_malformed_manifest(store, entry):
    """partitions["default"] = "x" raised AttributeError tracebacks in info and sample."""
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"]["partitions"] = {"default": json.loads(entry)}
    meta_path.write_text(json.dumps(meta))
    for args in (["info", str(store)], ["sample", str(store), "--method", "cluster", "-q"],
                 ["verify", str(store)]):
        r = CliRunner().invoke(main, args)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and "malformed manifest" in lines[0], (args, r.output)
        assert "partitions" in lines[0]


@pytest.mark.parametrize("field,value", [("label_names", 5), ("split_sizes", 3), ("created", "x"),
                                         ("build", 3), ("num_nodes", "x"), ("num_edges", -1),
                                         ("directed", "no"), ("num_classes", True)])
def test_mistyped_manifest_field_is_one_line_in_every_command(store, field, value):
    """Top-level manifest fields of the wrong type raised TypeError tracebacks in info (and
    num_nodes "x" read as "corrupt array manifest")."""
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gstore"][field] = value
    meta_path.write_text(json.dumps(meta))
    for command in ("info", "verify"):
        r = CliRunner().invoke(main, [command, str(store)])
        assert r.exception is None or isinstance(r.exception, SystemExit), (command, r.exception)
        lines = r.output.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1, (command, r.output)
        assert f"malformed manifest: {field} must be" in lines[0], (command, r.output)


@pytest.mark.parametrize("text", ["[1, 2]", '{"zarr_format": 3, "attributes": {"gstore": 5}}',
                                  '{"zarr_format": 3, "attributes": 5}'])
def test_manifest_that_is_not_an_object_is_one_line(store, text):
    (store / "zarr.json").write_text(text)
    r = CliRunner().invoke(main, ["info", str(store)])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
