"""A run's metrics log (metrics.jsonl, one JSON record per logged step) and its loss curve."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

import numpy as np

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to `path`, flushed as they are written, so a crash loses none.

    `resumed_at` (the step of the checkpoint a run resumes from) first drops the records past
    it, which the interrupted run wrote after its last checkpoint: the log then has each step
    once, as the resumed run makes it.
    """

    def __init__(self, path: Path, resumed_at: int | None = None):
        self.path = Path(path)
        if resumed_at is not None and self.path.exists():
            keep = [
                line
                for line in self.path.read_text().splitlines()
                if _step_of(line, default=resumed_at + 1) <= resumed_at
            ]
            self.path.write_text("".join(line + "\n" for line in keep))
        self._file: IO[str] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self.path.open("a")
        # Non-finite values (a skipped step's loss) are written as null: JSON has no NaN.
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step_of(line: str, default: int) -> int:
    """The step of one log line; `default` for a line a crash left unfinished."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return default


def plot_loss_curve(metrics_file: Path, out_png: Path, ylabel: str = "velocity MSE") -> None:
    """loss.png: every logged loss and a running mean, on a log scale; skipped steps left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = []
    for line in Path(metrics_file).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line a crash left unfinished
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("loss"), (int, float))]
    if not records:
        return
    steps = np.array([r["step"] for r in records])
    losses = np.array([r["loss"] for r in records])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, alpha=0.35, label="loss")
    if len(losses) >= 10:
        k = max(5, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_png)
