"""`gstore predict STORE --run RUN_DIR`: layer-wise inference of a trained run over every node."""
from __future__ import annotations

from pathlib import Path

import click

from gstore.cli_options import emit_json, examples, json_option, memory_budget_option, verbose_option
from gstore.cli_progress import TqdmProgress, quiet_option


@click.command("predict", short_help="Predict every node with a trained run (layer-wise inference).",
               epilog=examples("gstore predict g.gstore --run runs/sage",
                               "gstore predict g.gstore --run runs/sage --checkpoint last --json"))
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The RUN_DIR of a `gstore train` run; its predictions are rewritten.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint's weights (best: best validation score; falls back to last).")
@memory_budget_option("layer-wise inference chunks and prediction writing.")
@click.option("--inference-dtype", type=click.Choice(["float32", "float16"]), default=None,
              show_default="the run's", help="Dtype of the per-layer embedding arrays.")
@click.option("--device", default=None, show_default="the run's", help="auto, cpu, cuda or cuda:N.")
@click.option("--into-store", "derived_group", default=None, metavar="NAME",
              help="Also add the predictions to STORE as its derived group NAME (class, score arrays), "
                   "replacing a group of that name.")
@json_option
@verbose_option
@quiet_option
def command(store: str, run_dir: Path, checkpoint: str, memory_budget: str, inference_dtype: str | None,
            device: str | None, derived_group: str | None, as_json: bool, quiet: bool) -> None:
    """Run the layer-wise inference of RUN_DIR's model over every node of STORE into RUN_DIR's
    predictions (class and score per node, and a table keyed by the original ids)."""
    from gstore.train.predict_run import predict_run

    r = predict_run(Path(store), run_dir, checkpoint=checkpoint, memory_budget=memory_budget,
                    inference_dtype=inference_dtype, device=device, into_store=derived_group,
                    progress=TqdmProgress(quiet))
    if as_json:
        emit_json(r)
        return
    m = r.metrics
    click.echo("accuracy: " + ", ".join(f"{s} {m[s]['accuracy']:.4f}" for s in ("train", "val", "test") if s in m))
    click.echo(f"predictions of {r.num_nodes:,} nodes in {r.seconds:.1f}s -> {r.table}")
    if r.store_group:
        click.echo(f"added to {store} as derived group {r.store_group!r} (gstore.open(...).derived({r.store_group!r}))")
