"""Paired AUC statistics (coral.stats) and the threshold rule of coral.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from coral.errors import CoralError
from coral.metrics import binary_metrics, bootstrap_auc_ci, f1_all_yes
from coral.stats import (
    NOT_SUPPORTED,
    SUPPORTED,
    UNDECIDED,
    bootstrap_aucs,
    bootstrap_counts,
    delong,
    delong_variance,
    format_interval,
    interval_verdict,
    interval_verdicts,
    mean_std,
    paired_auc_difference,
    paired_auc_differences,
    pooled_auc,
    pooled_auc_difference,
    t_interval,
    two_level_auc_difference,
    weighted_auc,
)

# The aSAH data set of the R package pROC (Robin et al. 2011, "pROC: an open-source package for R
# and S+ to analyze and compare ROC curves", BMC Bioinformatics 12:77; data from Turck et al. 2010,
# Intensive Care Medicine 36:107-115): 113 patients after aneurysmal subarachnoid haemorrhage.
# Outcome 1 = "Poor" (41 patients), 0 = "Good" (72); the WFNS grade (1-5) and S100B (ug/l).
ASAH_POOR = (
    "00001101001011001011101000000000100110110000000001100010001010011101101111000110100000010000000000001111110001000"
)
ASAH_WFNS = (
    "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421451154221113125225552445111"
)
ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 0.07 0.33
0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 0.35 0.48 0.09 0.96
0.25 0.5 0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.1 0.14 0.15
0.07 0.06 0.77 0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 0.71 0.08 0.26 0.08 0.16 0.09
0.13 0.1 0.08 0.11 0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1
0.07 0.04 0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.5 0.48
"""


def asah() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outcome, wfns, s100b) of the 113 aSAH patients."""
    y = np.array([int(c) for c in ASAH_POOR])
    wfns = np.array([float(c) for c in ASAH_WFNS])
    s100b = np.array([float(v) for v in ASAH_S100B.split()])
    assert len(y) == len(wfns) == len(s100b) == 113 and y.sum() == 41
    return y, wfns, s100b


def planted(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, an informative scorer (label + noise) and pure noise, on the same pairs."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.55).astype(int)
    return y, y + rng.normal(size=n), rng.normal(size=n)


# ---------------------------------------------------------------------------------------------
# DeLong against a published example


def test_delong_matches_proc_roc_test_on_asah():
    """pROC's roc.test(roc(outcome, wfns), roc(outcome, s100b)) (DeLong, paired, two-sided), as
    fixed in pROC's own regression tests: Z = 2.20898359144091, p = 0.0271757822291882, 95%
    interval of the difference [0.0104061769564846, 0.174214419249478]; AUCs 0.823678861788618
    (WFNS) and 0.731368563685637 (S100B; pROC's documentation prints 0.8237 and 0.7314)."""
    y, wfns, s100b = asah()
    result = delong(y, wfns, s100b)
    assert result.auc_a == pytest.approx(0.823678861788618, abs=1e-12)
    assert result.auc_b == pytest.approx(0.731368563685637, abs=1e-12)
    assert result.z == pytest.approx(2.20898359144091, rel=1e-9)
    assert result.p_value == pytest.approx(0.0271757822291882, rel=1e-9)
    low, high = result.interval(0.95)
    assert low == pytest.approx(0.0104061769564846, rel=1e-9)
    assert high == pytest.approx(0.174214419249478, rel=1e-9)
    swapped = delong(y, s100b, wfns)
    assert swapped.z == pytest.approx(-result.z) and swapped.p_value == pytest.approx(result.p_value)


def test_delong_single_auc_variance_matches_proc_var_on_asah():
    """pROC's var(roc) (DeLong) on aSAH: 0.00146991470882363 (WFNS), 0.00266868245717244 (S100B)."""
    y, wfns, s100b = asah()
    assert delong_variance(y, wfns)[1] == pytest.approx(0.00146991470882363, rel=1e-9)
    assert delong_variance(y, s100b)[1] == pytest.approx(0.00266868245717244, rel=1e-9)
    result = delong(y, wfns, s100b)
    assert result.var_a == pytest.approx(0.00146991470882363, rel=1e-9)
    assert result.var_b == pytest.approx(0.00266868245717244, rel=1e-9)


def test_delong_of_identical_scorers_gives_p_one():
    y, wfns, _ = asah()
    result = delong(y, wfns, wfns)
    assert result.diff == 0 and result.z == 0 and result.p_value == 1


# ---------------------------------------------------------------------------------------------
# paired bootstrap


def test_paired_interval_of_a_method_against_itself_is_exactly_zero():
    y, wfns, _ = asah()  # heavy ties: five distinct scores
    result = paired_auc_difference(y, wfns, wfns, n_boot=500, seed=1)
    assert (result.diff, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert result.n == 113 and result.n_neg == 72 and result.n_boot == 500


def test_planted_better_scorer_gets_a_positive_difference_excluding_zero():
    y, informative, noise = planted()
    result = paired_auc_difference(y, informative, noise, n_boot=1000, seed=0)
    assert result.auc_a > 0.7 and abs(result.auc_b - 0.5) < 0.05
    assert result.low > 0 and result.low < result.diff < result.high
    assert result.p_value < 1e-10
    reverse = paired_auc_difference(y, noise, informative, n_boot=1000, seed=0)
    assert reverse.high < 0


def test_paired_bootstrap_on_asah_is_close_to_delong():
    y, wfns, s100b = asah()
    result = paired_auc_difference(y, wfns, s100b, n_boot=2000, seed=0)
    low, high = delong(y, wfns, s100b).interval()
    assert result.diff == pytest.approx(0.823678861788618 - 0.731368563685637, abs=1e-12)
    assert abs(result.low - low) < 0.02 and abs(result.high - high) < 0.02


def test_bootstrap_half_width_agrees_with_delong_on_a_large_sample():
    y, informative, noise = planted(n=3000, seed=3)
    result = paired_auc_difference(y, informative, noise, n_boot=2000, seed=0)
    delong_half = (lambda lo_hi: (lo_hi[1] - lo_hi[0]) / 2)(delong(y, informative, noise).interval())
    assert 0.85 < (result.high - result.low) / 2 / delong_half < 1.15


def test_weighted_auc_equals_sklearn_on_resampled_arrays_with_ties():
    rng = np.random.default_rng(7)
    y = (rng.random(400) < 0.6).astype(int)
    score = np.round(rng.normal(size=400) + y, 1)  # many ties, within and across classes
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        weights = np.bincount(idx, minlength=len(y))
        assert weighted_auc(y, score, weights) == pytest.approx(roc_auc_score(y[idx], score[idx]), abs=1e-14)


def test_bootstrap_aucs_equal_sklearn_on_the_same_resamples_and_skip_one_class_ones():
    rng = np.random.default_rng(11)
    y = np.array([0, 1, 1, 1, 1, 1, 1, 1])  # one negative: many resamples have no negative
    scores = np.stack([np.round(rng.random(8), 1), np.round(rng.random(8), 1)])
    boot = bootstrap_aucs(y, scores, n_boot=100, seed=5)
    counts = np.concatenate(list(bootstrap_counts(len(y), 100, np.random.default_rng(5))))
    skipped = 0
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(y)), row)
        if len(set(y[idx])) < 2:
            assert np.isnan(boot[b]).all()
            skipped += 1
            continue
        for j in range(2):
            assert boot[b, j] == pytest.approx(roc_auc_score(y[idx], scores[j][idx]), abs=1e-14)
    assert 0 < skipped < 100


def test_paired_results_are_deterministic_under_a_seed():
    y, informative, noise = planted(n=500)
    first = paired_auc_difference(y, informative, noise, n_boot=300, seed=4)
    assert paired_auc_difference(y, informative, noise, n_boot=300, seed=4) == first
    assert paired_auc_difference(y, informative, noise, n_boot=300, seed=5) != first


def test_comparisons_against_a_reference_equal_the_pairwise_ones():
    y, informative, noise = planted(n=600)
    scores = {"noise": noise, "good": informative, "half": 0.5 * informative + noise}
    many = paired_auc_differences(y, scores, "noise", n_boot=300, seed=2)
    assert set(many) == {"good", "half"}
    for name in many:
        assert many[name] == paired_auc_difference(y, scores[name], noise, n_boot=300, seed=2)
    with pytest.raises(CoralError, match="reference"):
        paired_auc_differences(y, scores, "absent")


def test_bad_inputs_are_coral_errors():
    with pytest.raises(CoralError, match="both classes"):
        paired_auc_difference(np.ones(5), np.arange(5.0), np.arange(5.0))
    with pytest.raises(CoralError, match="scores"):
        delong(np.array([0, 1, 1]), np.array([0.1, 0.2]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(CoralError, match="NaN"):
        bootstrap_aucs(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(CoralError, match="level"):
        paired_auc_difference(np.array([0, 1]), np.array([0.1, 0.2]), np.array([0.1, 0.2]), level=95)


# ---------------------------------------------------------------------------------------------
# seeds


def test_mean_std_uses_the_sample_std_and_a_single_value_shows_no_spread():
    summary = mean_std([0.80, 0.90])
    assert summary.mean == pytest.approx(0.85) and summary.std == pytest.approx(math.sqrt(0.005))
    assert summary.format(2, 100) == "85.00 ± 7.07"
    single = mean_std([0.8])
    assert math.isnan(single.std) and single.format(2, 100) == "80.00"


def test_t_interval_by_hand():
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, std 1, t_(0.975, 2) = 4.302652729911275
    half = 4.302652729911275 / math.sqrt(3)
    assert (low, high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert all(math.isnan(v) for v in t_interval([1.0]))


def test_pooled_auc_by_hand():
    """Seed 1 ranks its two pairs right (AUC 1 in every usable resample), seed 2 wrong (AUC 0):
    every usable pooled replicate is exactly 0.5, and a replicate is usable only when both seeds'
    resamples (drawn one after the other from one stream) hold both classes."""
    ys = [np.array([0, 1]), np.array([0, 1])]
    pooled = pooled_auc(ys, [np.array([0.1, 0.9]), np.array([0.9, 0.1])], n_boot=400, seed=8)
    assert (pooled.estimate, pooled.low, pooled.high) == (0.5, 0.5, 0.5)
    assert pooled.per_seed == (1.0, 0.0) and pooled.n_seeds == 2
    assert pooled.std == pytest.approx(math.sqrt(0.5))
    assert pooled.t_low == pytest.approx(0.5 - 12.706204736174698 * math.sqrt(0.5) / math.sqrt(2))
    stream = np.random.default_rng(8)
    both = [np.concatenate(list(bootstrap_counts(2, 400, stream))).min(axis=1) > 0 for _ in ys]
    assert pooled.n_boot == int((both[0] & both[1]).sum())


def test_pooled_difference_by_hand_and_with_one_seed():
    ys = [np.array([0, 1]), np.array([0, 1])]
    right, wrong = np.array([0.1, 0.9]), np.array([0.9, 0.1])
    pooled = pooled_auc_difference(ys, [right, right], [wrong, right], n_boot=400, seed=8)
    assert pooled.per_seed == (1.0, 0.0) and (pooled.estimate, pooled.low, pooled.high) == (0.5, 0.5, 0.5)
    y, informative, noise = planted(n=400)
    one = pooled_auc_difference([y], [informative], [noise], n_boot=300, seed=3)
    pair = paired_auc_difference(y, informative, noise, n_boot=300, seed=3)
    assert (one.estimate, one.low, one.high) == (pytest.approx(pair.diff), pair.low, pair.high)
    assert math.isnan(one.std) and math.isnan(one.t_low)


def test_pooled_interval_narrows_with_more_seeds():
    runs = [planted(n=400, seed=s) for s in range(4)]
    one = pooled_auc_difference(
        [r[0] for r in runs[:1]], [r[1] for r in runs[:1]], [r[2] for r in runs[:1]], n_boot=500
    )
    four = pooled_auc_difference([r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs], n_boot=500)
    assert four.high - four.low < 0.7 * (one.high - one.low)


# ---------------------------------------------------------------------------------------------
# verdicts and the two-level bootstrap


@pytest.mark.parametrize(
    "low, high, better, worse",
    [
        (0.001, 0.05, SUPPORTED, NOT_SUPPORTED),  # above 0: a is better, and not worse
        (-0.02, 0.008, NOT_SUPPORTED, UNDECIDED),  # any advantage < m; a worse by up to 0.02: open
        (-0.008, 0.02, UNDECIDED, NOT_SUPPORTED),  # the mirror image of the row above
        (-0.08, -0.03, NOT_SUPPORTED, SUPPORTED),  # below 0: a is worse
        (0.03, 0.08, SUPPORTED, NOT_SUPPORTED),  # the mirror image of the row above
        (-0.005, 0.005, NOT_SUPPORTED, NOT_SUPPORTED),  # level within the margin both ways
        (-0.01, 0.03, UNDECIDED, UNDECIDED),  # the margin is strict: -0.01 is not above -m
        (-0.009, 0.03, UNDECIDED, NOT_SUPPORTED),
        (-0.03, 0.009, NOT_SUPPORTED, UNDECIDED),  # its mirror image
        (-0.03, 0.03, UNDECIDED, UNDECIDED),
        (math.nan, math.nan, UNDECIDED, UNDECIDED),
    ],
)
def test_verdict_table_reads_both_sides_symmetrically(low, high, better, worse):
    assert interval_verdicts(low, high) == (better, worse)
    assert interval_verdict(low, high) == better
    assert interval_verdicts(-high, -low) == (worse, better)  # the mirror image swaps the readings


def test_verdict_margin():
    assert interval_verdict(-0.01, 0.03, margin=0.05) == NOT_SUPPORTED
    assert interval_verdicts(-0.03, 0.01, margin=0.05) == (NOT_SUPPORTED, NOT_SUPPORTED)


def _seeds_that_disagree(n: int = 3000, n_seeds: int = 5):
    """Per seed: labels, a scorer a and a scorer b on the same pairs; a beats b clearly in three
    seeds and loses clearly in two (training randomness), each seed on its own large pair set."""
    ys, a, b = [], [], []
    for s in range(n_seeds):
        rng = np.random.default_rng(100 + s)
        y = (rng.random(n) < 0.5).astype(int)
        good, bad = y + rng.normal(scale=0.8, size=n), y + rng.normal(scale=1.6, size=n)
        ys.append(y)
        a.append(good if s < 3 else bad)
        b.append(bad if s < 3 else good)
    return ys, a, b


def test_two_level_bootstrap_is_undecided_where_seeds_disagree_though_pairs_are_clear():
    ys, a, b = _seeds_that_disagree()
    pooled = pooled_auc_difference(ys, a, b, n_boot=400, seed=1)
    two_level = two_level_auc_difference(ys, a, b, n_boot=400, seed=1)
    assert pooled.estimate == pytest.approx(two_level.estimate)
    assert interval_verdict(pooled.low, pooled.high) == SUPPORTED  # the pairs alone exclude 0
    assert interval_verdict(two_level.low, two_level.high) == UNDECIDED  # the seeds do not
    assert two_level.low < 0 < two_level.high
    assert two_level.t_low < 0 < two_level.t_high


def test_two_level_bootstrap_of_agreeing_seeds_is_close_to_the_pooled_one_and_one_seed_is_the_pair_bootstrap():
    runs = [planted(n=600, seed=s) for s in range(5)]
    ys, a, b = ([r[k] for r in runs] for k in range(3))
    two_level = two_level_auc_difference(ys, a, b, n_boot=600, seed=2)
    pooled = pooled_auc_difference(ys, a, b, n_boot=600, seed=2)
    assert interval_verdict(two_level.low, two_level.high) == SUPPORTED
    assert two_level.high - two_level.low >= 0.9 * (pooled.high - pooled.low)  # it adds the seed spread, never removes
    one = two_level_auc_difference(ys[:1], a[:1], b[:1], n_boot=2000, seed=3)
    pair = paired_auc_difference(ys[0], a[0], b[0], n_boot=2000, seed=3)
    assert one.estimate == pytest.approx(pair.diff)
    assert (one.low, one.high) == (pytest.approx(pair.low, abs=0.01), pytest.approx(pair.high, abs=0.01))
    shared = two_level_auc_difference([ys[0]] * 3, [a[0]] * 3, [b[0]] * 3, n_boot=500, seed=4, shared_pairs=True)
    alone = two_level_auc_difference(ys[:1], a[:1], b[:1], n_boot=500, seed=4)
    assert shared.high - shared.low == pytest.approx(alone.high - alone.low, rel=0.25)  # repeating a run adds nothing


# ---------------------------------------------------------------------------------------------
# metrics: one threshold rule, informative F1 companions


def test_threshold_comes_from_validation_only():
    rng = np.random.default_rng(0)
    valid_y = (rng.random(300) < 0.6).astype(int)
    valid_p = np.clip(0.6 * valid_y + 0.5 * rng.random(300), 0, 1)
    test_p = rng.random(200)
    test_y = (rng.random(200) < 0.6).astype(int)
    first = binary_metrics(test_y, test_p, valid_y, valid_p, n_boot=0)
    flipped = binary_metrics(1 - test_y, test_p, valid_y, valid_p, n_boot=0)
    assert first["f1_threshold"] == flipped["f1_threshold"]
    assert first["f1"] != flipped["f1"]
    assert binary_metrics(test_y, test_p, valid_y, 1 - valid_p, n_boot=0)["f1_threshold"] != first["f1_threshold"]
    assert binary_metrics(test_y, test_p, n_boot=0)["f1_threshold"] == 0.5


def test_binary_metrics_report_mcc_balanced_accuracy_and_the_all_yes_f1():
    y = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    all_yes = binary_metrics(y, np.full(10, 0.9), n_boot=0)
    assert all_yes["f1"] == pytest.approx(f1_all_yes(y)) == pytest.approx(2 * 0.8 / 1.8)
    assert all_yes["mcc"] == 0 and all_yes["balanced_accuracy"] == 0.5
    perfect = binary_metrics(y, y * 0.8 + 0.1, n_boot=0)
    assert perfect["mcc"] == pytest.approx(1) and perfect["balanced_accuracy"] == 1
    keys = {"auc", "auc_ci_low", "auc_ci_high", "f1", "f1_threshold", "f1_at_05", "logloss", "n_test", "positive_rate"}
    assert keys | {"mcc", "balanced_accuracy", "f1_all_yes"} == set(perfect)
    assert math.isnan(binary_metrics(np.ones(4), np.full(4, 0.7), n_boot=0)["mcc"])
    with pytest.raises(CoralError, match="validation"):
        binary_metrics(y, np.full(10, 0.9), y, np.full(3, 0.5))


def test_bootstrap_auc_ci_is_the_rank_based_percentile_interval():
    y, informative, _ = planted(n=300)
    low, high = bootstrap_auc_ci(y, informative, n_boot=150, seed=3)
    counts = np.concatenate(list(bootstrap_counts(len(y), 150, np.random.default_rng(3))))
    reference = [
        roc_auc_score(y[np.repeat(np.arange(len(y)), c)], informative[np.repeat(np.arange(len(y)), c)]) for c in counts
    ]
    assert (low, high) == (
        pytest.approx(np.quantile(reference, 0.025), abs=1e-12),
        pytest.approx(np.quantile(reference, 0.975), abs=1e-12),
    )
    assert low < roc_auc_score(y, informative) < high


def test_repeating_one_run_as_several_seeds_on_shared_pairs_does_not_narrow_the_interval():
    y, informative, noise = planted(n=400)
    one = pooled_auc_difference([y], [informative], [noise], n_boot=300, seed=6)
    repeated = pooled_auc_difference([y] * 3, [informative] * 3, [noise] * 3, n_boot=300, seed=6, shared_pairs=True)
    assert (repeated.low, repeated.high) == (pytest.approx(one.low), pytest.approx(one.high))
    assert repeated.std == 0
    twice = pooled_auc([y] * 2, [informative] * 2, n_boot=300, seed=6, shared_pairs=True)
    once = pooled_auc([y], [informative], n_boot=300, seed=6)
    assert (twice.low, twice.high) == (pytest.approx(once.low), pytest.approx(once.high))
    with pytest.raises(CoralError, match="shared_pairs"):
        pooled_auc([y, 1 - y], [informative, informative], shared_pairs=True)


def test_format_interval_writes_auc_points_with_signs():
    assert format_interval(0.0123, 0.001, 0.024) == "+1.23 [+0.10, +2.40]"
    assert format_interval(-0.0331, -0.0433, -0.0229) == "-3.31 [-4.33, -2.29]"
