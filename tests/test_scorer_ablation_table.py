"""The scorer ablation's report (``experiments/bench/scorer_ablation.py``): the figures its table prints, on
made-up P(Yes) (no LLM), against a hand computation with :mod:`coral.stats`."""

from __future__ import annotations

import numpy as np
import pytest

from coral.stats import paired_auc_difference, paired_auc_differences
from tests.experiment_scripts import load_experiment_script

K = 5


@pytest.fixture(scope="module")
def bench():
    return load_experiment_script("bench/scorer_ablation")


def _info(name: str) -> dict:
    return {
        "scorer": name, "base_model": "tiny.gguf:1", "targets": 10, "layers": 2, "trunk": 2, "align_cpu_s": 1.0,
        "trunk_cpu_s": 0.5, "train_cpu_s": 0.5, "best_step": 1, "steps": 1,
    }


def _variant(rng: np.random.Generator, y: np.ndarray, reads: float, controls: bool) -> dict[str, np.ndarray]:
    """P after 0..5 nearest pieces that move toward y by ``reads`` per piece; random/shuffled pieces move at random."""
    noise = rng.normal(size=len(y))
    out = {"none0": noise}
    for k in range(1, K + 1):
        out[f"nearest{k}"] = noise + reads * k * (2 * y - 1) + 0.3 * rng.normal(size=len(y))
        if controls:
            out[f"random{k}"] = noise + 0.3 * rng.normal(size=len(y))
            out[f"shuffled{k}"] = noise + 0.3 * rng.normal(size=len(y))
    return out


def test_every_variant_reports_nearest_minus_none(bench):
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.5).astype(int)
    scores = {"reads": _variant(rng, y, 0.3, controls=True), "plain": _variant(rng, y, 0.1, controls=False)}
    share = rng.random(300)
    report = bench.figures(
        y, scores, {"like-share@5": share}, {n: _info(n) for n in scores}, "reads", 200, paired_auc_differences
    )
    for name, s in scores.items():
        row = report["variants"][name]
        # the same resamples as a lone comparison with the same seed (paired_auc_differences' promise)
        hand = paired_auc_difference(y, s["nearest5"], s["none0"], n_boot=200, seed=0)
        assert row["nearest_vs_none"]["diff"] == pytest.approx(hand.diff)
        assert (row["nearest_vs_none"]["low"], row["nearest_vs_none"]["high"]) == pytest.approx((hand.low, hand.high))
        assert row["nearest_vs_none"]["low"] > 0  # the made-up pieces carry y
    assert "random_vs_none" in report["variants"]["reads"] and "random_vs_none" not in report["variants"]["plain"]
    text = bench.table({**report, "n_pairs": 300, "n_negative": int((y == 0).sum())})
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    column = [c.strip() for c in header.split("|")].index("5 nearest − none")
    for name in scores:
        line = next(line for line in text.splitlines() if line.startswith(f"| {name} "))
        d = report["variants"][name]["nearest_vs_none"]
        assert line.split("|")[column].strip() == bench.format_interval(d["diff"], d["low"], d["high"])
