"""AUC statistics: DeLong's test, the paired pair-bootstrap, pooling over seeds, the two-level bootstrap, verdicts.

Everything here compares methods **on the same evaluation pairs**. Two scorers evaluated on the
same pairs make correlated errors, so their AUC difference is far better determined than two
separate intervals suggest; the paired bootstrap and DeLong's test use that correlation.

Bootstrap AUCs are computed from ranks, not by calling ``roc_auc_score`` once per resample. A
resample with replacement is a vector of multiplicities (how often each pair was drawn); the AUC of
the resampled arrays is then the weighted Mann-Whitney statistic

    AUC = sum_{i pos, j neg} w_i w_j ([s_i > s_j] + 0.5 [s_i = s_j]) / (W_pos W_neg),

which, with each method's negatives sorted once, is read off the cumulative negative weights at
every positive's score. It equals ``roc_auc_score(y[idx], s[idx])`` exactly, ties included.

Intervals across seeds (:func:`pooled_auc`, :func:`pooled_auc_difference`): the bootstrap over
pairs pooled across seeds. Each replicate resamples the pairs of every seed (one RNG stream, seed
after seed; both methods of a difference share the draws; seeds evaluated on the very same pairs
share one resample, ``shared_pairs=True``) and averages the per-seed AUCs (or differences). It is
the uncertainty of the seed mean due to the finite evaluation pairs, *given* the trained models of
those seeds. The seed-to-seed spread (training randomness) is reported beside it as the sample
standard deviation (ddof=1), and the t-interval over the seed values is returned too; with three
seeds that interval is wide (t = 4.30). The **two-level bootstrap**
(:func:`two_level_auc_difference`: resample seeds, then pairs within each drawn seed) holds both
sources of uncertainty; the claims' verdicts of a multi-seed run use it, with the pooled pair
interval and the t-interval shown beside it.

Verdicts (:func:`interval_verdict`, :func:`interval_verdicts`) read only an interval: "a beats b" is
supported when the interval of AUC(a) - AUC(b) lies above 0, not supported when its upper end is
below a margin, undecided otherwise; the same rule read from b's side says whether a is worse.
The claims themselves (which methods, which texts) are the pipeline's (:mod:`coral.pipeline.claims`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from coral.errors import CoralError

#: Bootstrap resamples are processed in chunks of about this many (resample, pair) cells.
_CHUNK_CELLS = 2_000_000


# ---------------------------------------------------------------------------------------------
# input checks


def _labels_and_scores(y: np.ndarray, scores: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels as bool (n,) and scores as float64 (k, n), checked; one class is an error."""
    labels = np.asarray(y).ravel()
    if labels.size == 0:
        raise CoralError("cannot compute an AUC on zero pairs")
    if not np.all(np.isin(labels, (0, 1))):
        raise CoralError("labels must be 0 or 1")
    matrix = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if matrix.ndim != 2 or matrix.shape[1] != labels.size:
        raise CoralError(f"{labels.size} labels but scores of shape {np.shape(scores)}")
    if not np.all(np.isfinite(matrix)):
        raise CoralError("scores contain NaN or infinity")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise CoralError(f"the AUC needs both classes; all {labels.size} labels are {int(labels[0])}")
    return labels, matrix


def _stack(*scores: np.ndarray) -> np.ndarray:
    """Score vectors of methods on the same pairs as one float64 (k, n) matrix; lengths must agree."""
    rows = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    if len({row.size for row in rows}) > 1:
        raise CoralError(
            f"methods compared on the same pairs need equally many scores, got {[row.size for row in rows]}"
        )
    return np.stack(rows)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise CoralError(f"confidence level must lie in (0, 1), not {level}")


# ---------------------------------------------------------------------------------------------
# DeLong


@dataclass(frozen=True)
class DeLongResult:
    """DeLong et al. (1988) comparison of two correlated AUCs (fast algorithm of Sun & Xu 2014)."""

    auc_a: float
    """AUC of the first scorer."""
    auc_b: float
    """AUC of the second scorer."""
    var_a: float
    """DeLong variance of ``auc_a``."""
    var_b: float
    """DeLong variance of ``auc_b``."""
    cov_ab: float
    """DeLong covariance of the two AUCs."""
    z: float
    """(auc_a - auc_b) / sd of the difference; 0 when both are identical."""
    p_value: float
    """Two-sided p-value of H0: equal AUCs."""

    @property
    def diff(self) -> float:
        """auc_a - auc_b."""
        return self.auc_a - self.auc_b

    @property
    def diff_sd(self) -> float:
        """Standard deviation of the difference."""
        return math.sqrt(max(self.var_a + self.var_b - 2 * self.cov_ab, 0.0))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-theory interval of the difference, diff ± z_(1+level)/2 · sd.

        :param level: confidence level.
        """
        _check_level(level)
        half = sps.norm.ppf(0.5 + level / 2) * self.diff_sd
        return float(self.diff - half), float(self.diff + half)


def _delong_components(labels: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k), from midranks (Sun & Xu 2014).

    :param labels: (n,) bool, both classes present.
    :param matrix: (k, n) scores.
    """
    pos, neg = matrix[:, labels], matrix[:, ~labels]
    m, n = pos.shape[1], neg.shape[1]
    ranks_all = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    ranks_pos = sps.rankdata(pos, axis=1)
    ranks_neg = sps.rankdata(neg, axis=1)
    aucs = ranks_all[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    # Placement values: for a positive, the share of negatives it beats; for a negative, the share
    # of positives that beat it (ties count one half).
    v_pos = (ranks_all[:, :m] - ranks_pos) / n
    v_neg = 1 - (ranks_all[:, m:] - ranks_neg) / m
    s_pos = np.atleast_2d(np.cov(v_pos)) if m > 1 else np.zeros((len(matrix), len(matrix)))
    s_neg = np.atleast_2d(np.cov(v_neg)) if n > 1 else np.zeros((len(matrix), len(matrix)))
    return aucs, s_pos / m + s_neg / n


def delong_variance(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """The AUC of one scorer and its DeLong variance.

    :param y: (n,) 0/1 labels, both classes present.
    :param score: (n,) scores (higher = more likely positive).
    :returns: (auc, variance).
    """
    labels, matrix = _labels_and_scores(y, score)
    aucs, cov = _delong_components(labels, matrix)
    return float(aucs[0]), float(cov[0, 0])


def delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> DeLongResult:
    """DeLong's test of two correlated AUCs on the same pairs: AUCs, covariance, z, two-sided p.

    :param y: (n,) 0/1 labels, both classes present.
    :param score_a: (n,) scores of the first method.
    :param score_b: (n,) scores of the second method, on the same pairs.
    """
    labels, matrix = _labels_and_scores(y, _stack(score_a, score_b))
    aucs, cov = _delong_components(labels, matrix)
    diff = aucs[0] - aucs[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var <= 1e-15 * max(cov[0, 0] + cov[1, 1], 1e-300):
        # Identical rankings give diff 0 and variance 0: no evidence of a difference.
        z = 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)
    else:
        z = float(diff / math.sqrt(var))
    p = 1.0 if z == 0 else float(2 * sps.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]), z, p)


# ---------------------------------------------------------------------------------------------
# rank-based bootstrap


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> float:
    """AUC of pairs repeated ``weights`` times (ties count one half): the AUC of a bootstrap resample.

    :param y: (n,) 0/1 labels.
    :param score: (n,) scores.
    :param weights: (n,) non-negative multiplicities (bootstrap counts).
    :returns: the AUC, or nan when the weighted pairs hold a single class.
    """
    labels, matrix = _labels_and_scores(y, score)
    counts = np.asarray(weights).reshape(1, -1)
    if counts.shape[1] != labels.size or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise CoralError(f"weights must be {labels.size} non-negative whole numbers")
    return float(_resample_aucs([_RankedScorer.of(labels, matrix[0])], counts.astype(np.int32))[0, 0])


@dataclass(frozen=True)
class _RankedScorer:
    """One scorer's pairs prepared for the weighted Mann-Whitney count of many resamples.

    Negatives are sorted by score; each positive knows how many negatives score strictly below it
    and how many score at most its score. A resample's count of (positive, negative) orderings is
    then sum_i w_i (C[below_i] + C[at_most_i]) / 2, with C the cumulative negative weights.
    """

    positives: np.ndarray
    """Indices of the positive pairs."""
    negatives_sorted: np.ndarray
    """Indices of the negative pairs, by ascending score."""
    below: np.ndarray
    """For each positive, the number of negatives scoring strictly lower."""
    at_most: np.ndarray | None
    """For each positive, the number of negatives scoring lower or equal; None when no positive ties a negative."""

    @classmethod
    def of(cls, labels: np.ndarray, score: np.ndarray) -> _RankedScorer:
        positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
        order = np.argsort(score[negatives], kind="stable")
        neg_scores = score[negatives][order]
        below = np.searchsorted(neg_scores, score[positives], side="left")
        at_most = np.searchsorted(neg_scores, score[positives], side="right")
        return cls(positives, negatives[order], below, None if np.array_equal(below, at_most) else at_most)

    def twice_mann_whitney(self, counts: np.ndarray, positive_counts: np.ndarray) -> np.ndarray:
        """2 x the weighted count of correctly ordered pairs (ties one half), per row of ``counts``.

        :param counts: (c, n) resample multiplicities of all pairs.
        :param positive_counts: ``counts[:, positives]`` as float64 (shared by every scorer).
        """
        cumulative = np.zeros((len(counts), len(self.negatives_sorted) + 1), dtype=np.int32)
        np.cumsum(counts[:, self.negatives_sorted], axis=1, out=cumulative[:, 1:])
        lower = cumulative[:, self.below]
        upper = lower if self.at_most is None else cumulative[:, self.at_most]
        # Integer-valued, exact in float64 below 2**53.
        return np.einsum("ij,ij->i", positive_counts, lower + upper, dtype=np.float64)


def _resample_aucs(scorers: Sequence[_RankedScorer], counts: np.ndarray) -> np.ndarray:
    """(c, k) AUCs of each scorer on each resample (row of ``counts``); nan rows for one class."""
    positive_counts = counts[:, scorers[0].positives].astype(np.float64)
    n_pos = positive_counts.sum(axis=1)
    n_neg = counts.sum(axis=1) - n_pos
    out = np.stack([s.twice_mann_whitney(counts, positive_counts) for s in scorers], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= (2 * n_pos * n_neg)[:, None]
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Multiplicities of ``n_boot`` resamples of ``n`` pairs with replacement, in chunks of rows.

    :param n: pairs per resample.
    :param n_boot: resamples in all.
    :param rng: the random stream (advanced).
    :returns: arrays of shape (c, n), int32, each row summing to n.
    """
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        c = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(c, n))
        idx += (np.arange(c) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=c * n).reshape(c, n).astype(np.int32)
        done += c


def bootstrap_aucs(
    y: np.ndarray, scores: np.ndarray | Sequence[np.ndarray], n_boot: int = 2000, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """AUCs of every scorer on the same ``n_boot`` resamples of the pairs (the paired bootstrap).

    :param y: (n,) 0/1 labels, both classes present.
    :param scores: (n,) or (k, n) scores; all scorers see the same resampled pair indices.
    :param n_boot: number of resamples.
    :param seed: seed or generator of the resampling stream.
    :returns: (n_boot, k) AUCs; rows of resamples holding a single class are nan (in every column).
    """
    if n_boot < 1:
        raise CoralError(f"n_boot must be at least 1, not {n_boot}")
    labels, matrix = _labels_and_scores(y, scores)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scorers = [_RankedScorer.of(labels, row) for row in matrix]
    return np.concatenate([_resample_aucs(scorers, counts) for counts in bootstrap_counts(len(labels), n_boot, rng)])


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring nan (skipped) ones.

    :param samples: (B,) replicates.
    :param level: confidence level.
    :returns: (low, high), or (nan, nan) when no replicate is usable.
    """
    _check_level(level)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def format_interval(estimate: float, low: float, high: float) -> str:
    """``+1.23 [+0.10, +2.40]``: an AUC difference and its interval in AUC points (x100), as every table writes it.

    :param estimate: the difference (AUC units).
    :param low: lower end of its interval.
    :param high: upper end of its interval.
    """
    return f"{100 * estimate:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


# ---------------------------------------------------------------------------------------------
# paired comparison on one set of pairs


@dataclass(frozen=True)
class PairedAUCResult:
    """AUC(a) - AUC(b) on the same pairs: paired bootstrap interval and DeLong p-value."""

    diff: float
    """AUC(a) - AUC(b) on all pairs."""
    low: float
    """Lower end of the paired percentile bootstrap interval."""
    high: float
    """Upper end of the paired percentile bootstrap interval."""
    p_value: float
    """Two-sided DeLong p-value of H0: equal AUCs."""
    auc_a: float
    """AUC of method a."""
    auc_b: float
    """AUC of method b."""
    n: int
    """Number of pairs."""
    n_neg: int
    """Number of negative pairs."""
    n_boot: int
    """Resamples used (resamples with a single class are skipped)."""
    level: float
    """Confidence level of the interval."""

    @property
    def estimate(self) -> float:
        """The point estimate (``diff``), as the other estimates name it."""
        return self.diff


def _paired_result(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, boot_a: np.ndarray, boot_b: np.ndarray, level: float
) -> PairedAUCResult:
    diffs = boot_a - boot_b
    low, high = percentile_interval(diffs, level)
    test = delong(labels, a, b)
    return PairedAUCResult(
        diff=test.auc_a - test.auc_b,
        low=low, high=high, p_value=test.p_value, auc_a=test.auc_a, auc_b=test.auc_b, n=int(labels.size),
        n_neg=int((~labels.astype(bool)).sum()), n_boot=int(np.isfinite(diffs).sum()), level=level,
    )


def paired_auc_difference(
    y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedAUCResult:
    """AUC(a) - AUC(b) on the same pairs, with a paired percentile bootstrap interval and DeLong's p.

    Both methods are scored on the same resampled pair indices in every replicate, so the interval
    reflects the difference's own (usually much smaller) sampling noise.

    :param y: (n,) 0/1 labels, both classes present.
    :param score_a: (n,) scores of method a.
    :param score_b: (n,) scores of method b on the same pairs.
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    :param level: confidence level of the interval.
    """
    _check_level(level)
    matrix = _stack(score_a, score_b)
    boot = bootstrap_aucs(y, matrix, n_boot, seed)
    return _paired_result(np.asarray(y).ravel(), matrix[0], matrix[1], boot[:, 0], boot[:, 1], level)


def paired_auc_differences(
    y: np.ndarray, scores: Mapping[str, np.ndarray], reference: str, n_boot: int = 2000, seed: int = 0,
    level: float = 0.95,
) -> dict[str, PairedAUCResult]:
    """Every method against ``reference`` on the same pairs, all on one shared set of resamples.

    With the same ``seed``, each entry equals ``paired_auc_difference(y, scores[m], scores[reference])``,
    and calls with other references on the same pairs reuse the very same resamples.

    :param y: (n,) 0/1 labels.
    :param scores: method name -> (n,) scores, all on the same pairs.
    :param reference: the name in ``scores`` that every other method is compared with.
    :param n_boot: bootstrap resamples.
    :param seed: resampling seed.
    :param level: confidence level.
    :returns: method name -> result of (method - reference), for every method except the reference.
    """
    if reference not in scores:
        raise CoralError(f"reference method {reference!r} is not among the scores ({', '.join(scores)})")
    _check_level(level)
    names = [name for name in scores if name != reference]
    if not names:
        return {}
    matrix = _stack(*(scores[name] for name in [reference, *names]))
    boot = bootstrap_aucs(y, matrix, n_boot, seed)
    labels = np.asarray(y).ravel()
    return {
        name: _paired_result(labels, matrix[j + 1], matrix[0], boot[:, j + 1], boot[:, 0], level)
        for j, name in enumerate(names)
    }


# ---------------------------------------------------------------------------------------------
# seeds


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof=1) of per-seed values."""

    mean: float
    """Mean over seeds."""
    std: float
    """Sample standard deviation (ddof=1); nan for a single value."""
    n: int
    """Number of values (seeds)."""

    def format(self, digits: int = 2, scale: float = 1.0) -> str:
        """``mean ± std`` (just ``mean`` for a single value).

        :param digits: decimals.
        :param scale: multiply both by this (100 for AUC in percent).
        """
        text = f"{self.mean * scale:.{digits}f}"
        return text if self.n < 2 else f"{text} ± {self.std * scale:.{digits}f}"


def mean_std(values: Sequence[float] | np.ndarray) -> MeanStd:
    """Mean ± sample std (ddof=1) over seeds: the one rule for every multi-seed table.

    :param values: one value per seed (at least one).
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise CoralError("mean ± std needs at least one value")
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return MeanStd(float(arr.mean()), std, int(arr.size))


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean over seeds, mean ± t_(n-1) · std / sqrt(n).

    :param values: one value per seed.
    :param level: confidence level.
    :returns: (low, high); (nan, nan) for fewer than two values.
    """
    _check_level(level)
    summary = mean_std(values)
    if summary.n < 2:
        return math.nan, math.nan
    half = sps.t.ppf(0.5 + level / 2, summary.n - 1) * summary.std / math.sqrt(summary.n)
    return float(summary.mean - half), float(summary.mean + half)


@dataclass(frozen=True)
class PooledEstimate:
    """A per-seed quantity (AUC or AUC difference) pooled over seeds."""

    estimate: float
    """Mean over seeds of the quantity on all pairs."""
    low: float
    """Lower end of the pooled pair-bootstrap interval of the mean."""
    high: float
    """Upper end of the pooled pair-bootstrap interval of the mean."""
    per_seed: tuple[float, ...]
    """The quantity for each seed."""
    std: float
    """Sample std over seeds (ddof=1); nan for one seed."""
    t_low: float
    """Lower end of the t-interval over seed values (nan for one seed)."""
    t_high: float
    """Upper end of the t-interval over seed values (nan for one seed)."""
    n_boot: int
    """Replicates used (a replicate is skipped when any seed's resample holds a single class)."""
    level: float
    """Confidence level of both intervals."""

    @property
    def n_seeds(self) -> int:
        """Number of seeds pooled."""
        return len(self.per_seed)


def _per_seed_quantity(aucs: np.ndarray) -> np.ndarray:
    """The pooled quantity from AUC columns (..., k): the AUC (k=1) or AUC(a) - AUC(b) (k=2)."""
    return aucs[..., 0] if aucs.shape[-1] == 1 else aucs[..., 0] - aucs[..., 1]


def _checked_seeds(
    ys: Sequence[np.ndarray], per_seed_scores: Sequence[np.ndarray], level: float, what: str
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """Each seed's checked (labels, scores) and its per-seed quantity; ``what`` names the caller in errors."""
    _check_level(level)
    if len(ys) == 0 or len(ys) != len(per_seed_scores):
        raise CoralError(
            f"{what} needs one label array per seed: {len(ys)} label arrays, {len(per_seed_scores)} score arrays"
        )
    checked = [_labels_and_scores(y, matrix) for y, matrix in zip(ys, per_seed_scores, strict=True)]
    values = [float(_per_seed_quantity(_delong_components(labels, matrix)[0])) for labels, matrix in checked]
    return checked, values


def _pooled(
    ys: Sequence[np.ndarray], per_seed_scores: Sequence[np.ndarray], n_boot: int, seed: int, level: float,
    shared_pairs: bool,
) -> PooledEstimate:
    """Pool (k, n_s) scores of every seed, k=1 (AUC) or 2 (difference); see :func:`pooled_auc`."""
    checked, values = _checked_seeds(ys, per_seed_scores, level, "pooling")
    rng = np.random.default_rng(seed)
    if shared_pairs:
        labels = checked[0][0]
        if any(not np.array_equal(other, labels) for other, _ in checked[1:]):
            raise CoralError("shared_pairs=True but the seeds' evaluation labels differ")
        k = checked[0][1].shape[0]
        boot = bootstrap_aucs(labels, np.concatenate([matrix for _, matrix in checked]), n_boot, rng)
        replicates = [_per_seed_quantity(boot[:, s * k : (s + 1) * k]) for s in range(len(checked))]
    else:
        replicates = [_per_seed_quantity(bootstrap_aucs(labels, matrix, n_boot, rng)) for labels, matrix in checked]
    pooled = np.mean(replicates, axis=0)  # nan where any seed's resample was skipped
    low, high = percentile_interval(pooled, level)
    summary = mean_std(values)
    t_low, t_high = t_interval(values, level)
    return PooledEstimate(
        summary.mean, low, high, tuple(values), summary.std, t_low, t_high, int(np.isfinite(pooled).sum()), level
    )


def pooled_auc(
    ys: Sequence[np.ndarray], scores: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0, level: float = 0.95,
    shared_pairs: bool = False,
) -> PooledEstimate:
    """Mean AUC over seeds with the pooled pair-bootstrap interval (see the module docstring).

    :param ys: per seed, (n_s,) labels of that seed's evaluation pairs.
    :param scores: per seed, (n_s,) scores of the method.
    :param n_boot: replicates.
    :param seed: seed of the one resampling stream (seeds are resampled one after another).
    :param level: confidence level.
    :param shared_pairs: every seed is evaluated on the same pairs (a fixed split): each replicate
        then draws ONE resample used by all seeds, which keeps their errors' correlation (with
        independent draws, repeating one deterministic run S times would shrink the interval by
        sqrt(S)). Leave False when the split varies with the seed.
    """
    return _pooled(
        ys, [np.asarray(s, dtype=np.float64).reshape(1, -1) for s in scores], n_boot, seed, level, shared_pairs
    )


def pooled_auc_difference(
    ys: Sequence[np.ndarray], scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray], n_boot: int = 2000,
    seed: int = 0, level: float = 0.95, shared_pairs: bool = False,
) -> PooledEstimate:
    """Mean over seeds of AUC(a) - AUC(b) (same pairs within each seed), pooled pair-bootstrap interval.

    Within a seed both methods share every resample; the per-seed differences are averaged per
    replicate.

    :param ys: per seed, (n_s,) labels.
    :param scores_a: per seed, (n_s,) scores of method a.
    :param scores_b: per seed, (n_s,) scores of method b on the same pairs.
    :param n_boot: replicates.
    :param seed: seed of the one resampling stream.
    :param level: confidence level.
    :param shared_pairs: every seed is evaluated on the same pairs; see :func:`pooled_auc`.
    """
    if len(scores_a) != len(scores_b):
        raise CoralError(f"{len(scores_a)} seeds of method a but {len(scores_b)} of method b")
    matrices = [_stack(a, b) for a, b in zip(scores_a, scores_b, strict=False)]
    return _pooled(ys, matrices, n_boot, seed, level, shared_pairs)


def _two_level(
    ys: Sequence[np.ndarray], per_seed_scores: Sequence[np.ndarray], n_boot: int, seed: int, level: float,
    shared_pairs: bool,
) -> PooledEstimate:
    """Two-level bootstrap of a per-seed quantity: resample seeds, then pairs within each drawn seed."""
    checked, values = _checked_seeds(ys, per_seed_scores, level, "the two-level bootstrap")
    n_seeds = len(checked)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # each replicate's seeds, with replacement
    draws = np.full((n_boot, n_seeds), np.nan)
    if shared_pairs:  # one pair resample per replicate, used by every seed it drew (as in _pooled)
        labels = checked[0][0]
        if any(not np.array_equal(other, labels) for other, _ in checked[1:]):
            raise CoralError("shared_pairs=True but the seeds' evaluation labels differ")
        k = checked[0][1].shape[0]
        boot = bootstrap_aucs(labels, np.concatenate([matrix for _, matrix in checked]), n_boot, rng)
        per_seed = np.stack([_per_seed_quantity(boot[:, s * k : (s + 1) * k]) for s in range(n_seeds)], axis=1)
        draws = np.take_along_axis(per_seed, chosen, axis=1)
    else:  # every draw of a seed gets its own pair resample, the same indices for both methods
        for s, (labels, matrix) in enumerate(checked):
            where = np.nonzero(chosen == s)
            if len(where[0]):
                draws[where] = _per_seed_quantity(bootstrap_aucs(labels, matrix, len(where[0]), rng))
    replicates = draws.mean(axis=1)  # nan where a drawn seed's resample held a single class
    low, high = percentile_interval(replicates, level)
    summary = mean_std(values)
    t_low, t_high = t_interval(values, level)
    return PooledEstimate(
        summary.mean, low, high, tuple(values), summary.std, t_low, t_high, int(np.isfinite(replicates).sum()), level
    )


def two_level_auc_difference(
    ys: Sequence[np.ndarray], scores_a: Sequence[np.ndarray], scores_b: Sequence[np.ndarray], n_boot: int = 2000,
    seed: int = 0, level: float = 0.95, shared_pairs: bool = False,
) -> PooledEstimate:
    """Mean over seeds of AUC(a) - AUC(b), with the two-level bootstrap interval.

    Each replicate draws S seeds with replacement from the S trained seeds, then resamples the
    pairs of every drawn seed (both methods share the indices) and averages the drawn seeds'
    differences. Unlike :func:`pooled_auc_difference` (pairs only, *given* the trained models),
    its interval also holds the seed-to-seed spread of training: five seeds that disagree in sign
    give an interval across 0 however many pairs each has. With one seed it is the pair bootstrap.

    :param ys: per seed, (n_s,) labels.
    :param scores_a: per seed, (n_s,) scores of method a.
    :param scores_b: per seed, (n_s,) scores of method b on the same pairs.
    :param n_boot: replicates.
    :param seed: seed of the resampling stream.
    :param level: confidence level.
    :param shared_pairs: every seed is evaluated on the same pairs: one pair resample per replicate.
    """
    if len(scores_a) != len(scores_b):
        raise CoralError(f"{len(scores_a)} seeds of method a but {len(scores_b)} of method b")
    return _two_level(
        ys, [_stack(a, b) for a, b in zip(scores_a, scores_b, strict=False)], n_boot, seed, level, shared_pairs
    )


# ---------------------------------------------------------------------------------------------
# verdicts


SUPPORTED, NOT_SUPPORTED, UNDECIDED = "supported", "not supported", "undecided"


def interval_verdict(low: float, high: float, margin: float = 0.01) -> str:
    """Verdict on "a beats b" from the interval [low, high] of AUC(a) - AUC(b), never from the point.

    - "supported": low > 0: the data exclude "no gain".
    - "not supported": high < margin: any advantage of a is smaller than ``margin`` (this
      includes a reliably negative difference).
    - "undecided": otherwise: the interval holds both 0 and gains of at least ``margin``; more
      pairs (or seeds) are needed, and saying "no effect" here would be wrong.

    :param low: lower end of the interval.
    :param high: upper end of the interval.
    :param margin: the smallest AUC gain that counts as a real improvement.
    """
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED
    if low > 0:
        return SUPPORTED
    if high < margin:
        return NOT_SUPPORTED
    return UNDECIDED


def interval_verdicts(low: float, high: float, margin: float = 0.01) -> tuple[str, str]:
    """Both readings of the interval of AUC(a) - AUC(b): (a better than b, a worse than b).

    The second is :func:`interval_verdict` read from b's side (the interval of b - a is [-high,
    -low]), so an interval and its mirror image swap the two readings: the rule is symmetric.
    """
    return interval_verdict(low, high, margin), interval_verdict(-high, -low, margin)
