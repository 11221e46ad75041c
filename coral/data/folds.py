"""Disjoint folds of the tail-item training interactions, so that no label reaches RL through the state.

Three consumers learn from tail-train labels: the CF warm start (its embeddings are the policy's
state and the evidence index's metric), the scorer's alignment (its targets) and the RL
training episodes (their targets). If one set of pairs fed all three, a training episode's
target would be a pair whose label the warm start or the aligned scorer had memorised, and the
policy would learn from rewards it can never get on test pairs. So tail-train is divided into
three disjoint, seeded folds:

- ``warm_start``: the CF warm start is fitted on the head interactions plus this fold;
- ``align``: the targets of the scorer's alignment;
- ``episodes``: the targets of RL training episodes.

The validation split is cut the same way into three disjoint roles (:func:`validation_roles`):
``threshold`` (the pool of ``coral run``'s shared validation pairs, every method's F1 threshold),
``stop`` (the alignment's early-stopping slice) and ``tuning`` (design choices and ablations), so
that a design chosen on validation rows has not also picked the thresholds or stopped a training.

Evidence is not affected: it still comes from the whole training split, through the leakage
guard (never the target, never a validation/test interaction). The folds are stratified by
label (each fold keeps the tail-train positive rate) and seeded by the data section's
``split_seed``, so a dataset has one fold assignment however many processes ask for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from coral.config import require
from coral.data.dataset import CoralDataset, Interactions

#: The folds of tail-train, in the order of :attr:`FoldConfig.fold_shares`.
FOLDS = ("warm_start", "align", "episodes")
# Mixed into the split seed, so that the fold permutation is not the split's own permutation.
_FOLD_STREAM = 0xF01D
#: The disjoint parts of the validation split, each with one use (:func:`validation_roles`).
VALIDATION_ROLES = ("threshold", "stop", "tuning")
#: Their shares of the validation split.
VALIDATION_SHARES = (0.25, 0.25, 0.5)
_ROLE_STREAM = 0x7A11


@dataclass(frozen=True)
class FoldConfig:
    """How the tail-item training interactions are shared out between warm start, alignment and RL episodes."""

    fold_shares: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    """Shares of tail-train in the warm_start, align and episodes folds (disjoint, stratified by label, seeded by
    split_seed); warm_start 0 = the warm start sees head interactions only."""

    def __post_init__(self) -> None:
        shares = tuple(float(s) for s in self.fold_shares)
        require(
            len(shares) == 3 and all(math.isfinite(s) and s >= 0 for s in shares) and abs(sum(shares) - 1.0) <= 1e-6,
            "fold_shares",
            f"must be three non-negative shares summing to 1, got {self.fold_shares}",
        )
        require(
            shares[2] > 0,
            "fold_shares",
            f"must give the episodes fold (the third share) a positive share, got {self.fold_shares}",
        )
        object.__setattr__(self, "fold_shares", shares)


@dataclass(frozen=True)
class TailTrainFolds:
    """Row indices into ``dataset.tail_train`` of each fold (sorted, disjoint, together all of tail-train)."""

    warm_start: np.ndarray
    """Rows the warm start is fitted on (with every head interaction)."""
    align: np.ndarray
    """Rows whose pairs are the alignment's targets."""
    episodes: np.ndarray
    """Rows whose pairs are the RL training episodes' targets."""

    def rows(self, fold: str) -> np.ndarray:
        """The row indices of ``fold`` (one of :data:`FOLDS`)."""
        if fold not in FOLDS:
            raise ValueError(f"unknown fold {fold!r}; expected one of {', '.join(FOLDS)}")
        return getattr(self, fold)


def _cut(rows: np.ndarray, shares: tuple[float, ...]) -> list[np.ndarray]:
    """``rows`` cut into consecutive parts of the given shares (rounded so that the parts add up)."""
    bounds = np.round(np.cumsum((0.0,) + shares) * len(rows)).astype(np.int64)
    bounds[-1] = len(rows)
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]


def _cut_each_nonempty(rows: np.ndarray, shares: tuple[float, ...]) -> list[np.ndarray]:
    """:func:`_cut`, except that every part gets at least one row when there are enough rows: a
    class with a handful of rows (the few negatives of an Amazon tail split) then reaches every
    part, so that no role holds a single class only because of rounding."""
    sizes = np.diff(np.round(np.cumsum((0.0,) + shares) * len(rows)).astype(np.int64))
    sizes[-1] = len(rows) - sizes[:-1].sum()
    if len(rows) >= len(shares):
        for k in np.flatnonzero(sizes == 0):
            sizes[np.argmax(sizes)] -= 1
            sizes[k] = 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]


def tail_train_folds(dataset: CoralDataset, config: FoldConfig = FoldConfig()) -> TailTrainFolds:
    """The three folds of ``dataset``'s tail-item training interactions.

    :param dataset: the processed dataset (its ``split_seed`` seeds the folds).
    :param config: the shares.
    """
    labels = np.asarray(dataset.tail_train.label)
    rng = np.random.default_rng([int(dataset.config.split_seed), _FOLD_STREAM])
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == label))
        for k, part in enumerate(_cut(rows, config.fold_shares)):
            parts[k].append(part)
    warm, align, episodes = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return TailTrainFolds(warm_start=warm, align=align, episodes=episodes)


def fold_interactions(dataset: CoralDataset, fold: str, config: FoldConfig = FoldConfig()) -> Interactions:
    """The tail-train interactions of one fold (``warm_start``, ``align`` or ``episodes``)."""
    return dataset.tail_train.take(tail_train_folds(dataset, config).rows(fold))


def warm_start_dataset(dataset: CoralDataset, config: FoldConfig = FoldConfig()) -> CoralDataset:
    """``dataset`` as the warm start may see it: its training split cut down to the head
    interactions plus the ``warm_start`` fold (validation and test unchanged).

    The copy has its own fingerprint (the source's, the shares and the split seed), so that
    caches keyed by fingerprints (the warm-start embeddings) never mix a fold-fitted model with
    one fitted on the whole training split.

    :param dataset: the processed dataset.
    :param config: the shares.
    """
    train = dataset.train
    head = train.take(dataset.is_head[train.item])
    fold = fold_interactions(dataset, "warm_start", config)
    tag = f"{dataset.source_hash}|warm_start fold {config.fold_shares} seed {dataset.config.split_seed}"
    return dataclasses.replace(
        dataset,
        train=Interactions.concat([head, fold]),
        source_hash=hashlib.sha256(tag.encode()).hexdigest()[:16],
    )


@dataclass(frozen=True)
class ValidationRoles:
    """Row indices into ``dataset.valid`` of each use of the validation split (sorted, disjoint, together all of it).

    Three things read validation labels, and none may see another's rows: the F1 thresholds of
    the reported tables, the alignment's early stopping, and design choices (prompt format,
    alignment recipe, policy settings, ablations). Choosing a design on the rows that also pick
    the thresholds or stop the training would let the choice fit them; test pairs make only the
    final tables (experiments/notes/benchmark.md, "Tuning never sees test pairs").
    """

    threshold: np.ndarray
    """The pool of ``coral run``'s shared validation pairs: every method's F1 threshold."""
    stop: np.ndarray
    """The pool of the alignment's early-stopping slice."""
    tuning: np.ndarray
    """Rows for design choices: ablations and policy settings are compared here, never on test pairs."""

    def rows(self, role: str) -> np.ndarray:
        """The row indices of ``role`` (one of :data:`VALIDATION_ROLES`)."""
        if role not in VALIDATION_ROLES:
            raise ValueError(f"unknown validation role {role!r}; expected one of {', '.join(VALIDATION_ROLES)}")
        return getattr(self, role)


def validation_roles(dataset: CoralDataset) -> ValidationRoles:
    """The validation split of ``dataset`` cut into its three uses (:data:`VALIDATION_SHARES`),
    stratified by label and seeded by the data section's ``split_seed``.

    :param dataset: the processed dataset.
    """
    labels = np.asarray(dataset.valid.label)
    rng = np.random.default_rng([int(dataset.config.split_seed), _ROLE_STREAM])
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == label))
        for k, part in enumerate(_cut_each_nonempty(rows, VALIDATION_SHARES)):
            parts[k].append(part)
    threshold, stop, tuning = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return ValidationRoles(threshold=threshold, stop=stop, tuning=tuning)


__all__ = [
    "FOLDS", "VALIDATION_ROLES", "FoldConfig", "TailTrainFolds", "ValidationRoles",
    "fold_interactions", "tail_train_folds", "validation_roles", "warm_start_dataset",
]
