"""A seeded subset of a split that keeps both classes: quick checks, validation subsets, diagnostics,
and the shared evaluation pairs of ``coral run`` (:mod:`coral.pipeline.pairs`)."""

from __future__ import annotations

import numpy as np


def stratified_subset(
    labels: np.ndarray, size: int | None, rng: np.random.Generator | int = 0, proportional: bool = False
) -> np.ndarray:
    """Sorted row indices of ``size`` rows drawn so that both classes are kept (all rows when ``size`` is None, 0 or too
    big).

    Balanced (the default): negatives fill up to half the subset (all of them when there are
    fewer), positives the rest. On the long-tail splits of Amazon data 2-3% of labels are
    negative, and the first N rows of a split often hold none, which leaves the AUC undefined.
    AUC does not depend on the class ratio, so this is no bias for it; the positive rate of the
    subset is not the split's.

    Proportional: each class gets its share of the split (to the nearest row, at least one row of
    each class), so that F1, MCC and log loss on the subset estimate those of the whole split.

    :param labels: the split's labels.
    :param size: the subset size.
    :param rng: a generator (its state advances) or a seed.
    :param proportional: keep the split's class shares instead of balancing them.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not size or size >= n:
        return np.arange(n)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
    if proportional:
        k_neg = int(round(size * len(neg) / n))
        if len(neg) and len(pos):
            k_neg = min(max(k_neg, 1), size - 1)
    else:
        k_neg = size // 2
    k_neg = min(len(neg), k_neg)
    k_pos = min(len(pos), size - k_neg)
    return np.sort(np.concatenate([rng.choice(neg, k_neg, replace=False), rng.choice(pos, k_pos, replace=False)]))
