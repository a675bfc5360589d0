"""The CLI reads as one tool: conventions checked on every command registered in gstore.cli.COMMANDS.

The structural rules walk the registry (groups included), so a command added later is held to them
without editing this file. The behaviour tests below run the commands that exist today.
"""
from __future__ import annotations

import inspect
import json
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from gstore.cli import COMMANDS, main
from gstore.cli_options import OUTPUT_HELP_PREFIX, _verbose_callback
from gstore.memory import DEFAULT_MEMORY_BUDGET, parse_bytes
from store_factory import build_store, random_graph


def _walk(cmd: click.Command, path: tuple[str, ...]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), path + (name,))


def _registered():
    ctx = click.Context(main)
    out = []
    for name in sorted(COMMANDS):
        cmd = main.get_command(ctx, name)
        assert cmd is not None, f"COMMANDS[{name!r}] does not load a command"
        out.extend(_walk(cmd, (name,)))
    return out


ALL = _registered()                                   # (path, command), groups and leaves
LEAVES = [(p, c) for p, c in ALL if not isinstance(c, click.Group)]
IDS = [" ".join(p) for p, _ in ALL]
LEAF_IDS = [" ".join(p) for p, _ in LEAVES]


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.get_params(click.Context(cmd)) if isinstance(p, click.Option)]


def _shorts(opt: click.Option) -> list[str]:
    return [o for o in opt.opts + opt.secondary_opts if not o.startswith("--")]


def _long(opt: click.Option) -> str:
    """The option's name as users see it: its first long form (later ones are aliases)."""
    return next((o for o in opt.opts if o.startswith("--")), opt.opts[0])


def test_registry_is_walked():
    # guards the walk itself: a registry that silently yields nothing would pass every rule below
    assert {p[0] for p, _ in ALL} == set(COMMANDS)
    assert {p[0] for p, _ in LEAVES} == set(COMMANDS)        # every group has leaves below it


@pytest.mark.parametrize("path,cmd", ALL, ids=IDS)
def test_every_option_has_help_and_shows_its_default(path, cmd):
    for opt in _options(cmd):
        assert opt.help and opt.help.strip(), f"gstore {' '.join(path)} {_long(opt)}: no help text"
        plain_flag = opt.is_flag and not opt.secondary_opts and not opt.default
        if opt.default is None or opt.required or plain_flag or opt.count:
            continue
        assert opt.show_default, f"gstore {' '.join(path)} {_long(opt)}: default {opt.default!r} not shown"


@pytest.mark.parametrize("path,cmd", ALL, ids=IDS)
def test_help_ends_with_examples_that_parse(path, cmd):
    epilog = cmd.epilog or ""
    assert "\b" in epilog, f"gstore {' '.join(path)}: no verbatim (\\b) examples block in the epilog"
    name = " ".join(("gstore",) + path)
    lines = [ln.strip() for ln in epilog.splitlines() if ln.strip().startswith("gstore ")]
    assert lines and all(ln.startswith(name) for ln in lines), (name, lines)
    assert len(lines) <= 3
    help_text = cmd.get_help(click.Context(cmd, info_name=name))
    assert help_text.rstrip().endswith(lines[-1])          # the examples close the help
    for line in lines:
        # each example must name real options: parse it (resilient: no files needed, no callbacks)
        words = shlex.split(line)[1:]
        target = main
        while isinstance(target, click.Group) and words and not words[0].startswith("-"):
            target = target.get_command(click.Context(target), words.pop(0))
            assert target is not None, line
        target.make_context(name, list(words), resilient_parsing=True)


@pytest.mark.parametrize("path,cmd", ALL, ids=IDS)
def test_verbose_is_accepted_after_the_subcommand(path, cmd):
    verbose = [o for o in _options(cmd) if "--verbose" in o.opts]
    assert len(verbose) == 1, f"gstore {' '.join(path)}: no -v/--verbose"
    opt = verbose[0]
    assert set(opt.opts) == {"-v", "--verbose"} and opt.count
    assert opt.callback is _verbose_callback            # the group's semantics, not a look-alike


@pytest.mark.parametrize("path,cmd", LEAVES, ids=LEAF_IDS)
def test_every_command_reports_json(path, cmd):
    js = [o for o in _options(cmd) if "--json" in o.opts]
    assert len(js) == 1 and js[0].is_flag, f"gstore {' '.join(path)}: no --json flag"


def test_a_short_flag_means_one_thing_across_commands():
    by_short: dict[str, set] = defaultdict(set)
    by_long: dict[str, set] = defaultdict(set)
    for path, cmd in ALL + [((), main)]:
        for opt in _options(cmd):
            for s in _shorts(opt):
                by_short[s].add(_long(opt))
                by_long[_long(opt)].add(s)
    clashes = {s: sorted(longs) for s, longs in by_short.items() if len(longs) > 1}
    assert not clashes, f"short flags with more than one meaning: {clashes}"
    twice = {lg: sorted(s) for lg, s in by_long.items() if len(s) > 1}
    assert not twice, f"long options with different short flags: {twice}"
    assert {"-v", "-q", "-o", "-k"} <= set(by_short)


def test_output_means_the_path_the_command_writes():
    seen = 0
    for path, cmd in ALL:
        for opt in _options(cmd):
            if {"-o", "--output"} & set(opt.opts):
                seen += 1
                assert {"-o", "--output"} <= set(opt.opts), (path, opt.opts)
                assert opt.help.startswith(OUTPUT_HELP_PREFIX), (path, opt.help)
    assert seen


def test_the_store_is_the_first_positional_argument():
    readers = 0
    for path, cmd in LEAVES:
        args = [p for p in cmd.params if isinstance(p, click.Argument)]
        names = [a.name for a in args]
        assert not [o for o in _options(cmd) if "store" in (o.name or "")], \
            f"gstore {' '.join(path)}: the store is a positional argument, not an option"
        if any("store" in n for n in names):
            readers += 1
            assert names[0] == "store", f"gstore {' '.join(path)}: arguments {names}, STORE must be first"
    assert readers >= 1


def test_one_memory_budget_default_everywhere():
    from gstore.pipeline.ingest.ingest import IngestOptions
    from gstore.pipeline.partition.partition import compute_partition, partition_store
    from gstore.pipeline.partition.reorder import reorder_store

    budgets = [(p, o) for p, c in ALL for o in _options(c) if o.name == "memory_budget"]
    assert budgets
    for path, opt in budgets:
        assert opt.default == DEFAULT_MEMORY_BUDGET and opt.show_default, path
    assert IngestOptions().memory_budget == parse_bytes(DEFAULT_MEMORY_BUDGET)
    for fn in (partition_store, compute_partition, reorder_store):
        assert inspect.signature(fn).parameters["memory_budget"].default == DEFAULT_MEMORY_BUDGET


# ---- behaviour ----------------------------------------------------------------------------------
def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_json_object(r) -> dict:
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1, f"stdout is not one JSON object: {r.stdout!r}"
    obj = json.loads(lines[0])
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def edges_csv(tmp_path_factory) -> Path:
    src, dst = random_graph(200, 1200, seed=1)
    path = tmp_path_factory.mktemp("edges") / "edges.csv"
    path.write_text("src,dst\n" + "".join(f"{a},{b}\n" for a, b in zip(src, dst)))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = 300
    src, dst = random_graph(n, 2000, seed=2)
    return build_store(tmp_path_factory.mktemp("s") / "s", src, dst, n,
                       features=rng.random((n, 4), dtype=np.float32), labels=rng.integers(0, 3, n),
                       splits={"train": np.arange(0, n, 3)})


def _phase_frames(stderr: str) -> list[str]:
    """Every frame a terminal or log viewer shows: tqdm redraws with \\r, lines end with \\n."""
    return [f for f in stderr.replace("\r", "\n").split("\n") if f.strip()]


def test_ingest_json_is_one_object_and_bars_go_to_stderr(edges_csv, tmp_path):
    r = _run("ingest", edges_csv, "-o", tmp_path / "g", "--json", "-v")
    obj = _one_json_object(r)
    assert obj["num_nodes"] > 0 and obj["edges_read"] == 1200 and obj["store"].endswith("g")
    assert "read edges" in r.stderr and "INFO" in r.stderr   # progress and logs: stderr only


def test_each_phase_prints_one_line_when_stderr_is_not_a_terminal(edges_csv, tmp_path):
    r = _run("ingest", edges_csv, "-o", tmp_path / "g")
    assert r.exit_code == 0, r.output
    frames = _phase_frames(r.stderr)
    assert frames and all(": " in f and " in " in f for f in frames), frames
    names = [f.split(":")[0] for f in frames]
    assert len(names) == len(set(names)), f"a phase printed more than once: {frames}"
    assert "read edges" in names and "build CSR" in names
    assert r.stdout.strip() and "read edges" not in r.stdout


_PIPE_SCRIPT = """
from gstore.cli_progress import TqdmProgress
p = TqdmProgress()
for name, total in (("read edges", 7 * 10**5), ("build CSR", 7)):
    with p.phase(name, total=total, unit="B", unit_scale=True) as bar:
        for _ in range(total // 7):
            bar.advance(7)
"""


def test_phase_lines_through_a_real_pipe(tmp_path):
    # `gstore ... 2> log` as a user runs it (a real file descriptor, not click's test stream): each
    # phase lands in the log exactly once, however many updates it had
    log = tmp_path / "log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", _PIPE_SCRIPT], stderr=fh)
    assert proc.returncode == 0, log.read_text()
    frames = _phase_frames(log.read_text())
    assert [f.split(":")[0] for f in frames] == ["read edges", "build CSR"], frames
    assert frames[0].startswith("read edges: 700k B in "), frames


def test_quiet_silences_the_phase_lines(edges_csv, tmp_path):
    r = _run("ingest", edges_csv, "-o", tmp_path / "g", "-q")
    assert r.exit_code == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_subcommand_logs_the_same(edges_csv, tmp_path, where):
    args = ["ingest", str(edges_csv), "-o", str(tmp_path / "g"), "-q"]
    r = _run(*(["-v", *args] if where == "before" else [*args, "-v"]))
    assert r.exit_code == 0, r.output
    assert "INFO gstore" in r.stderr and "DEBUG" not in r.stderr
    assert "INFO" not in r.stdout
    r = _run("ingest", edges_csv, "-o", tmp_path / "g2", "-q")       # and the next run is quiet again
    assert r.exit_code == 0 and "INFO" not in r.stderr, r.stderr


def test_verbose_counts_add_up_across_the_group_and_the_command(edges_csv, tmp_path):
    import logging

    r = _run("-v", "ingest", edges_csv, "-o", tmp_path / "g", "-q", "-v")
    assert r.exit_code == 0, r.output
    assert logging.getLogger("gstore").getEffectiveLevel() == logging.DEBUG    # -v + -v = -vv
    assert _run("info", tmp_path / "g").exit_code == 0
    assert logging.getLogger("gstore").getEffectiveLevel() >= logging.WARNING


def test_a_cli_run_leaves_library_logging_alone(edges_csv, tmp_path, caplog):
    import logging

    assert _run("ingest", edges_csv, "-o", tmp_path / "g", "-q").exit_code == 0
    caplog.set_level(logging.INFO)                      # a library user's (or a later test's) setup
    logging.getLogger("gstore.pipeline.ingest").info("still heard")
    assert "still heard" in caplog.text


def test_partition_info_sample_json_are_one_object(store, tmp_path):
    import shutil

    s = tmp_path / "s"
    shutil.copytree(store, s)
    part = _one_json_object(_run("partition", s, "-k", "3", "--json"))
    assert part["num_parts"] == 3 and 0 <= part["edge_cut"] <= 1 and part["store"] == str(s)
    info = _one_json_object(_run("info", s, "--json"))
    assert info["num_nodes"] == 300 and "3" in info["partitions"]
    samp = _one_json_object(_run("sample", s, "--batches", "2", "--batch-size", "16", "--fanouts", "3,2",
                                 "--json"))
    assert samp["batches"] == 2 and samp["method"] == "neighbor" and samp["fanouts"] == [3, 2]


def test_generate_json_is_one_object(tmp_path):
    g = _one_json_object(_run("generate", "rmat", "-s", "6", "-e", "2", "-o", tmp_path / "e.csv", "--json"))
    assert g["kind"] == "rmat" and g["num_edges"] == 128 and g["edges_path"] == str(tmp_path / "e.csv")
    g = _one_json_object(_run("generate", "sbm", "-n", "100", "--communities", "3", "-f", "2",
                              "-o", tmp_path / "s", "--json"))
    assert g["kind"] == "sbm" and g["num_nodes"] == 100 and g["num_classes"] == 3


def test_demo_json_is_one_object(tmp_path):
    d = _one_json_object(_run("demo", "-n", "200", "--communities", "2", "-k", "2", "-f", "4", "--epochs", "1",
                              "-o", tmp_path, "--json", "-q"))
    assert d["generate"]["num_nodes"] == 200 and d["partition"]["num_parts"] == 2
    assert [r["name"] for r in d["runs"]] == ["mlp", "sage", "cluster-gcn"]
    assert all(r["result"]["epochs"] == 1 for r in d["runs"]) and set(d["test_accuracy"]) == {"mlp", "sage", "cluster-gcn"}


def test_phase_line_forms():
    from gstore.cli_progress import phase_line

    assert phase_line("build CSR", 3, 3, "bucket", False, 2.0) == "build CSR: 3 bucket in 2.0 s (1 bucket/s)"
    assert phase_line("read", 5, 10, "rows", False, 1.0) == "read: 5 rows of 10 rows in 1.0 s (5 rows/s)"
    assert phase_line("metis", 0, None, "it", False, 0.25) == "metis: done in 0.2 s"


def test_json_is_strict_even_with_nan(capsys):
    from gstore.cli_options import emit_json

    emit_json({"acc": float("nan"), "path": Path("a/b"), "n": np.int64(3)})
    assert json.loads(capsys.readouterr().out) == {"acc": None, "path": "a/b", "n": 3}
