"""Every method's P(like) per evaluation pair (and per retrieval round): what the report is computed from.

Stages of ``coral run`` write :class:`MethodScores` instead of finished metrics, so that the
report computes every number (AUC, the F1 threshold from the shared validation pairs, paired
differences, claims) the same way for every method, from scores on the same pairs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coral.errors import CoralError
from coral.io import atomic_write_bytes

SCORES_FILE = "scores.npz"


@dataclass(frozen=True)
class SplitScores:
    """One method's scores on pairs of one split."""

    rows: np.ndarray
    """(n,) row indices of the pairs in the dataset's split."""
    labels: np.ndarray
    """(n,) 0/1 labels of the pairs."""
    p: np.ndarray
    """(rounds + 1, n) P(like) after each retrieval round (round 0: no evidence); one row for methods without
    retrieval."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", np.asarray(self.rows, dtype=np.int64).ravel())
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64).ravel())
        object.__setattr__(self, "p", np.atleast_2d(np.asarray(self.p, dtype=np.float64)))
        if not (len(self.rows) == len(self.labels) == self.p.shape[1]):
            raise CoralError(
                f"scores of {len(self.rows)} rows, {len(self.labels)} labels and {self.p.shape[1]} columns of p"
            )

    @property
    def rounds(self) -> int:
        """K: the last round scored (0 for methods without retrieval)."""
        return self.p.shape[0] - 1

    def at(self, rows: np.ndarray) -> "SplitScores":
        """The scores of exactly ``rows`` (in that order); every row must have been scored.

        :param rows: row indices of the split.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(self.rows, kind="stable")
        found = np.searchsorted(self.rows[order], rows)
        found = np.minimum(found, len(order) - 1)
        positions = order[found]
        if len(rows) and (len(self.rows) == 0 or not np.array_equal(self.rows[positions], rows)):
            missing = np.setdiff1d(rows, self.rows)
            raise CoralError(f"{len(missing)} of the requested pairs were not scored (e.g. row {int(missing[0])})")
        return SplitScores(rows, self.labels[positions], self.p[:, positions])


@dataclass(frozen=True)
class MethodScores:
    """One method (with one scorer and seed) on the test and validation pairs it was evaluated on."""

    model: str
    """Row key: ``dfm``, ``mean``, ``llm-only@zero-shot``, ``coral-ppo-dfm@probe``, ..."""
    seed: int | None
    """The run seed of a seeded method; None when the result does not depend on the seed."""
    test: SplitScores
    """Test pairs (the shared subset, or the whole split for the CTR baselines and the reference)."""
    valid: SplitScores
    """Validation pairs (at least the shared subset)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Columns for the result rows: config, train_seconds, eval_seconds, evidence diversity, ..."""


def save_scores(path: Path, methods: Sequence[MethodScores]) -> None:
    """Write methods' scores into one ``.npz`` file, atomically.

    :param path: the file.
    :param methods: the scores.
    """
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for k, m in enumerate(methods):
        for split, scores in (("test", m.test), ("valid", m.valid)):
            arrays[f"{k}.{split}.rows"], arrays[f"{k}.{split}.labels"], arrays[f"{k}.{split}.p"] = (
                scores.rows,
                scores.labels,
                scores.p,
            )
        meta.append({"model": m.model, "seed": m.seed, "info": m.info})
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True, default=str))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_scores(path: Path) -> list[MethodScores]:
    """Read a file of :func:`save_scores` ([] when it does not exist)."""
    if not Path(path).exists():
        return []
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [
            MethodScores(
                entry["model"],
                entry["seed"],
                *(
                    SplitScores(data[f"{k}.{split}.rows"], data[f"{k}.{split}.labels"], data[f"{k}.{split}.p"])
                    for split in ("test", "valid")
                ),
                info=entry["info"],
            )
            for k, entry in enumerate(meta)
        ]
