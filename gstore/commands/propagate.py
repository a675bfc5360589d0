"""`gstore propagate STORE --hops K`: precompute A_hat^k X (k = 1..K) into the store (SGC/SIGN)."""
from __future__ import annotations

import click

from gstore.cli_options import emit_json, examples, json_option, memory_budget_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option

MAX_HOPS = 64        # gstore.pipeline.propagation.MAX_HOPS (not imported here: keeps --help instant)


@click.command("propagate", short_help="Precompute propagated features A_hat^k X (SGC/SIGN).", epilog=examples(
    "gstore propagate g.gstore --hops 3",
    "gstore propagate g.gstore --hops 5 --norm rw --dtype float16 --memory-budget 512MiB",
    "gstore propagate g.gstore --hops 3 --force --json"))
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--hops", type=click.IntRange(1, MAX_HOPS), required=True,
              help="Number of hops K: computes A_hat X, ..., A_hat^K X.")
@click.option("--norm", type=click.Choice(["sym", "rw"]), default="sym", show_default=True,
              help="sym: D^-1/2 (A+I) D^-1/2 (GCN, SGC); rw: D^-1 (A+I) (mean of the in-neighbors).")
@click.option("--self-loops/--no-self-loops", default=True, show_default=True,
              help="Add I to A before normalising (the degrees count the loop).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Dtype of the stored hop arrays (computation is float32 either way).")
@memory_budget_option("the degree scales, panels of hop k-1 and blocks of hop k.")
@click.option("--threads", type=click.IntRange(min=1), default=None, show_default="numba's",
              help="Threads of the propagation kernels.")
@click.option("--force", is_flag=True, help="Recompute hops that are already stored.")
@json_option
@verbose_option
@quiet_option
def command(store: str, hops: int, norm: str, self_loops: bool, dtype: str, memory_budget: str,
            threads: int | None, force: bool, as_json: bool, quiet: bool) -> None:
    """Compute A_hat^k X for k = 1..K out of core (X: STORE's features, A: its CSR as stored) and
    add them to STORE as the derived group propagate-<norm>-<loops|noloops>-<dtype>. Hops stored
    earlier with the same norm, self loops and dtype are reused (K=3 after K=2 computes hop 3);
    `gstore train --method sgc|sign` reads them. `gstore partition --reorder` drops them."""
    from gstore.memory import format_bytes
    from gstore.pipeline.propagation import PropagationParams, propagate

    params = PropagationParams(hops=hops, norm=norm, self_loops=self_loops, dtype=dtype)
    r = propagate(store, params, memory_budget=memory_budget, threads=threads, force=force,
                  progress=TqdmProgress(quiet))
    if as_json:
        emit_json(r)
        return
    done = ", ".join(f"{k} ({s:.1f} s)" for k, s in zip(r.hops_computed, r.seconds_per_hop)) or "none"
    click.echo(f"propagate {r.key}: {r.num_nodes:,} nodes x {r.feature_dim} features, K={hops}")
    click.echo(f"hops computed: {done}")
    if r.hops_reused:
        click.echo(f"hops reused:   {', '.join(map(str, r.hops_reused))} (already stored; --force recomputes)")
    click.echo(f"written:       {format_bytes(r.bytes_written)} in {r.seconds:.1f} s")
    click.echo(f"peak RSS:      {format_bytes(r.peak_rss_bytes)} (anon {format_bytes(r.peak_anon_bytes)}, "
               f"budget {format_bytes(r.memory_budget)})")
    click.echo(f"arrays:        {r.arrays[0]} ... {r.arrays[-1]}" if len(r.arrays) > 1 else f"arrays:        {r.arrays[0]}")
