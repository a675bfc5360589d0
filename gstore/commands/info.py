"""`gstore info STORE [--json]`: what is in a store (counts, degrees, labels, splits, partitions)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import click

from gstore.cli_options import emit_json, examples, json_option, verbose_option
from gstore.memory import format_bytes

_PARTITION_KEYS = ("num_parts", "method", "edge_cut", "balance", "contiguous", "seconds", "peak_rss")
_PARTITION_HIDDEN = ("arrays", "created")
_DEFAULT_PARTITION = "default"          # manifest.partitions["default"] = {"key": K} (partition_info.py)


def _fmt_scalar(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def natural_key(text: str) -> list:
    """Sort key that orders digit runs by value: c2 < c10, k8 < k64.

    re.split with a capturing group puts text at even and digit runs at odd positions, so two keys
    always compare str with str and int with int.
    """
    return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", str(text)))]


def natural_order(counts: dict) -> dict:
    """`counts` with its keys in natural order; "unknown" (unlabelled nodes) last."""
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] == "unknown", natural_key(kv[0]))))


def _flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts -> dotted keys; None values and empty containers dropped."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif v is None or (isinstance(v, (list, tuple, str)) and len(v) == 0):
            continue
        else:
            out[key] = v
    return out


def _readable(key: str, v) -> str:
    """One build value as a person reads it: sizes humanised, seconds with a unit, lists joined."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    if isinstance(v, (int, float)) and any(w in name for w in ("budget", "rss", "bytes")):
        return format_bytes(v)
    if isinstance(v, (int, float)) and name.endswith("seconds"):
        return f"{v:.2f} s"
    return _fmt_scalar(v)


def _record_text(d: dict) -> str:
    """One record of a list (a reader's decision note: path, line, message) as a person reads it."""
    if "message" in d:
        where = ":".join(str(d[k]) for k in ("path", "line") if d.get(k) is not None)
        return f"{where}: {d['message']}" if where else str(d["message"])
    return ", ".join(f"{k} {_readable(k, v)}" for k, v in d.items() if v is not None)


def _key_value_lines(title: str, items: dict) -> list[str]:
    """'title  key: value' lines, one item per line, under a hanging indent; a list of records
    (the build's decisions) gets one line per record."""
    pairs = []
    for k, v in items.items():
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v):
            pairs += [(k, _record_text(x)) for x in v]
        else:
            pairs.append((k, _readable(k, v)))
    return [f"{title if i == 0 else '':<11} {k}: {text}" for i, (k, text) in enumerate(pairs)]


def _wrapped(title: str, items: dict, width: int = 100) -> list[str]:
    """'title  k=v, k=v' lines wrapped at `width` with a hanging indent."""
    lines, cur = [], ""
    for k, v in items.items():
        part = f"{k}={_fmt_scalar(v)}"
        if cur and len(cur) + len(part) + 2 > width - 12:
            lines.append(cur + ",")
            cur = part
        else:
            cur = f"{cur}, {part}" if cur else part
    if cur:
        lines.append(cur)
    return [f"{title:<11} {line}" if i == 0 else f"{'':<11} {line}" for i, line in enumerate(lines)]


def render_text(s) -> list[str]:
    """Human-readable lines for a StoreSummary."""
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(s.created)) if s.created else "?"
    lines = [f"store       {s.path}  (format v{s.format_version}, gstore {s.gstore_version or '?'}, "
             f"created {created})",
             f"nodes       {s.num_nodes:,}  ({s.id_type} ids)"]
    if s.directed:
        lines.append(f"edges       {s.num_edges:,}  directed ({s.index_dtype} indices"
                     f"{', weighted' if s.has_weights else ''})")
    else:
        lines.append(f"edges       {s.num_edges:,} stored entries, undirected (~{s.num_edges // 2:,} "
                     f"edges, both directions; {s.index_dtype} indices"
                     f"{', weighted' if s.has_weights else ''})")
    if s.degree is not None:
        d = s.degree
        kind = "in-degree" if s.directed else "degree"
        lines.append(f"{kind:<11} min {d.min:,} / median {d.median:g} / mean {d.mean:.2f} / max {d.max:,}"
                     f";  isolated nodes {d.isolated:,}")
    if s.feature_shape:
        lines.append(f"features    {' x '.join(f'{x:,}' for x in s.feature_shape)} {s.feature_dtype}")
    else:
        lines.append("features    none")
    if s.label_counts:
        shown = list(natural_order(s.label_counts).items())
        text = ", ".join(f"{k} {v:,}" for k, v in shown[:20])
        if len(shown) > 20:
            text += f", ... (+{len(shown) - 20} more)"
        lines.append(f"labels      {s.num_classes} classes: {text}")
    else:
        lines.append("labels      none")
    if s.split_sizes:
        lines.append("splits      " + ", ".join(f"{k} {v:,}" for k, v in s.split_sizes.items()))
    default = (s.partitions.get(_DEFAULT_PARTITION) or {}).get("key")
    for name, p in sorted(s.partitions.items(), key=lambda kv: natural_key(kv[0])):
        if name == _DEFAULT_PARTITION or not isinstance(p, dict):
            continue
        keys = {k: p[k] for k in _PARTITION_KEYS if k in p}
        if isinstance(keys.get("peak_rss"), int):
            keys["peak_rss"] = format_bytes(keys["peak_rss"])
        rest = {k: v for k, v in p.items() if k not in keys and k not in _PARTITION_HIDDEN
                and not isinstance(v, (dict, list, tuple))}
        mark = " (default)" if default is not None and str(default) == str(name) else ""
        lines.extend(_wrapped("partition", {"K": name + mark, **keys, **rest}))
    for key, d in sorted(s.derived.items(), key=lambda kv: natural_key(kv[0])):
        params = {k: v for k, v in (d.get("params") or {}).items() if not isinstance(v, (dict, list))}
        lines.extend(_wrapped("derived", {"name": key, "kind": d.get("kind"),
                                          "arrays": "+".join(d.get("arrays", {})), **params}))
    disk = ", ".join(f"{k} {format_bytes(v)}" for k, v in
                     sorted(s.array_bytes.items(), key=lambda kv: -kv[1]))
    lines.append(f"disk        {format_bytes(s.bytes_on_disk)}  ({disk})")
    if s.build:
        lines.extend(_key_value_lines("build", _flatten(s.build)))
    return lines


@click.command("info", short_help="What is in a store.", epilog=examples("gstore info g.gstore", "gstore info g.gstore --json"))
@click.argument("store", type=click.Path(path_type=Path))
@json_option
@verbose_option
def command(store: Path, as_json: bool) -> None:
    """Describe the store at STORE: nodes, edges, degrees, features, labels, splits, partitions and
    how it was built."""
    import gstore
    from gstore.pipeline.store_stats import describe

    summary = describe(gstore.open(store))
    if as_json:
        out = summary.to_json()
        out["label_counts"] = natural_order(out["label_counts"])
        emit_json(out)
    else:
        click.echo("\n".join(render_text(summary)))
