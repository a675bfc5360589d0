"""`gstore partition STORE --parts K`: k-way node partition recorded in the store (docs/partition.md)."""
from __future__ import annotations

import click

from gstore.cli_options import emit_json, examples, json_option, memory_budget_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option


@click.command("partition", short_help="Balanced k-way node partition (-k K).", epilog=examples(
    "gstore partition g.gstore -k 64",
    "gstore partition g.gstore -k 64 --reorder --json"))
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--parts", "-k", "num_parts", type=int, required=True, help="Number of parts K.")
@click.option("--method", type=click.Choice(["auto", "metis", "multilevel"]), default="auto",
              show_default=True, help="metis: pymetis in memory; multilevel: out-of-core coarsening; "
                                      "auto: metis when its estimate fits --memory-budget.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--imbalance", type=float, default=0.05, show_default=True,
              help="Allowed part weight above the average (0.05 = 5%).")
@click.option("--balance-on", type=click.Choice(["nodes", "edges"]), default="nodes",
              show_default=True, help="Balance node counts, or node weights 1 + in-degree.")
@memory_budget_option("pymetis and edge buffers (O(N) node arrays come on top).")
@click.option("--reorder", is_flag=True,
              help="Renumber nodes so each part is a contiguous id range (rewrites the store).")
@click.option("--force", is_flag=True, help="Replace an existing partition with the same K.")
@json_option
@verbose_option
@quiet_option
def command(store: str, num_parts: int, method: str, seed: int, imbalance: float, balance_on: str,
            memory_budget: str, reorder: bool, force: bool, as_json: bool, quiet: bool) -> None:
    """Partition STORE's nodes into K balanced parts with few cut edges; the result is recorded in
    STORE (shown by `gstore info`)."""
    from gstore.memory import format_bytes
    from gstore.pipeline.partition.partition import partition_store

    r = partition_store(store, num_parts, method=method, seed=seed, imbalance=imbalance,
                        memory_budget=memory_budget, balance_on=balance_on, reorder=reorder,
                        force=force, progress=TqdmProgress(quiet))
    if as_json:
        emit_json({"store": str(store), **r.to_json()})
        return
    levels = " -> ".join(f"{n:,}" for n, _ in r.levels)
    click.echo(f"partition k={r.num_parts} method={r.method} (levels: {levels} nodes)")
    click.echo(f"edge cut:  {r.edge_cut:.4f} of stored edges")
    click.echo(f"balance:   {r.balance:.3f} (heaviest part / average; limit {1 + imbalance:.3f})")
    click.echo(f"time:      {r.seconds:.2f} s" + (f" + reorder {r.reorder_seconds:.2f} s" if r.reordered else ""))
    click.echo(f"peak RSS:  {format_bytes(r.peak_rss)} (pymetis estimate {format_bytes(r.metis_estimate)})")
