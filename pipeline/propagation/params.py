"""Typed parameters and results of feature propagation (A_hat^k X for k = 1..K)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gstore.errors import OptionError

NORMS = ("sym", "rw")
DTYPES = ("float32", "float16")
# SGC uses K <= 3, SIGN up to ~5; past a few dozen hops A_hat^k X has converged to the degree
# vector (over-smoothing): a larger K is almost surely a typo (it would also cost K x N x F on disk).
MAX_HOPS = 64
KIND = "propagation"


@dataclass(frozen=True)
class PropagationParams:
    """What A_hat is and how its hops are stored.

    hops: K >= 1 (hops 1..K are computed; hop 0 is the store's features).
    norm: "sym" = D^-1/2 (A+I) D^-1/2 (GCN/SGC); "rw" = D^-1 (A+I) (the mean of the in-neighbors).
    self_loops: add I before normalising (the degrees then count the loop); without it, A alone.
    dtype: "float32" | "float16" of the stored hop arrays (computation is float32 either way).
    """

    hops: int
    norm: str = "sym"
    self_loops: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if isinstance(self.hops, bool) or not isinstance(self.hops, int) or not 1 <= self.hops <= MAX_HOPS:
            raise OptionError(f"hops must be an integer in [1, {MAX_HOPS}], got {self.hops!r}",
                              hint="SGC uses 2-3 hops, SIGN up to 5")
        if self.norm not in NORMS:
            raise OptionError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not isinstance(self.self_loops, bool):
            raise OptionError(f"self_loops must be true or false, got {self.self_loops!r}")
        if self.dtype not in DTYPES:
            raise OptionError(f"propagation dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def key(self) -> str:
        """The derived group holding these hops: every K shares it (K=3 extends K=2)."""
        return f"propagate-{self.norm}-{'loops' if self.self_loops else 'noloops'}-{self.dtype}"

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "PropagationParams":
        if not isinstance(d, dict):
            raise OptionError(f"propagation params must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"hops", "norm", "self_loops", "dtype"})
        if unknown:
            raise OptionError(f"unknown propagation params {unknown}")
        return PropagationParams(**d)


@dataclass
class HopStats:
    """One computed hop. read_bytes: bytes of hop k-1 read (panels, repeated per block when the
    input does not fit the budget at once); wait_s: the compute waited on panel reads."""

    hop: int
    seconds: float
    blocks: int
    panels: int
    hub_slices: int
    edges: int
    read_bytes: int
    bytes_written: int
    wait_s: float
    compute_s: float
    write_s: float

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "HopStats":
        return HopStats(**d)


@dataclass
class PropagationResult:
    """What `propagate` did. arrays: store array names of hops 1..K (index k-1 = hop k)."""

    store: str
    key: str
    params: PropagationParams
    hops_computed: list[int]
    hops_reused: list[int]
    arrays: list[str]
    seconds: float
    seconds_per_hop: list[float]
    bytes_written: int
    memory_budget: int
    peak_rss_bytes: int
    peak_anon_bytes: int
    start_rss_bytes: int
    num_nodes: int
    num_edges: int
    feature_dim: int
    plan: dict = field(default_factory=dict)
    hop_stats: list[HopStats] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["params"] = self.params.to_json()
        d["hop_stats"] = [h.to_json() for h in self.hop_stats]
        return d

    @staticmethod
    def from_json(d: dict) -> "PropagationResult":
        d = dict(d)
        d["params"] = PropagationParams.from_json(d["params"])
        d["hop_stats"] = [HopStats.from_json(h) for h in d.get("hop_stats", [])]
        return PropagationResult(**d)
