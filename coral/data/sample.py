"""A seeded subset of a split that keeps both classes: quick checks, validation subsets, diagnostics."""

from __future__ import annotations

import numpy as np


def stratified_subset(labels: np.ndarray, size: int | None, rng: np.random.Generator | int = 0) -> np.ndarray:
    """Sorted row indices of ``size`` rows drawn so that both classes are kept (all rows when ``size`` is None, 0 or too big).

    Negatives fill up to half the subset (all of them when there are fewer), positives the rest:
    on the long-tail splits of Amazon data 2-3% of labels are negative, and the first N rows of a
    split often hold none, which leaves the AUC undefined. AUC does not depend on the class
    ratio, so this is no bias for it; the positive rate of the subset is not the split's.

    :param labels: the split's labels.
    :param size: the subset size.
    :param rng: a generator (its state advances) or a seed.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not size or size >= n:
        return np.arange(n)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
    k_neg = min(len(neg), size // 2)
    k_pos = min(len(pos), size - k_neg)
    return np.sort(np.concatenate([rng.choice(neg, k_neg, replace=False), rng.choice(pos, k_pos, replace=False)]))
