"""The one place where every method's predictions become AUC / F1 / MCC / log loss.

CTR baselines, the LLM alone, CoRAL-random and CoRAL-PPO all report through :func:`binary_metrics`,
so that a table row means the same thing whatever produced it.

One threshold rule for every method: the threshold that maximises F1 on the validation pairs the
caller passes (the same validation pairs for every method), never on test labels; F1, MCC and
balanced accuracy are all read at that threshold. On data where most pairs are positive, F1 is
close to the F1 of answering "yes" to everything (``f1_all_yes``, printed as the reference); MCC
and balanced accuracy react to the negative class and are 0 and 0.5 for that trivial answer.
Comparisons between methods on the same pairs live in :mod:`coral.stats`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_recall_curve,
    roc_auc_score,
)

from coral.errors import CoralError
from coral.stats import bootstrap_aucs, percentile_interval


def best_f1_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The score threshold that maximises F1 (predict positive when score >= threshold).

    :param y_true: binary labels.
    :param y_score: predicted probabilities.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y_true.min() == y_true.max():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, y_score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def bootstrap_auc_ci(
    y_true: np.ndarray, y_score: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (resampling test pairs with replacement).

    Rank-based (:func:`coral.stats.bootstrap_aucs`). Resamples that contain a single class are
    skipped. Returns (nan, nan) if none is usable.
    """
    return percentile_interval(bootstrap_aucs(y_true, y_score, n_boot, seed)[:, 0], level)


def f1_all_yes(y_true: np.ndarray) -> float:
    """F1 of answering "yes" for every pair (precision = positive rate, recall = 1): the reference
    that an informative F1 must beat.

    :param y_true: binary labels.
    """
    rate = float(np.mean(np.asarray(y_true) == 1)) if len(y_true) else 0.0
    return 2 * rate / (1 + rate) if rate > 0 else 0.0


def binary_metrics(
    y_true: np.ndarray, y_score: np.ndarray, valid_true: np.ndarray | None = None,
    valid_score: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
) -> dict[str, float]:
    """AUC with a bootstrap 95% interval; F1, MCC and balanced accuracy at the validation-tuned
    threshold; F1 at 0.5, the all-"yes" F1, log loss.

    :param y_true: test labels (0/1).
    :param y_score: test P(positive).
    :param valid_true: validation labels, for the threshold (never tuned on the test labels; when
        no validation is given the threshold is 0.5). Pass the same validation pairs for every
        method that shares a table.
    :param valid_score: validation P(positive).
    :param n_boot: bootstrap resamples for the AUC interval (0 disables it).
    :param seed: bootstrap seed.
    :returns: auc, auc_ci_low, auc_ci_high, f1, f1_threshold, f1_at_05, logloss, n_test,
        positive_rate, mcc, balanced_accuracy, f1_all_yes (mcc and balanced_accuracy are nan on a
        single-class split).
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if len(y_true) == 0:
        raise CoralError("cannot compute metrics on an empty split")
    if len(y_true) != len(y_score):
        raise CoralError(f"{len(y_true)} labels but {len(y_score)} scores")
    if not np.all(np.isfinite(y_score)):
        raise CoralError("scores contain NaN or infinity")
    one_class = y_true.min() == y_true.max()
    auc = float("nan") if one_class else float(roc_auc_score(y_true, y_score))
    lo, hi = (
        (float("nan"), float("nan")) if one_class or n_boot <= 0 else bootstrap_auc_ci(y_true, y_score, n_boot, seed)
    )
    threshold = 0.5
    if valid_true is not None and valid_score is not None and len(valid_true):
        if len(valid_true) != len(valid_score):
            raise CoralError(f"{len(valid_true)} validation labels but {len(valid_score)} validation scores")
        threshold = best_f1_threshold(np.asarray(valid_true), np.asarray(valid_score))
    clipped = np.clip(y_score, 1e-7, 1 - 1e-7)
    predicted = y_score >= threshold
    return {
        "auc": auc, "auc_ci_low": lo, "auc_ci_high": hi, "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "f1_threshold": float(threshold), "f1_at_05": float(f1_score(y_true, y_score >= 0.5, zero_division=0)),
        "logloss": float(log_loss(y_true, clipped, labels=[0, 1])), "n_test": int(len(y_true)),
        "positive_rate": float(y_true.mean()),
        "mcc": float("nan") if one_class else float(matthews_corrcoef(y_true, predicted)),
        "balanced_accuracy": float("nan") if one_class else float(balanced_accuracy_score(y_true, predicted)),
        "f1_all_yes": f1_all_yes(y_true),
    }
