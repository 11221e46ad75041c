"""The one place where every method's predictions become AUC / F1 / log loss.

CTR baselines, the LLM alone, CoRAL-random and CoRAL-PPO all report through :func:`binary_metrics`,
so that a table row means the same thing whatever produced it.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, log_loss, precision_recall_curve, roc_auc_score

from coral.errors import CoralError


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


def bootstrap_auc_ci(y_true: np.ndarray, y_score: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (resampling test pairs with replacement).

    Resamples that contain a single class are skipped. Returns (nan, nan) if none is usable.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yt = y_true[idx]
        if yt.min() == yt.max():
            continue
        aucs.append(roc_auc_score(yt, y_score[idx]))
    if not aucs:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))


def binary_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    valid_true: np.ndarray | None = None,
    valid_score: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """AUC with a bootstrap 95% interval, F1 at the validation-tuned threshold and at 0.5, log loss.

    :param y_true: test labels (0/1).
    :param y_score: test P(positive).
    :param valid_true: validation labels, for the F1 threshold (tuned on test scores' own
        labels never; when no validation is given the threshold is 0.5).
    :param valid_score: validation P(positive).
    :param n_boot: bootstrap resamples for the AUC interval (0 disables it).
    :param seed: bootstrap seed.
    :returns: auc, auc_ci_low, auc_ci_high, f1, f1_threshold, f1_at_05, logloss, n_test, positive_rate.
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
    lo, hi = (float("nan"), float("nan")) if one_class or n_boot <= 0 else bootstrap_auc_ci(y_true, y_score, n_boot, seed)
    threshold = 0.5
    if valid_true is not None and valid_score is not None and len(valid_true):
        threshold = best_f1_threshold(np.asarray(valid_true), np.asarray(valid_score))
    clipped = np.clip(y_score, 1e-7, 1 - 1e-7)
    return {
        "auc": auc,
        "auc_ci_low": lo,
        "auc_ci_high": hi,
        "f1": float(f1_score(y_true, y_score >= threshold, zero_division=0)),
        "f1_threshold": float(threshold),
        "f1_at_05": float(f1_score(y_true, y_score >= 0.5, zero_division=0)),
        "logloss": float(log_loss(y_true, clipped, labels=[0, 1])),
        "n_test": int(len(y_true)),
        "positive_rate": float(y_true.mean()),
    }
