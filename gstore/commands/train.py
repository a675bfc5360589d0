"""`gstore train STORE --method sage|cluster-gcn|sgc|sign -o RUN_DIR`: train a GNN from the store (docs/training.md)."""
from __future__ import annotations

from pathlib import Path

import click

from gstore.cli_options import (emit_json, examples, json_option, memory_budget_option, output_option,
                                verbose_option)
from gstore.cli_progress import TqdmProgress, quiet_option

DEFAULT_FANOUTS = (15, 10, 5)


def default_fanouts(layers: int) -> tuple[int, ...]:
    """15,10 for 2 layers, 15,10,5 for 3 (PyG's recipe), then 5 per further layer."""
    return (DEFAULT_FANOUTS + (5,) * max(0, layers - 3))[:layers]


def parse_fanouts_option(text: str | None, layers: int) -> tuple[int, ...]:
    if text is None:
        return default_fanouts(layers)
    from gstore.errors import OptionError
    from gstore.pipeline.sampling.neighbor import check_fanouts

    fields = text.split(",")
    values = []
    for i, f in enumerate(fields):
        f = f.strip()
        try:
            values.append(int(f))
        except ValueError:
            raise OptionError(f"--fanouts {text!r}: field {i + 1} is {f!r}, not an integer",
                              hint="e.g. --fanouts 15,10 (one per layer; -1 = all in-neighbors)") from None
    return tuple(check_fanouts(values, "--fanouts", text))


def history_options() -> list:
    """--method history's options (docs/training.md, "History methods")."""
    return [
        click.option("--variant", type=click.Choice(["gas", "scalable-gcn"]), default=None,
                     help="--method history: gas (GNNAutoScale: clusters of the partition + their "
                          "halo, gradients stop at the halo) or scalable-gcn (batches of shuffled nodes, "
                          "--fanouts[0] sampled neighbors, gradient stores)."),
        click.option("--history-dtype", type=click.Choice(["float16", "float32"]), default="float16",
                     show_default=True, help="Dtype of the on-disk history arrays (--method history)."),
        click.option("--history-refresh", type=int, default=0, show_default=True,
                     help="Refill the histories by layer-wise inference every N epochs (0 = never; "
                          "--method history)."),
        click.option("--history-sweep", type=int, default=1, show_default=True,
                     help="--variant scalable-gcn: put every node outside the train split in a batch "
                          "once every N epochs (1 = every node each epoch, as gas does; 0 = train "
                          "seeds only, whose neighbors' histories then age; loss on train nodes only)."),
    ]


def train_options(f):
    """The model and loader options `gstore train` has (shared with nothing else: one place)."""
    opts = [
        click.option("--method", type=click.Choice(["sage", "cluster-gcn", "sgc", "sign", "history"]),
                     default="sage", show_default=True,
                     help="sage: sampled neighborhoods of seed batches; cluster-gcn: subgraphs of "
                          "--clusters-per-batch clusters of the store's partition; sgc / sign: row "
                          "batches of the precomputed hops A^k X (no sampling; computed into the store "
                          "when missing, as `gstore propagate` does); history: 1-hop batches with "
                          "historical embeddings on disk (--variant)."),
        click.option("--model", type=click.Choice(["sage", "gcn", "gat", "mlp"]), default="sage", show_default=True,
                     help="Layer type: GraphSAGE (mean), GCN (symmetric normalisation), GAT, or mlp "
                          "(features only: the baseline that shows what the graph adds)."),
        click.option("--layers", type=int, default=2, show_default=True, help="Number of GNN layers."),
        click.option("--hidden", type=int, default=128, show_default=True, help="Hidden width."),
        click.option("--dropout", type=float, default=0.5, show_default=True, help="Dropout rate."),
        click.option("--input-dropout", type=float, default=None,
                     help="sign: dropout of the input rows, apart from --dropout after its layers "
                          "[default: 0]."),
        click.option("--batch-norm/--no-batch-norm", default=False, show_default=True,
                     help="BatchNorm after every hidden layer."),
        click.option("--residual/--no-residual", default=False, show_default=True,
                     help="Residual connections between layers."),
        click.option("--jk", type=click.Choice(["none", "cat", "max"]), default="none", show_default=True,
                     help="Jumping knowledge read-out over the layers' outputs."),
        click.option("--heads", type=int, default=4, show_default=True, help="Attention heads (GAT)."),
        click.option("--lr", type=float, default=0.003, show_default=True, help="Adam learning rate."),
        click.option("--weight-decay", type=float, default=0.0, show_default=True, help="Adam weight decay."),
        click.option("--epochs", type=int, default=10, show_default=True,
                     help="Epochs to train (in total, counting a resumed run's earlier ones)."),
        click.option("--batch-size", type=int, default=1024, show_default=True,
                     help="Seed nodes per batch (sage)."),
        click.option("--fanouts", default=None, show_default="15,10 for 2 layers, 15,10,5 for 3",
                     help="Neighbors sampled per hop from the seeds outwards, one per layer (-1 = all); "
                          "also used by the per-epoch evaluation."),
        click.option("--clusters-per-batch", type=int, default=20, show_default=True,
                     help="Clusters per batch (cluster-gcn)."),
        click.option("--parts", "-k", "partition", type=int, default=None, show_default="the store's default",
                     help="Which K-way partition cluster-gcn uses."),
        click.option("--num-workers", type=int, default=2, show_default=True,
                     help="Loader worker threads (sample + gather each)."),
        click.option("--prefetch", type=int, default=4, show_default=True, help="Batches the loader keeps ready."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--amp/--no-amp", default=False, show_default=True,
                     help="Mixed precision (float16 on CUDA, bfloat16 on CPU)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random step."),
        click.option("--patience", type=int, default=0, show_default=True,
                     help="Stop after this many evaluations without a better validation score (0 = never)."),
        click.option("--eval-every", type=int, default=1, show_default=True, help="Evaluate every N epochs."),
        click.option("--metric", type=click.Choice(["accuracy", "roc_auc"]), default="accuracy",
                     show_default=True, help="Validation metric for best.pt and early stopping "
                                             "(roc_auc: two-class tasks; both are reported there)."),
        click.option("--checkpoint-every", type=int, default=0, show_default=True,
                     help="Also checkpoint every N batches inside an epoch (0 = at epoch ends only)."),
        click.option("--max-batches", type=int, default=0, show_default=True,
                     help="Stop every epoch, and every sampled evaluation, after N batches (0 = all): "
                          "a bounded run on a graph too large for whole epochs; predictions still "
                          "cover every node."),
        click.option("--inference-dtype", type=click.Choice(["float32", "float16"]), default="float32",
                     show_default=True, help="Dtype of the per-layer embedding arrays of layer-wise inference."),
        click.option("--hops", type=int, default=2, show_default=True,
                     help="sgc / sign: propagation depth K (sgc trains on A^K X, sign on X, AX, ..., A^K X)."),
        click.option("--norm", type=click.Choice(["sym", "rw"]), default="sym", show_default=True,
                     help="sgc / sign: A's normalisation, sym = D^-1/2 (A+I) D^-1/2, rw = D^-1 (A+I)."),
        click.option("--self-loops/--no-self-loops", default=True, show_default=True,
                     help="sgc / sign: add I to A before normalising."),
        click.option("--propagate-dtype", type=click.Choice(["float32", "float16"]), default="float32",
                     show_default=True, help="sgc / sign: dtype of the stored hop arrays."),
        memory_budget_option("layer-wise inference chunks, propagation and prediction writing."),
        *history_options(),
        click.option("--plot", is_flag=True, help="Write RUN_DIR/curve.png (needs matplotlib: pip install 'gstore[plot]')."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def method_options(options: dict, fanouts: str | None) -> None:
    """Refuse options typed for another method (run_config.UNUSED_OPTIONS) and put the method's
    own defaults (run_config.METHOD_DEFAULTS) into the options left at gstore train's defaults."""
    from click.core import ParameterSource

    from gstore.train.run_config import METHOD_DEFAULTS, refuse_unused

    ctx = click.get_current_context()
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    if fanouts is not None:
        given.add("fanouts")
    refuse_unused(options["method"], given, options.get("variant"))
    for name, value in METHOD_DEFAULTS.get(options["method"], {}).items():
        if name not in given:
            options[name] = value


@click.command("train", short_help="Train a GNN (GraphSAGE / Cluster-GCN / SGC / SIGN) from a store.", epilog=examples(
    "gstore train g.gstore -o runs/sage",
    "gstore train g.gstore --method cluster-gcn --model gcn -o runs/cgcn --epochs 20",
    "gstore train g.gstore --method sign --hops 3 -o runs/sign --resume"))
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@output_option("the run directory (config.json, metrics.jsonl, checkpoints, best.pt, predictions); "
               "new or empty, or an earlier run's with --resume / --force.", required=True)
@train_options
@click.option("--resume", is_flag=True, help="Continue the run in -o from its last checkpoint.")
@click.option("--force", is_flag=True, help="Replace the earlier run in -o.")
@click.option("--nproc", type=int, default=None,
              help="Train data-parallel in N processes on this machine (torchrun's agent, started "
                   "for you; the same as `torchrun --standalone --nproc-per-node N -m gstore train "
                   "...`). --batch-size is per process. docs/distributed.md.")
@json_option
@verbose_option
@quiet_option
def command(store: str, output: Path, resume: bool, force: bool, nproc: int | None, as_json: bool, quiet: bool,
            fanouts: str | None, **options) -> None:
    """Train a GNN on STORE's train split, evaluate on val/test, predict every node (layer-wise
    inference, out of core) into RUN_DIR."""
    from gstore.errors import OptionError
    from gstore.memory import format_bytes
    from gstore.train.run import train_run
    from gstore.train.run_config import TrainConfig

    if resume and force:
        raise OptionError("--resume and --force contradict each other", hint="pass one of them")
    method_options(options, fanouts)
    fanouts_resolved = parse_fanouts_option(fanouts, options["layers"])
    if nproc is not None:
        launch(nproc)
        return
    from gstore.train.distributed import (RankAgreementError, close_process_group, divide_threads,
                                          env_context, init_process_group, lost_rank_error)

    dist = env_context()
    if dist.active:
        divide_threads(dist)            # before numba's first kernel sizes its thread pool
        init_process_group(dist, options["device"])
    cfg = TrainConfig(store=str(Path(store).resolve()), fanouts=fanouts_resolved, world_size=dist.world_size,
                      **options)

    def epoch_line(r: dict) -> None:
        if as_json or quiet:
            return
        parts = [f"epoch {r['epoch']}: loss {r['loss']:.4f}", f"train acc {r['train']['accuracy']:.3f}"]
        for split in ("val", "test"):
            if split in r:
                parts.append(f"{split} acc {r[split]['accuracy']:.3f}")
                if "roc_auc" in r[split]:
                    parts.append(f"{split} auc {r[split]['roc_auc']:.3f}")
        parts.append(f"{r['seconds']:.1f}s, {r['batches_per_s']:.1f} batches/s, "
                     f"waited {100 * r['wait_share']:.0f}%")
        click.echo(", ".join(parts))

    try:
        r = train_run(cfg, output, resume=resume, force=force, progress=TqdmProgress(quiet or not dist.is_main),
                      on_epoch=epoch_line, dist=dist)
    except RankAgreementError:
        click.get_current_context().exit(1)     # rank 0 prints the error: one line, not one per rank
    except RuntimeError as exc:
        lost = lost_rank_error(dist, exc)
        if lost is None:
            raise
        raise lost from None
    finally:
        close_process_group(dist)
    if not dist.is_main:
        return
    if as_json:
        emit_json(r)
        return
    m = r.metrics
    line = ", ".join(f"{s} {m[s]['accuracy']:.4f}" for s in ("train", "val", "test") if s in m)
    how = "row batches" if r.method in ("sgc", "sign") else "layer-wise inference"
    click.echo(f"accuracy ({how} over every node): {line}")
    if any("roc_auc" in v for v in m.values()):
        click.echo("roc_auc: " + ", ".join(f"{s} {m[s]['roc_auc']:.4f}" for s in ("train", "val", "test")
                                          if s in m and "roc_auc" in m[s]))
    best = "" if r.best_epoch is None else f", best epoch {r.best_epoch}"
    click.echo(f"{r.epochs} epochs{best}{' (stopped early)' if r.stopped_early else ''}; "
               f"{r.seconds:.1f}s (train {r.train_seconds:.1f}s, inference {r.inference_seconds:.1f}s); "
               f"peak RSS {format_bytes(r.peak_rss_bytes)}")
    click.echo(f"run dir: {r.run_dir}; predictions: {r.predictions}")


def launch(nproc: int) -> None:
    """--nproc N: this command line, minus --nproc, as N ranks under torchrun's agent (gstore/launch.py)."""
    import sys

    from gstore.errors import OptionError
    from gstore.launch import launch_train, passthrough_args

    argv = sys.argv[1:]
    if "train" not in argv:
        raise OptionError("--nproc needs gstore's own command line (the ranks rerun it)",
                          hint="run `gstore train ... --nproc N` from a shell, or torchrun")
    status = launch_train(nproc, passthrough_args(argv))
    if status:
        click.get_current_context().exit(status)
