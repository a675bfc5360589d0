"""Planted-partition (stochastic block model) graphs with labels, splits and class-signal features.

    g = generate_sbm("out/", num_nodes=100_000, num_communities=10, avg_degree=20, feature_dim=64)

Writes, streamed block by block in flat memory:
  out/edges.csv       "source,target", num_nodes * avg_degree / 2 lines; read it undirected
                      (`gstore ingest --undirected`) for an average degree of avg_degree.
  out/nodes.csv       "id,label,split": label names c0..c{K-1}, split train/val/test drawn per node
                      with probabilities train_frac / val_frac / rest.
  out/features.npy    float32 or float16 (num_nodes, feature_dim), rows in nodes.csv order.
  out/generate.json   the parameters and counts (written last: its presence means complete).

Structure: node row r sits at position permute(r) of [0, N), and the K communities are near-equal
contiguous position ranges, so communities are random node sets found in O(1) memory. Each edge
picks its first endpoint's community by size, keeps the same community for the second endpoint with
probability 1 - mixing, else picks one of the other K-1 uniformly. So a fraction ~ (1 - mixing) of
edges is intra-community (p_in / p_out = (1 - mixing) * (K - 1) / mixing). `degree_skew` > 1 picks
members with density ~ offset^(1/skew - 1), giving heavy-tailed (degree-corrected) degrees.

Features: row = mean[label] + N(0, 1) noise per entry. The K class means are orthogonal (K <= F) with
norm sqrt(2) * snr, so any two means are 2 * snr noise standard deviations apart: nearest-class-mean
confuses a given pair of classes with probability Phi(-snr) (snr 2.5 -> 0.6 %). For K > F the means
are random directions of the same norm (separation varies).

Node ids are NOT dense by default: row r gets id permute'(r), a seeded injection into [0, 8N), so
ids are sparse and unordered and ingest's id remapping is exercised; `dense_ids=True` writes id = r.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from gstore.errors import OptionError
from gstore.progress import NULL_PROGRESS, Progress
from gstore.pipeline.generate.generate_kernels import class_features, permute_many, sbm_edges, sbm_nodes
from gstore.pipeline.generate.generated import GeneratedGraph
from gstore.pipeline.generate.rmat import DEFAULT_BLOCK_EDGES
from gstore.pipeline.generate.seeding import derive_key, permutation_params
from gstore.pipeline.generate.writers import (NodesCsvWriter, NpyRowsWriter, check_output_files,
                                              check_edge_dtype, edge_format_for, open_edge_writer)
from gstore.shard_array import write_json_atomic

log = logging.getLogger(__name__)

ID_SPREAD = 8                 # sparse ids live in [0, ID_SPREAD * N)
FEATURE_BLOCK_BYTES = 32 << 20
FEATURE_DTYPES = ("float32", "float16")
META_FILE = "generate.json"


def class_means(num_classes: int, feature_dim: int, snr: float, seed: int) -> np.ndarray:
    """float64 (K, F) class means: orthogonal rows of norm sqrt(2)*snr when K <= F."""
    rng = np.random.default_rng(int(derive_key(seed, "sbm-means")))
    g = rng.standard_normal((feature_dim, num_classes))
    if num_classes <= feature_dim:
        q, r = np.linalg.qr(g)
        dirs = (q * np.sign(np.diag(r))).T          # sign fix: QR is unique up to column signs
    else:
        dirs = (g / np.linalg.norm(g, axis=0)).T
    return np.ascontiguousarray(dirs * (np.sqrt(2.0) * snr))


def _check_sbm(num_nodes: int, k: int, avg_degree: float, mixing: float, degree_skew: float,
               feature_dim: int, snr: float, train_frac: float, val_frac: float) -> None:
    if num_nodes < 2:
        raise OptionError(f"--nodes must be >= 2, got {num_nodes}")
    if not 1 <= k <= num_nodes:
        raise OptionError(f"--communities must be in 1..{num_nodes}, got {k}")
    if avg_degree <= 0:
        raise OptionError(f"--avg-degree must be > 0, got {avg_degree}")
    if not 0.0 <= mixing <= 1.0:
        raise OptionError(f"--mixing must be in [0, 1], got {mixing}")
    if degree_skew < 1.0:
        raise OptionError(f"--degree-skew must be >= 1 (1 = uniform), got {degree_skew}")
    if feature_dim < 0:
        raise OptionError(f"--feature-dim must be >= 0, got {feature_dim}")
    if snr < 0:
        raise OptionError(f"--snr must be >= 0, got {snr}")
    if train_frac < 0 or val_frac < 0 or train_frac + val_frac > 1:
        raise OptionError(f"split fractions train={train_frac} val={val_frac} must be >= 0, sum <= 1")


def sbm_node_block(start: int, count: int, *, num_nodes: int, num_communities: int, seed: int = 0,
                   train_frac: float = 0.6, val_frac: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int64) and split codes (int8: 0 train, 1 val, 2 test) of rows start .. start+count-1."""
    labels = np.empty(count, dtype=np.int64)
    splits = np.empty(count, dtype=np.int8)
    pk = permutation_params(num_nodes, derive_key(seed, "sbm-positions"))
    sbm_nodes(np.int64(start), np.int64(num_nodes), np.int64(num_communities), pk,
              derive_key(seed, "sbm-splits"), float(train_frac), float(val_frac), labels, splits)
    return labels, splits


def generate_sbm(out_dir: str | Path, num_nodes: int, num_communities: int, avg_degree: float, *,
                 mixing: float = 0.1, degree_skew: float = 1.0, feature_dim: int = 64,
                 snr: float = 2.5, train_frac: float = 0.6, val_frac: float = 0.2,
                 dense_ids: bool = False, seed: int = 0, edge_format: str = "csv",
                 edge_dtype: str = "int64", feature_dtype: str = "float32",
                 block_edges: int = DEFAULT_BLOCK_EDGES, block_rows: int | None = None,
                 force: bool = False, progress: Progress = NULL_PROGRESS) -> GeneratedGraph:
    """Write an SBM graph (edges, nodes.csv, features.npy, generate.json) into `out_dir`.

    edge_dtype: int64, int32 or auto (int32 when every id fits) for npy / parquet edges;
    feature_dtype: float32 or float16 (computed in float32, rounded once when written).
    Other files in `out_dir` are never touched; those four are replaced only with `force`."""
    _check_sbm(num_nodes, num_communities, avg_degree, mixing, degree_skew, feature_dim, snr,
               train_frac, val_frac)
    if feature_dtype not in FEATURE_DTYPES:
        raise OptionError(f"unknown --feature-dtype {feature_dtype!r}",
                          hint=f"use one of {', '.join(FEATURE_DTYPES)}")
    fmt = edge_format_for(f"edges.{edge_format}", edge_format)
    ids_dtype = check_edge_dtype(fmt, edge_dtype, (num_nodes if dense_ids else ID_SPREAD * num_nodes) - 1)
    out = Path(out_dir)
    if os.path.lexists(out) and not out.is_dir():
        raise OptionError("output exists and is not a directory", path=out,
                          hint="give a directory for -o (it is created if missing)")
    check_output_files([out / f"edges.{fmt}", out / "nodes.csv", out / META_FILE]
                       + ([out / "features.npy"] if feature_dim > 0 else []), force)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)       # a re-run is incomplete until it finishes
    n, k = int(num_nodes), int(num_communities)
    num_edges = max(1, int(round(n * avg_degree / 2)))
    block_edges = max(1, min(block_edges, num_edges))
    if block_rows is None:
        block_rows = max(1024, FEATURE_BLOCK_BYTES // max(1, 4 * feature_dim))
    block_rows = max(1, min(block_rows, n))
    pk_pos = permutation_params(n, derive_key(seed, "sbm-positions"))
    id_range = n if dense_ids else ID_SPREAD * n
    pk_ids = permutation_params(id_range, derive_key(seed, "sbm-ids"))
    t0 = time.perf_counter()

    edges_path = out / f"edges.{fmt}"
    src = np.empty(block_edges, dtype=np.int64)
    dst = np.empty(block_edges, dtype=np.int64)
    # permute_many is a parallel kernel: its input and output must not overlap (numba_config.py)
    dense = np.empty(block_edges, dtype=np.int64) if not dense_ids else None
    ekey = derive_key(seed, "sbm-edges")
    writer = open_edge_writer(edges_path, fmt, block_edges=block_edges, num_edges=num_edges,
                              max_id=id_range - 1, dtype=ids_dtype)
    try:
        with progress.phase("sbm edges", total=num_edges, unit="edge", unit_scale=True) as bar:
            for start in range(0, num_edges, block_edges):
                m = min(block_edges, num_edges - start)
                s, d = src[:m], dst[:m]
                sbm_edges(np.int64(start), np.int64(n), np.int64(k), float(mixing), float(degree_skew),
                          ekey, pk_pos, s, d)
                if not dense_ids:
                    for ids in (s, d):
                        np.copyto(dense[:m], ids)
                        permute_many(dense[:m], pk_ids, False, ids)
                writer.write(s, d)
                bar.advance(m)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    del src, dst, dense

    nodes_path = out / "nodes.csv"
    features_path = out / "features.npy" if feature_dim > 0 else None
    means = class_means(k, feature_dim, snr, seed) if feature_dim > 0 else None
    nodes_w = NodesCsvWriter(nodes_path, block_rows=block_rows, max_id=id_range - 1, max_label=k - 1)
    feat_w = NpyRowsWriter(features_path, (n, feature_dim), feature_dtype, block_rows=block_rows) \
        if features_path else None
    rows = np.empty(block_rows, dtype=np.int64)
    labels = np.empty(block_rows, dtype=np.int64)
    splits = np.empty(block_rows, dtype=np.int8)
    feats = np.empty((block_rows, max(feature_dim, 1)), dtype=np.float32)[:, :feature_dim]
    split_key, feat_key = derive_key(seed, "sbm-splits"), derive_key(seed, "sbm-features")
    try:
        with progress.phase("sbm nodes", total=n, unit="node", unit_scale=True) as bar:
            for start in range(0, n, block_rows):
                m = min(block_rows, n - start)
                sbm_nodes(np.int64(start), np.int64(n), np.int64(k), pk_pos, split_key,
                          float(train_frac), float(val_frac), labels[:m], splits[:m])
                if dense_ids:
                    rows[:m] = np.arange(start, start + m)
                else:
                    positions = np.arange(start, start + m, dtype=np.int64)
                    permute_many(positions, pk_ids, False, rows[:m])
                nodes_w.write(rows[:m], labels[:m], splits[:m])
                if feat_w is not None:
                    class_features(np.int64(start), labels[:m], means, 1.0, feat_key, feats[:m])
                    feat_w.write(feats[:m])
                bar.advance(m)
        nodes_w.finish()
        if feat_w is not None:
            feat_w.finish()
    except BaseException:
        nodes_w.abort()
        if feat_w is not None:
            feat_w.abort()
        raise

    seconds = time.perf_counter() - t0
    params = {"num_communities": k, "avg_degree": avg_degree, "mixing": mixing,
              "degree_skew": degree_skew, "feature_dim": feature_dim, "snr": snr,
              "train_frac": train_frac, "val_frac": val_frac, "edge_format": fmt,
              "edge_dtype": str(ids_dtype), "feature_dtype": feature_dtype}
    total = sum(p.stat().st_size for p in (edges_path, nodes_path, features_path) if p is not None)
    g = GeneratedGraph(kind="sbm", edges_path=edges_path, edge_format=fmt, num_nodes=n,
                       num_edges=num_edges, seed=seed, params=params, nodes_path=nodes_path,
                       features_path=features_path, num_classes=k, dense_ids=dense_ids,
                       id_range=id_range, bytes_written=total, seconds=seconds)
    write_json_atomic(out / META_FILE, g.to_json())
    log.info("wrote SBM graph (%d nodes, %d edges) to %s in %.1f s", n, num_edges, out, seconds)
    return g
