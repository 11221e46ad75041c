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


@dataclass(frozen=True)
class FoldConfig:
    """How the tail-item training interactions are shared out between warm start, alignment and RL episodes."""

    fold_shares: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    """Shares of tail-train in the warm_start, align and episodes folds (disjoint, stratified by label, seeded by split_seed); warm_start 0 = the warm start sees head interactions only."""

    def __post_init__(self) -> None:
        shares = tuple(float(s) for s in self.fold_shares)
        require(
            len(shares) == 3 and all(math.isfinite(s) and s >= 0 for s in shares) and abs(sum(shares) - 1.0) <= 1e-6,
            "fold_shares",
            f"must be three non-negative shares summing to 1, got {self.fold_shares}",
        )
        require(shares[2] > 0, "fold_shares", f"must give the episodes fold (the third share) a positive share, got {self.fold_shares}")
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
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


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


__all__ = ["FOLDS", "FoldConfig", "TailTrainFolds", "fold_interactions", "tail_train_folds", "warm_start_dataset"]
