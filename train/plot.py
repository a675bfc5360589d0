"""`--plot`: the learning curve of a run (loss and per-split metrics per epoch) as a PNG."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def plot_curve(metrics_path: Path, out: Path) -> bool:
    """Draw metrics.jsonl into `out`; False (logged, not an error) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("--plot needs matplotlib (pip install 'gstore[plot]'); no curve written")
        return False
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in records]
    ax_loss.plot(epochs, [r["loss"] for r in records], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="loss")
    for split in ("train", "val", "test"):
        pts = [(r["epoch"], r[split]["accuracy"]) for r in records if split in r]
        if pts:
            ax_metric.plot(*zip(*pts), marker="o", label=split)
    ax_metric.set(xlabel="epoch", ylabel="accuracy", title="accuracy (sampled evaluation)")
    ax_metric.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return True
