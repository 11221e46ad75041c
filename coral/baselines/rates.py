"""Base rates: how often a user likes what they rate, and how often an item is liked, from training interactions.

These counts are what the prompt option ``base_rates`` writes as numbers ("liked 45% of 120 rated
items") and what :class:`BaseRateModel`, the plain model given the same numbers, reads. A pair
that is itself a training interaction (an alignment target, an RL training episode) never sees its
own label: its row is left out of its user's and its item's counts (leave-one-out), so it sees the
kind of counts a validation or test pair sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coral.data.dataset import CoralDataset


@dataclass(frozen=True)
class LikeCounts:
    """Liked and rated counts of every user and item in a dataset's training split."""

    user_liked: np.ndarray
    """(n_users,) liked training interactions of each user."""
    user_rated: np.ndarray
    """(n_users,) training interactions of each user."""
    item_liked: np.ndarray
    """(n_items,) liked training interactions of each item."""
    item_rated: np.ndarray
    """(n_items,) training interactions of each item."""
    own_label: dict[tuple[int, int], int]
    """Label of each training (user, item) pair: what leave-one-out takes away."""

    @classmethod
    def of(cls, dataset: CoralDataset) -> "LikeCounts":
        """The counts of ``dataset``'s training split.

        :param dataset: the processed dataset.
        """
        train = dataset.train
        user, item, label = (np.asarray(a, dtype=np.int64) for a in (train.user, train.item, train.label))
        own = {(int(u), int(i)): int(y) for u, i, y in zip(user, item, label, strict=False)}
        return cls(
            np.bincount(user, label, minlength=dataset.n_users).astype(np.int64),
            np.bincount(user, minlength=dataset.n_users).astype(np.int64),
            np.bincount(item, label, minlength=dataset.n_items).astype(np.int64),
            np.bincount(item, minlength=dataset.n_items).astype(np.int64), own,
        )

    def pair(self, user: int, item: int) -> tuple[int, int, int, int]:
        """(user liked, user rated, item liked, item rated) for the pair, its own interaction left out."""
        own = self.own_label.get((int(user), int(item)))
        drop_liked, drop_rated = (own, 1) if own is not None else (0, 0)
        return (
            int(self.user_liked[user]) - drop_liked, int(self.user_rated[user]) - drop_rated,
            int(self.item_liked[item]) - drop_liked, int(self.item_rated[item]) - drop_rated,
        )

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n, 4) int array of :meth:`pair` for each (user, item)."""
        return np.array(
            [self.pair(int(u), int(i)) for u, i in zip(users, items, strict=False)], dtype=np.int64
        ).reshape(-1, 4)


def percent(liked: int, rated: int) -> int:
    """The liked share in whole percent, as the prompt writes it (0 when nothing was rated)."""
    return int(round(100 * liked / rated)) if rated else 0


def base_rate_features(counts: np.ndarray) -> np.ndarray:
    """The numbers the prompt shows, as model inputs: (user %, log(1 + user rated), item %, log(1 + item rated)),
    with an empty count as an unknown share (0.5) and its own indicator.

    :param counts: (n, 4) from :meth:`LikeCounts.pairs`.
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
    user_pct = np.array([percent(int(a), int(b)) for a, b in counts[:, :2]], dtype=np.float64) / 100
    item_pct = np.array([percent(int(a), int(b)) for a, b in counts[:, 2:]], dtype=np.float64) / 100
    user_none, item_none = counts[:, 1] == 0, counts[:, 3] == 0
    return np.column_stack([
        np.where(user_none, 0.5, user_pct), np.log1p(counts[:, 1]), user_none,
        np.where(item_none, 0.5, item_pct), np.log1p(counts[:, 3]), item_none,
    ])
