"""The non-learned reference row: a user's mean training rating plus the item's mean training rating.

It shows what the learned models add over the two popularity-style biases every rating carries.
The score is the additive bias prediction of the rating,

    r(u, i) = m_u + m_i - mu,   m_x = (sum of x's training ratings + damping * mu) / (x's count + damping),

with mu the mean training rating (users or items without training ratings get mu). For log loss and
F1 the score is turned into P(like) by a logistic fit of the training labels on r computed
leave-one-out (each training row's own rating left out of its user's and item's means, so the fit
sees the same kind of score as a new pair). The logistic map is monotone: the AUC is that of r.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from coral.config import require
from coral.data.dataset import CoralDataset
from coral.errors import CoralError

#: The model name of the reference in result rows.
REFERENCE_NAME = "mean"


@dataclass(frozen=True)
class ReferenceConfig:
    """The reference's one setting."""

    damping: float = 3.0
    """Pseudo-ratings at the global mean added to every user's and item's mean (3: the best validation AUC of 0, 1, 2,
    3, 5, 10, 20 on movielens_small)."""

    def __post_init__(self) -> None:
        require(self.damping >= 0, "damping", f"must be >= 0, got {self.damping}")


def _sums_and_counts(ids: np.ndarray, ratings: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ratings, count) per id of ``n``: the parts of a damped mean, kept apart for the leave-one-out means."""
    return np.bincount(ids, ratings, minlength=n), np.bincount(ids, minlength=n).astype(np.float64)


@dataclass(frozen=True)
class MeanRatingReference:
    """A fitted reference: per-user and per-item damped mean ratings and the logistic map to P(like)."""

    user_mean: np.ndarray
    """(n_users,) damped mean training rating of each user."""
    item_mean: np.ndarray
    """(n_items,) damped mean training rating of each item."""
    global_mean: float
    """Mean training rating."""
    slope: float
    """Logistic slope of P(like) on the rating prediction."""
    intercept: float
    """Logistic intercept."""
    config: ReferenceConfig
    """The setting it was fitted with."""
    dataset_fingerprint: str
    """Fingerprint of the dataset it was fitted on."""
    train_seconds: float
    """Wall-clock seconds of the fit."""

    @classmethod
    def fit(cls, dataset: CoralDataset, config: ReferenceConfig = ReferenceConfig()) -> "MeanRatingReference":
        """Means of the training split's ratings, and the logistic map fitted on its labels.

        :param dataset: the processed dataset.
        :param config: the damping.
        """
        from sklearn.linear_model import LogisticRegression

        start = time.perf_counter()
        train = dataset.train
        if len(train) == 0:
            raise CoralError(f"dataset {dataset.name!r}: no training rows for the mean-rating reference")
        ratings = np.asarray(train.rating, dtype=np.float64)
        mu, k = float(ratings.mean()), config.damping
        user_sum, user_count = _sums_and_counts(train.user, ratings, dataset.n_users)
        item_sum, item_count = _sums_and_counts(train.item, ratings, dataset.n_items)

        def means(total: np.ndarray, count: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = (total + k * mu) / (count + k)
            return np.where(count + k > 0, out, mu)

        # Leave-one-out: each training row's own rating removed from its user's and item's sums.
        loo = (
            means(user_sum[train.user] - ratings, user_count[train.user] - 1)
            + means(item_sum[train.item] - ratings, item_count[train.item] - 1)
            - mu
        )
        labels = np.asarray(train.label, dtype=np.int64)
        if labels.min() == labels.max():
            slope, intercept = 0.0, float(np.log(max(labels.mean(), 1e-6) / max(1 - labels.mean(), 1e-6)))
        else:
            fit = LogisticRegression(C=1e6).fit(loo.reshape(-1, 1), labels)
            slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        return cls(
            means(user_sum, user_count), means(item_sum, item_count), mu, slope, intercept, config, dataset.fingerprint,
            time.perf_counter() - start,
        )

    def rating(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The additive rating prediction m_u + m_i - mu of each (user, item) pair."""
        return (
            self.user_mean[np.asarray(users, dtype=np.int64)]
            + self.item_mean[np.asarray(items, dtype=np.int64)]
            - self.global_mean
        )

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(like) of each (user, item) pair, float64.

        :param users: user indices.
        :param items: item indices, aligned with ``users``.
        """
        return 1.0 / (1.0 + np.exp(-(self.slope * self.rating(users, items) + self.intercept)))
