"""results.md's evidence controls: per seed, and pooled over the seeds of one scorer."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from coral.pipeline.report import controls_section


def _controls(seed: int, n: int = 300, scorer: str = "top8-finetune", per_pair: bool = True) -> dict:
    """One seed's controls entry: the nearest pieces add signal about y, random pieces change nothing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    none = y + rng.normal(0.0, 1.5, n)
    p = {"none": none, "nearest": none + 0.8 * y, "random": none.copy(), "shuffled": none - 0.3 * y}
    auc = {name: roc_auc_score(y, s) for name, s in p.items()}
    entry = {
        "scorer": scorer, "seed": seed, "n": n, "n_negative": int((y == 0).sum()), "nearest_by_pieces": [0.5],
        "controls": {
            name: {"auc": a, "pieces": 5.0, "delta_vs_none": a - auc["none"], "low": 0.0, "high": 0.0, "p_value": 1.0}
            for name, a in auc.items()
        },
    }
    if per_pair:
        entry["per_pair"] = {"labels": y, **{f"p_{k}": v for k, v in p.items()}}
    return entry


def _pooled_row(text: str, evidence: str) -> list[str]:
    pooled = text[text.index("pooled over seeds"):]
    (line,) = [row for row in pooled.splitlines() if row.startswith(f"| {evidence} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_one_scorer_on_several_seeds_gets_its_controls_pooled():
    seeds = [_controls(s) for s in (0, 1, 2)]
    text = controls_section(seeds, n_boot=300)
    assert "pooled over seeds 0, 1, 2 (900 pairs)" in text
    nearest = _pooled_row(text, "5 nearest")
    per_seed = [seeds[s]["controls"]["nearest"]["delta_vs_none"] for s in range(3)]
    assert nearest[3] == ", ".join(f"{100 * d:+.2f}" for d in per_seed)
    assert nearest[2].startswith(f"{100 * np.mean(per_seed):+.2f} [")
    low = float(nearest[2].split("[")[1].split(",")[0])
    assert low > 0  # the planted signal is read on every seed
    assert _pooled_row(text, "5 random")[2] == "+0.00 [+0.00, +0.00]"
    assert _pooled_row(text, "5 shuffled")[2].startswith("-")
    assert _pooled_row(text, "none")[1] == f"{100 * np.mean([c['controls']['none']['auc'] for c in seeds]):.2f}"


def test_no_pooled_table_for_one_seed_or_without_per_pair_scores():
    assert "pooled over seeds" not in controls_section([_controls(0)], n_boot=100)
    assert "pooled over seeds" not in controls_section([_controls(0, per_pair=False), _controls(1)], n_boot=100)
    # two scorers on one seed each: nothing to pool
    text = controls_section([_controls(0, scorer="a"), _controls(1, scorer="b")], n_boot=100)
    assert "pooled over seeds" not in text
    assert text.count("| 5 nearest |") == 2
