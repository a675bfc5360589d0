"""The resolved options of a training run (`config.json` in the run directory).

Every option that decides what a run computes is here, so `config.json` is enough to rerun it and a
`--resume` can be checked against it: `resume_differences` names every option whose value differs,
except the few that only change how long or how fast a run goes (RESUME_FREE).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from gstore.errors import OptionError

METHODS = ("sage", "cluster-gcn", "sgc", "sign", "history")
ROW_METHODS = ("sgc", "sign")            # train on precomputed hops (row batches), no sampling
NORMS = ("sym", "rw")                    # propagation: D^-1/2 (A+I) D^-1/2, or D^-1 (A+I)
HISTORY_VARIANTS = ("gas", "scalable-gcn")   # --method history: GNNAutoScale, ScalableGCN
HISTORY_DTYPES = ("float16", "float32")
MODELS = ("sage", "gcn", "gat", "mlp")   # mlp: the features-only baseline
JK_MODES = ("none", "cat", "max")
INFERENCE_DTYPES = ("float32", "float16")
CONFIG_VERSION = 1
# options a resumed run may change: more epochs, other workers/prefetch/budget, other reporting
RESUME_FREE = frozenset({"epochs", "num_workers", "prefetch", "memory_budget", "patience",
                         "eval_every", "inference_dtype", "checkpoint_every", "plot"})


@dataclass
class TrainConfig:
    """One training run. `store`: absolute path; `fanouts`: per hop from the seeds outwards (sage),
    also used for sampled evaluation; `partition`: number of parts used by cluster-gcn (None = the
    store's default partition)."""

    store: str
    method: str = "sage"
    model: str = "sage"
    layers: int = 2
    hidden: int = 128
    dropout: float = 0.5
    input_dropout: float | None = None  # sign: dropout of the input rows (None = --dropout)
    lr: float = 0.003
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 1024
    fanouts: tuple[int, ...] = (15, 10)
    clusters_per_batch: int = 20
    partition: int | None = None
    num_workers: int = 2
    prefetch: int = 4
    device: str = "cpu"
    amp: bool = False
    seed: int = 0
    patience: int = 0
    eval_every: int = 1
    metric: str = "accuracy"
    memory_budget: str = "2GiB"
    batch_norm: bool = False
    residual: bool = False
    jk: str = "none"
    heads: int = 4
    inference_dtype: str = "float32"
    checkpoint_every: int = 0
    max_batches: int = 0                # at most this many batches per epoch and per evaluation (0 = all)
    plot: bool = False
    # sgc / sign: the propagated features A_hat^k X, k <= hops (pipeline/propagation)
    hops: int = 2
    norm: str = "sym"
    self_loops: bool = True
    propagate_dtype: str = "float32"
    variant: str | None = None          # --method history only
    history_dtype: str = "float16"
    history_refresh: int = 0            # refill the histories every N epochs (0 = never)
    history_sweep: int = 1              # scalable-gcn: non-train nodes in the batches once every N epochs
    # ranks of a data-parallel run (train/distributed.py): decides the global batch (world_size x
    # batch_size) and each rank's shard, so a checkpoint resumes only with as many ranks
    world_size: int = 1
    version: int = field(default=CONFIG_VERSION)

    def to_json(self) -> dict:
        d = asdict(self)
        d["fanouts"] = list(self.fanouts)
        return d

    @staticmethod
    def from_json(d: dict, where: str = "config.json") -> "TrainConfig":
        if not isinstance(d, dict):
            raise OptionError(f"{where} is not a JSON object")
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OptionError(f"{where} has unknown options {unknown}",
                              hint="it was written by another gstore version; start a new run")
        if "store" not in d:
            raise OptionError(f"{where} lacks 'store'")
        d = dict(d)
        for f in fields(TrainConfig):
            if f.name in d and not _has_type(d[f.name], f.type):
                raise OptionError(f"{where}: option {f.name!r} is {d[f.name]!r}, not {f.type}",
                                  hint="the file was edited or damaged: restore it (the checkpoint's "
                                       "config is the run's), or start a new run")
        if d.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise OptionError(f"{where} has config version {d.get('version')}, this gstore reads "
                              f"{CONFIG_VERSION}", hint="start a new run")
        d["fanouts"] = tuple(d.get("fanouts", ()))
        return TrainConfig(**d)

    def resume_differences(self, saved: "TrainConfig") -> list[str]:
        """'option: saved X, now Y' for every option outside RESUME_FREE that differs."""
        return self.differences(saved, RESUME_FREE)

    def differences(self, saved: "TrainConfig", skip: frozenset = frozenset()) -> list[str]:
        """'option: saved X, now Y' for every option outside `skip` that differs."""
        out = []
        for f in fields(self):
            if f.name in skip:
                continue
            mine, old = getattr(self, f.name), getattr(saved, f.name)
            if mine != old:
                out.append(f"{option_name(f.name)}: saved {_show(old)}, now {_show(mine)}")
        return out


def _has_type(v, annotation: str) -> bool:
    """Whether JSON value `v` fits a TrainConfig field annotated `annotation` (the annotations are
    strings: this module defers them). bool is not an int here: `true` for --layers is damage."""
    def is_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    if annotation.endswith(" | None"):
        return v is None or _has_type(v, annotation[:-len(" | None")])
    if annotation == "tuple[int, ...]":
        return isinstance(v, list) and all(is_int(x) for x in v)
    return {"str": lambda: isinstance(v, str), "int": lambda: is_int(v), "bool": lambda: isinstance(v, bool),
            "float": lambda: is_int(v) or isinstance(v, float)}[annotation]()


# config fields whose command-line option has another name
OPTION_NAMES = {"partition": "--parts", "store": "STORE", "world_size": "--nproc (ranks)"}


def option_name(field_name: str) -> str:
    return OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return repr(v)


def validate(cfg: TrainConfig) -> None:
    """One-line OptionError for any option outside its range (the store is checked elsewhere)."""
    def need(ok: bool, msg: str, hint: str | None = None) -> None:
        if not ok:
            raise OptionError(msg, hint=hint)

    need(cfg.method in METHODS, f"unknown --method {cfg.method!r}", f"use one of {', '.join(METHODS)}")
    need(cfg.model in MODELS, f"unknown --model {cfg.model!r}", f"use one of {', '.join(MODELS)}")
    need(cfg.jk in JK_MODES, f"unknown --jk {cfg.jk!r}", f"use one of {', '.join(JK_MODES)}")
    need(cfg.inference_dtype in INFERENCE_DTYPES, f"unknown --inference-dtype {cfg.inference_dtype!r}",
         "use float32 or float16")
    need(cfg.layers >= 1, f"--layers must be >= 1, got {cfg.layers}")
    need(cfg.hidden >= 1, f"--hidden must be >= 1, got {cfg.hidden}")
    need(cfg.heads >= 1, f"--heads must be >= 1, got {cfg.heads}")
    need(0.0 <= cfg.dropout < 1.0, f"--dropout must be in [0, 1), got {cfg.dropout}")
    need(cfg.input_dropout is None or 0.0 <= cfg.input_dropout < 1.0,
         f"--input-dropout must be in [0, 1), got {cfg.input_dropout}")
    # inf passes a plain comparison and trains every weight to NaN
    need(math.isfinite(cfg.lr) and cfg.lr > 0, f"--lr must be finite and > 0, got {cfg.lr}")
    need(math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0,
         f"--weight-decay must be finite and >= 0, got {cfg.weight_decay}")
    need(cfg.epochs >= 0, f"--epochs must be >= 0, got {cfg.epochs}")
    need(cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}")
    need(cfg.clusters_per_batch >= 1, f"--clusters-per-batch must be >= 1, got {cfg.clusters_per_batch}")
    need(cfg.num_workers >= 1, f"--num-workers must be >= 1, got {cfg.num_workers}")
    need(cfg.prefetch >= 1, f"--prefetch must be >= 1, got {cfg.prefetch}")
    need(cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}")
    need(cfg.patience >= 0, f"--patience must be >= 0 (0 = no early stopping), got {cfg.patience}")
    need(cfg.eval_every >= 1, f"--eval-every must be >= 1, got {cfg.eval_every}")
    need(cfg.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {cfg.checkpoint_every}")
    need(cfg.world_size >= 1, f"world_size must be >= 1, got {cfg.world_size}")
    need(cfg.max_batches >= 0, f"--max-batches must be >= 0 (0 = every batch), got {cfg.max_batches}")
    validate_history(cfg, need)
    if cfg.method in ROW_METHODS:
        validate_rows(cfg)
        return
    if len(cfg.fanouts) != cfg.layers:
        raise OptionError(f"--fanouts has {len(cfg.fanouts)} hop(s) ({_show(tuple(cfg.fanouts))}) but "
                          f"--layers is {cfg.layers}: give one fanout per layer",
                          hint=f"e.g. --fanouts {','.join(['10'] * cfg.layers)}")


def validate_history(cfg: TrainConfig, need) -> None:
    """The options of --method history (and that no other method takes them)."""
    if cfg.method != "history":
        need(cfg.variant is None, f"--variant {cfg.variant} needs --method history",
             "pass --method history --variant gas|scalable-gcn, or drop --variant")
        return
    need(cfg.variant in HISTORY_VARIANTS, f"--method history needs --variant gas or scalable-gcn, "
         f"got {cfg.variant!r}" if cfg.variant is not None else "--method history needs --variant",
         "pass --variant gas (clusters + halo, GNNAutoScale) or --variant scalable-gcn")
    need(cfg.history_dtype in HISTORY_DTYPES, f"unknown --history-dtype {cfg.history_dtype!r}",
         "use float16 or float32")
    need(cfg.history_refresh >= 0, f"--history-refresh must be >= 0 (0 = never), got {cfg.history_refresh}")
    need(cfg.history_sweep >= 0, f"--history-sweep must be >= 0 (0 = train nodes only), got {cfg.history_sweep}",
         "1 puts every node in a batch each epoch, N every other node once every N epochs")
    need(not cfg.amp, "--amp is not supported with --method history (the gradient store would "
         "collect scaled and skipped-step gradients)", "drop --amp")


def validate_rows(cfg: TrainConfig) -> None:
    """The options of sgc / sign (precomputed hops instead of sampled blocks: no fanouts check)."""
    from gstore.pipeline.propagation.params import MAX_HOPS

    if isinstance(cfg.hops, bool) or not isinstance(cfg.hops, int) or not 1 <= cfg.hops <= MAX_HOPS:
        raise OptionError(f"--hops must be an integer in [1, {MAX_HOPS}], got {cfg.hops!r}",
                          hint="SGC uses 2-3 hops, SIGN up to 5")
    if cfg.norm not in NORMS:
        raise OptionError(f"unknown --norm {cfg.norm!r}", hint=f"use one of {', '.join(NORMS)}")
    if cfg.propagate_dtype not in INFERENCE_DTYPES:
        raise OptionError(f"unknown --propagate-dtype {cfg.propagate_dtype!r}", hint="use float32 or float16")


# options a method does not read: given explicitly on the command line they are refused (a user
# who types --fanouts for sgc expects it to change something); their defaults are ignored
UNUSED_OPTIONS = {
    "sgc": ("model", "layers", "hidden", "fanouts", "clusters_per_batch", "partition", "batch_norm",
            "residual", "jk", "heads", "inference_dtype"),
    "sign": ("model", "fanouts", "clusters_per_batch", "partition", "residual", "jk", "heads",
             "inference_dtype"),
}
ROW_OPTIONS = ("hops", "norm", "self_loops", "propagate_dtype")
UNUSED_OPTIONS["sgc"] += ("input_dropout",)           # SGC's one dropout is on its input
HISTORY_OPTIONS = ("history_dtype", "history_refresh", "history_sweep")   # --variant has its own check
for _m in ("sage", "cluster-gcn", "history"):
    UNUSED_OPTIONS[_m] = ROW_OPTIONS + ("input_dropout",)
for _m in ("sage", "cluster-gcn", "sgc", "sign"):
    UNUSED_OPTIONS[_m] = UNUSED_OPTIONS[_m] + HISTORY_OPTIONS

# what the papers train SGC / SIGN with (docs/training.md): used for options left at their default
METHOD_DEFAULTS = {
    "sgc": {"lr": 0.2, "weight_decay": 5e-4, "dropout": 0.0, "epochs": 100},
    # sign: chosen on validation accuracy (bench/sign_search.py, docs/benchmarks.md): no input
    # dropout (PyG's examples/sign.py has none either), dropout 0.5 after the branches, and a
    # weight decay (2e-2) that, with the hops brought to one scale (row_models.hop_scales), shrinks the
    # noisy hops' weights as much as the smooth ones'
    "sign": {"lr": 0.01, "weight_decay": 2e-2, "dropout": 0.5, "input_dropout": 0.0, "epochs": 100,
             "hidden": 256, "layers": 1},
}


# history options one variant does not read (gas batches are clusters: every node every epoch)
VARIANT_UNUSED = {"gas": ("history_sweep",)}


def refuse_unused(method: str, given: set[str], variant: str | None = None) -> None:
    """OptionError naming the first option in `given` (config field names the user typed) that
    `method` (and, for --method history, `variant`) does not read."""
    if method == "history":
        for name in VARIANT_UNUSED.get(variant, ()):
            if name in given:
                raise OptionError(f"{option_name(name)} does not apply to --variant {variant}",
                                  hint="leave it out: gas batches visit every cluster, so every node, "
                                       "each epoch")
    for name in UNUSED_OPTIONS.get(method, ()):
        if name in given:
            if name == "input_dropout":
                why = "only --method sign has a separate input dropout; --dropout sets this method's"
            elif name in HISTORY_OPTIONS:
                why = "it sets the histories of --method history"
            elif name in ROW_OPTIONS:
                why = "it sets the propagation of --method sgc/sign"
            else:
                why = "sgc/sign train on precomputed hops, without sampling or graph layers"
            raise OptionError(f"{option_name(name)} does not apply to --method {method}",
                              hint="leave it out: " + why)
