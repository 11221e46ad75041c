"""``training_curves.png``: training return and the deterministic policy's validation return, with a band over seeds.

For each method (a group of ``coral train`` run directories, one per seed) the left panel draws
the return of the episodes training sampled (SB3's ``rollout/ep_rew_mean``, from every log
segment's ``progress.csv``) and the right panel the deterministic policy's validation return on
the tuning rows (``validation.csv``, :mod:`coral.policies.validation`) with greedy retrieval's on
the same rows as a dashed line: the mean over seeds, and the band between the lowest and the
highest seed. Runs without validation points leave the right panel empty for their method.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from coral.io import atomic_write_bytes
from coral.policies.validation import VALIDATION_FILE, read_validation


def _progress_column(run: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, ``key``) of every row of a run's SB3 logs that has both, over all its log
    segments in order (a resumed run continues in a new segment)."""
    paths = sorted(Path(run).glob("logs/segment*/progress.csv"), key=lambda p: int(p.parent.name[len("segment"):]))
    xs, ys = [], []
    for path in paths:
        with open(path, newline="") as f:
            for record in csv.DictReader(f):
                x, y = _float(record.get("time/total_timesteps")), _float(record.get(key))
                if not (math.isnan(x) or math.isnan(y)):
                    xs.append(x)
                    ys.append(y)
    return np.asarray(xs), np.asarray(ys)


def training_returns(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, ``rollout/ep_rew_mean``) of a run, over all its log segments in order."""
    return _progress_column(run, "rollout/ep_rew_mean")


@dataclass(frozen=True)
class TrainingSummary:
    """What one training run's logs say about learning (the report's training section)."""

    updates: int
    """Policy updates that logged an ``approx_kl``: SB3 writes an update's statistics with the next
    rollout, so all but the last (0 for DDPG, which has none)."""
    median_approx_kl: float
    """Median of SB3's ``train/approx_kl`` over those updates (nan without any)."""
    val_first: float
    """The deterministic policy's validation return at the first check (before the first update)."""
    val_last: float
    """... at the last check."""
    greedy_return: float
    """Greedy retrieval's return on the same tuning rows."""
    val_checks: int
    """Validation checks (0: the run did not validate; the returns are nan)."""
    val_rows: int
    """Tuning rows of each check."""

    @property
    def rose(self) -> bool:
        """The validation return rose from the first check to the last."""
        return self.val_checks >= 2 and self.val_last > self.val_first


def training_summary(run: Path) -> TrainingSummary:
    """Median ``approx_kl`` over the updates and the validation return's first and last points of a run.

    :param run: a ``coral train`` run directory (``logs/segment*/progress.csv``, ``validation.csv``).
    """
    _, kl = _progress_column(run, "train/approx_kl")
    points = read_validation(Path(run) / VALIDATION_FILE)
    nan = float("nan")
    return TrainingSummary(
        updates=len(kl),
        median_approx_kl=float(np.median(kl)) if len(kl) else nan,
        val_first=points[0]["val_return"] if points else nan,
        val_last=points[-1]["val_return"] if points else nan,
        greedy_return=points[-1]["greedy_return"] if points else nan,
        val_checks=len(points),
        val_rows=int(points[-1]["n"]) if points else 0,
    )


def validation_returns(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timesteps, deterministic validation return, greedy's return) of a run's ``validation.csv``."""
    points = read_validation(Path(run) / VALIDATION_FILE)
    return tuple(np.asarray([p[k] for p in points]) for k in ("timesteps", "val_return", "greedy_return"))  # type: ignore[return-value]


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def _band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Mean, min and max over seeds on a common grid of timesteps (each curve interpolated, within its own range)."""
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        return None
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= max(x.min() for x, _ in curves)) & (grid <= min(x.max() for x, _ in curves))]
    if len(grid) == 0:
        return None
    values = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def plot_training_curves(runs: Mapping[str, Sequence[Path]], path: Path, title: str = "") -> None:
    """Write the two-panel figure for ``runs`` (method label -> its run directories, one per seed).

    :param runs: the run directories of each method.
    :param path: the PNG file (written atomically).
    :param title: the figure's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, directories in sorted(runs.items()):
        seeds = f" ({len(directories)} seed{'s' if len(directories) != 1 else ''})"
        band = _band([training_returns(d) for d in directories])
        if band is not None:
            grid, mean, low, high = band
            line = left.plot(grid, mean, label=label + seeds)[0]
            left.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
        validation = [validation_returns(d) for d in directories]
        band = _band([(x, y) for x, y, _ in validation])
        if band is not None:
            grid, mean, low, high = band
            line = right.plot(grid, mean, marker="o", label=label + seeds)[0]
            right.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
            greedy = _band([(x, g) for x, _, g in validation])
            if greedy is not None:
                right.plot(
                    greedy[0], greedy[1], linestyle="--", color=line.get_color(), alpha=0.8,
                    label=f"greedy on the same rows ({label})",
                )
    left.set_title("training: sampled episodes' return")
    right.set_title("deterministic policy, validation (tuning rows)")
    for ax in (left, right):
        ax.set_xlabel("timesteps")
        ax.set_ylabel("return |p0 - y| - |pK - y|")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title or "Retrieval policy training (mean over seeds, band: min to max)")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


__all__ = ["TrainingSummary", "plot_training_curves", "training_returns", "training_summary", "validation_returns"]
