"""The shared evaluation pairs: one fixed, seeded, stratified subset of test and of validation.

Every LLM and CoRAL method of a run is scored on the same test pairs, so that any two of them can
be compared pair by pair (``coral.stats``: paired bootstrap, DeLong); every method, the CTR
baselines included, tunes its F1 threshold on the same validation pairs. The subsets keep the
split's class ratio (proportional stratification), so F1 and MCC on them estimate those of the
whole split, and the AUC has as many negatives as the size allows.

Why a subset at all: the LLM is the run's time budget (every retrieval round of every method
scores every pair); the size is the smallest that gives paired intervals of the wanted width
(``RunConfig.eval_pairs``; derivation in experiments/notes/benchmark.md).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coral.data.dataset import CoralDataset
from coral.data.folds import validation_roles
from coral.data.sample import stratified_subset
from coral.io import atomic_write_text


@dataclass(frozen=True)
class SharedPairs:
    """The evaluation pairs of one data split: row indices into its test and validation splits."""

    test: np.ndarray
    """Sorted row indices of the shared test pairs."""
    valid: np.ndarray
    """Sorted row indices of the shared validation pairs (the F1 threshold of every method), drawn
    from the validation split's ``threshold`` role only (:func:`coral.data.folds.validation_roles`)."""
    seed: int
    """Seed of the draw."""

    @classmethod
    def draw(cls, dataset: CoralDataset, test_size: int, valid_size: int, seed: int) -> "SharedPairs":
        """The shared pairs of ``dataset``.

        :param dataset: the processed dataset (its split decides the rows).
        :param test_size: test pairs (0: the whole test split).
        :param valid_size: validation pairs (0: the whole ``threshold`` role of the validation split).
        :param seed: seed of both draws.
        """
        pool = validation_roles(dataset).threshold
        return cls(
            stratified_subset(dataset.test.label, test_size, seed, proportional=True),
            pool[stratified_subset(dataset.valid.label[pool], valid_size, seed + 1, proportional=True)],
            seed,
        )

    @property
    def fingerprint(self) -> str:
        """A short hash of the pairs: stages evaluated on them record it in their identity."""
        digest = hashlib.sha256()
        for rows in (self.test, self.valid):
            digest.update(np.asarray(rows, dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()[:12]

    def write(self, path: Path, dataset: CoralDataset) -> None:
        """The pairs as CSV (split, row, user, item, label; users and items by the dataset's own ids)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["split", "row", "user", "item", "label"])
        for name, rows in (("test", self.test), ("valid", self.valid)):
            split = dataset.split(name)
            for row in rows:
                writer.writerow(
                    [
                        name, int(row), dataset.user_ids[int(split.user[row])], dataset.item_ids[int(split.item[row])],
                        int(split.label[row]),
                    ]
                )
        atomic_write_text(path, buf.getvalue())
