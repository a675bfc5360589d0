"""The full integrity check of a store (`gstore verify STORE`, `gstore.open(path, verify=True)`).

Every byte of every array file is read once, sequentially, in 4 MiB blocks; each block's CRC32C is
compared with the one recorded at write time (gstore/block_crc.py), the shard index with its own
crc32c and expected offsets, and the same pass feeds the structural rules of gstore/store_invariants.py
(so the CSR is checked without a second read). Every bad block is reported with its array, file and
byte range; nothing stops at the first problem.

Format-v1 stores carry no block checksums: their arrays get the cheap checksum (shard index and the
first/last 64 KiB), the size check and the structural rules, and the report says so in a notice.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gstore.block_crc import BLOCK_BYTES, crc32c, decode_crcs, read_blocks, valid_block_bytes
from gstore.manifest import StoreManifest, read_manifest
from gstore.shard_array import ZARR_JSON, ArrayRecord, array_metadata, checksum_of_ends, shard_path
from gstore.store_invariants import UNRECORDED, RuleChecker, structural_rules


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one array. start/stop: the bad byte range of `file` (block problems);
    position: the first bad element (structure problems)."""

    array: str
    kind: str                       # "missing" | "metadata" | "size" | "index" | "block" | "structure"
    message: str
    file: str | None = None
    start: int | None = None
    stop: int | None = None
    position: int | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        where = f" ({self.file} bytes [{self.start}, {self.stop}))" if self.start is not None else ""
        return f"{self.array}: {self.message}{where}"


@dataclass
class VerifyReport:
    """The result of `verify_store`: ok when `problems` is empty."""

    path: str
    format_version: int
    arrays: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"path": self.path, "ok": self.ok, "format_version": self.format_version,
                "arrays": self.arrays, "bytes_checked": self.bytes_checked,
                "seconds": round(self.seconds, 3),
                "problems": [p.to_json() for p in self.problems], "notices": list(self.notices)}

    def lines(self) -> list[str]:
        out = [p.line() for p in self.problems] + [f"notice: {n}" for n in self.notices]
        rate = self.bytes_checked / self.seconds / 1e9 if self.seconds > 0 else 0.0
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        out.append(f"{self.path}: {verdict}; {self.arrays} arrays, {self.bytes_checked:,} bytes checked "
                   f"in {self.seconds:.2f} s ({rate:.2f} GB/s)")
        return out


def verify_store(path: str | Path, manifest: StoreManifest | None = None) -> VerifyReport:
    """Check every byte and every structural rule of the store at `path`."""
    root = Path(path)
    manifest = manifest if manifest is not None else read_manifest(root)
    report = VerifyReport(path=str(root), format_version=int(manifest.format_version))
    try:
        rules = {r.array: r for r in structural_rules(manifest)}
    except (KeyError, TypeError, ValueError) as exc:    # a hand-edited or damaged manifest
        rules = {}
        report.problems.append(Problem("manifest", "structure", f"malformed entry ({exc})"))
    for name in ("indptr", "indices"):
        if name not in manifest.arrays:
            report.problems.append(Problem(name, "missing", "is missing from the manifest"))
    for name in rules:          # e.g. a partition entry naming an array with no record
        if name not in manifest.arrays and name not in ("indptr", "indices"):
            report.problems.append(Problem(name, "missing", UNRECORDED))
    t0 = time.perf_counter()
    unchecked = []
    for rec in manifest.arrays.values():
        report.arrays += 1
        checker = RuleChecker(rules[rec.name], rec) if rec.name in rules else None
        report.bytes_checked += _verify_array(root, rec, checker, report.problems)
        if rec.block_crc32c is None and manifest.format_version >= 2:
            report.problems.append(Problem(rec.name, "metadata", "has no block checksums in a format-v2 "
                                           "manifest (the manifest was edited or damaged)"))
        elif rec.block_crc32c is None:
            unchecked.append(rec.name)
        if checker is not None and (found := checker.result()) is not None:
            report.problems.append(Problem(rec.name, "structure", found.message, position=found.position))
    _check_groups(root, manifest, report.problems)
    report.seconds = time.perf_counter() - t0
    if unchecked:
        report.notices.append(f"format v{manifest.format_version} arrays without block checksums (only "
                              f"sizes, ends and structure checked): {', '.join(unchecked)}; "
                              f"re-ingest to checksum every byte")
    return report


def _check_groups(root: Path, manifest: StoreManifest, problems: list[Problem]) -> None:
    """Every group between the root and an array (splits/, partition/k4/) needs its zarr.json:
    zarr-python opens the store through them, though gstore itself never reads them."""
    groups = sorted({str(parent) for name in manifest.arrays for parent in Path(name).parents
                     if str(parent) not in ("", ".")})
    for group in groups:
        meta_path = root / group / ZARR_JSON
        rel = str(meta_path.relative_to(root))
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            problems.append(Problem(group, "missing", f"group metadata {rel} is missing"))
            continue
        except (OSError, ValueError) as exc:
            problems.append(Problem(group, "metadata", f"group metadata {rel} is unreadable: {exc}"))
            continue
        if not (isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "group"):
            problems.append(Problem(group, "metadata", f"group metadata {rel} is not a zarr v3 group"))


def _verify_array(root: Path, rec: ArrayRecord, checker: RuleChecker | None,
                  problems: list[Problem]) -> int:
    """Check one array, appending to `problems`; returns the bytes read."""
    array_dir = root / rec.name
    meta_path = array_dir / ZARR_JSON
    try:
        meta = json.loads(meta_path.read_text())
        if meta != array_metadata(rec.shape, rec.dtype, rec.chunk_rows):
            problems.append(Problem(rec.name, "metadata", f"{meta_path.relative_to(root)} does not "
                                    "match the manifest's shape, dtype or chunks"))
    except FileNotFoundError:
        problems.append(Problem(rec.name, "missing", f"{meta_path.relative_to(root)} is missing"))
    except (OSError, ValueError) as exc:
        problems.append(Problem(rec.name, "metadata", f"{meta_path.relative_to(root)} is unreadable: {exc}"))
    if not rec.n_chunks:
        return 0
    path = shard_path(array_dir, len(rec.shape))
    rel = str(path.relative_to(root))
    expected_size = rec.data_bytes + rec.index_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        problems.append(Problem(rec.name, "missing", f"data file {rel} is missing or unreadable ({exc.strerror})"))
        return 0
    if size != expected_size:
        problems.append(Problem(rec.name, "size", f"{rel} is {size:,} bytes, expected {expected_size:,} "
                                "(truncated or overwritten)"))
    try:
        nread = _check_data(rec, path, rel, checker, problems)
        nread += _check_index(rec, path, rel, problems)
    except OSError as exc:
        problems.append(Problem(rec.name, "missing", f"{rel} could not be read: {exc.strerror or exc}"))
        return 0
    if rec.block_crc32c is None and size == expected_size and \
            checksum_of_ends(path, rec.data_bytes, rec.n_chunks) != rec.checksum:
        problems.append(Problem(rec.name, "block", "fails its checksum (shard index or first/last 64 KiB)"))
    return nread


def _check_data(rec: ArrayRecord, path: Path, rel: str, checker: RuleChecker | None,
                problems: list[Problem]) -> int:
    crcs = None
    block = BLOCK_BYTES
    if rec.block_crc32c is not None and not valid_block_bytes(rec.block_bytes):
        problems.append(Problem(rec.name, "metadata", f"block size {rec.block_bytes} in the manifest is "
                                "not a positive multiple of 8 (its block checksums cannot be checked)"))
    elif rec.block_crc32c is not None:
        block = rec.block_bytes
        try:
            crcs = decode_crcs(rec.block_crc32c)
        except ValueError as exc:
            problems.append(Problem(rec.name, "metadata", f"block checksum list is malformed: {exc}"))
        if crcs is not None and len(crcs) != -(-rec.data_bytes // block):
            problems.append(Problem(rec.name, "metadata", f"manifest has {len(crcs)} block checksums, "
                                    f"the data needs {-(-rec.data_bytes // block)}"))
            crcs = None
    if crcs is None:
        block = BLOCK_BYTES    # nothing to compare: read in the usual blocks, whatever the manifest says
    feed = checker is not None and checker.needs_data
    if crcs is None and not feed:
        return 0
    logical = rec.logical_bytes
    seen = 0
    for i, (offset, view) in enumerate(read_blocks(path, rec.data_bytes, block)):
        if crcs is not None and crc32c(view) != int(crcs[i]):
            problems.append(Problem(rec.name, "block", f"block {i} fails its crc32c", file=rel,
                                    start=offset, stop=offset + len(view)))
        if feed and offset < logical:
            part = view[:logical - offset]
            # a file truncated mid-element ends in a partial one: the size problem names it
            checker.feed(part[:len(part) - len(part) % checker.dtype.itemsize])
        seen = offset + len(view)
    if seen < rec.data_bytes:
        problems.append(Problem(rec.name, "size", "data region ends early", file=rel, start=seen,
                                stop=rec.data_bytes))
    return seen


def _check_index(rec: ArrayRecord, path: Path, rel: str, problems: list[Problem]) -> int:
    with open(path, "rb") as fh:
        fh.seek(rec.data_bytes)
        raw = fh.read(rec.index_bytes)
    start, stop = rec.data_bytes, rec.data_bytes + rec.index_bytes
    if len(raw) != rec.index_bytes:
        return len(raw)         # the size problem is already reported
    body, stored = raw[:-4], int.from_bytes(raw[-4:], "little")
    index = np.frombuffer(body, dtype="<u8").reshape(-1, 2)
    chunk = rec.data_bytes // rec.n_chunks
    want = np.arange(rec.n_chunks, dtype=np.uint64) * np.uint64(chunk)
    if crc32c(body) != stored:
        problems.append(Problem(rec.name, "index", "shard index fails its crc32c", file=rel,
                                start=start, stop=stop))
    elif not (np.array_equal(index[:, 0], want) and np.all(index[:, 1] == chunk)):
        problems.append(Problem(rec.name, "index", "shard index does not describe contiguous chunks",
                                file=rel, start=start, stop=stop))
    return len(raw)
