"""The deterministic policy's validation return during training, beside greedy retrieval's on the same rows.

Training logs the return of the episodes it samples (``rollout/ep_rew_mean``), which mixes the
policy's exploration noise into the curve and says nothing about the policy that is evaluated:
the deterministic one. So every ``val_every`` timesteps (and once before the first update) the
deterministic policy runs K rounds on a fixed, seeded subset of the validation split's ``tuning``
rows (:func:`coral.policies.evaluate.tuning_episodes`; never the threshold or early-stopping
rows), and greedy retrieval runs once on the same rows, so that the curve has its reference.
Each point is appended to ``<run>/validation.csv`` and recorded in SB3's log as ``coral/...``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from coral.envs import EnvResources
from coral.io import atomic_write_text
from coral.metrics import binary_metrics
from coral.policies.config import TrainConfig
from coral.policies.evaluate import EvaluationResult, evaluate_policy, mean_return, tuning_episodes
from coral.policies.greedy import GreedyPolicy

VALIDATION_FILE = "validation.csv"
#: The columns of ``validation.csv``.
VALIDATION_COLUMNS = (
    "timesteps", "val_return", "val_auc", "val_auc_round0", "val_mean_pieces", "greedy_return", "greedy_auc", "n",
)


def _summary(result: EvaluationResult) -> dict[str, float]:
    """Return, AUC after the last round and before the first, pieces per target."""
    both = len(np.unique(result.labels)) > 1

    def auc(p: np.ndarray) -> float:
        return float(binary_metrics(result.labels, p, n_boot=0)["auc"]) if both else float("nan")

    return {
        "return": mean_return(result), "auc": auc(result.p[-1]), "auc_round0": auc(result.p[0]),
        "mean_pieces": result.retrieval_statistics()["mean_pieces"],
    }


class ValidationLog:
    """Validates a training policy on fixed tuning rows and keeps the points in ``validation.csv``.

    :param config: the training run's config (``val_size`` rows, ``n_envs`` episodes at a time).
    :param resources: the loaded dataset, scorer, tables and prompt builder of the run.
    :param path: the CSV file (a run that starts at timestep 0 starts it afresh).
    """

    def __init__(self, config: TrainConfig, resources: EnvResources, path: Path) -> None:
        self.config = config
        self.resources = resources
        self.path = Path(path)
        self.env = config.env_config("valid")
        self._rows: np.ndarray | None = None
        self._greedy: dict[str, float] | None = None

    @property
    def rows(self) -> np.ndarray:
        """The validation rows (indices into the valid split), chosen once."""
        if self._rows is None:
            self._rows = tuning_episodes(self.resources.dataset, self.config.val_size)
        return self._rows

    def _evaluate(self, policy: Any) -> EvaluationResult:
        return evaluate_policy(
            policy, self.env, self.resources, split="valid", batch_size=self.config.n_envs, episodes=self.rows,
            progress=False,
        )

    def greedy(self) -> dict[str, float]:
        """Greedy retrieval's return and AUC on the same rows (evaluated once)."""
        if self._greedy is None:
            g = _summary(self._evaluate(GreedyPolicy()))
            self._greedy = {"greedy_return": g["return"], "greedy_auc": g["auc"]}
        return self._greedy

    def run(self, policy: Any, timesteps: int) -> dict[str, float]:
        """Validate ``policy`` (deterministic) now; returns the point, also appended to the CSV.

        :param policy: the policy as it acts in evaluation.
        :param timesteps: the training timesteps so far (0: a fresh run; the CSV starts over).
        """
        summary = _summary(self._evaluate(policy))
        point = {
            "val_return": summary["return"], "val_auc": summary["auc"], "val_auc_round0": summary["auc_round0"],
            "val_mean_pieces": summary["mean_pieces"], **self.greedy(),
        }
        rows = [] if timesteps == 0 else read_validation(self.path)
        rows.append({"timesteps": timesteps, **point, "n": len(self.rows)})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=VALIDATION_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buf.getvalue())
        return point


def read_validation(path: Path) -> list[dict[str, float]]:
    """The points of a ``validation.csv`` (none when there is no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


__all__ = ["VALIDATION_COLUMNS", "VALIDATION_FILE", "ValidationLog", "read_validation"]
