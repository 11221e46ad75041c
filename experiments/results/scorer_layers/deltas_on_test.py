"""Paired Δs on test of the layers lever (issue 27): top8 vs top2 on the same shared test pairs, from the saved
scores of `coral run --config experiments/scorer_layers.yaml` runs (their controls, kNN and baselines stages).

python experiments/results/scorer_layers/deltas_on_test.py TOP8_RUN TOP2_RUN [TOP8_RUN TOP2_RUN ...]

Each pair of runs is one split seed (the seed of its stages); with several, the figures per seed and then pooled
over the seeds (pair bootstrap within each seed, :func:`coral.stats.pooled_auc_difference`).
"""

import glob
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from coral.errors import CoralError
from coral.pipeline.run import read_controls
from coral.pipeline.scores import load_scores
from coral.stats import format_interval, paired_auc_difference, pooled_auc_difference

COMPARISONS = [
    *((f"{n} {e}", f"{n} none") for n in ("top8", "top2") for e in ("nearest", "random", "shuffled")),
    ("top8 nearest", "top2 nearest"),
    ("top8 none", "top2 none"),
]


def controls(run: str) -> tuple[int, dict[str, np.ndarray]]:
    (stage,) = Path(run).glob("stages/controls@*")
    figures = read_controls(stage)
    return figures["seed"], figures["per_pair"]


def seed_scores(top8_run: str, top2_run: str) -> tuple[int, np.ndarray, dict[str, np.ndarray]]:
    """One seed's labels and scores: both scorers' controls, and the CTR and kNN rows of the top8 run."""
    (seed, top8), (seed2, top2) = controls(top8_run), controls(top2_run)
    same = np.array_equal(top8["rows"], top2["rows"]) and np.array_equal(top8["labels"], top2["labels"])
    if seed != seed2 or not same:
        raise SystemExit(f"{top8_run} and {top2_run} were not scored on the same test pairs")
    rows = top8["rows"]
    scores = {
        f"{name} {e}": run[f"p_{e}"] for name, run in (("top8", top8), ("top2", top2))
        for e in ("none", "nearest", "random", "shuffled")
    }
    for path in sorted(glob.glob(f"{top8_run}/stages/*-seed{seed}-*/*.npz")):
        for method in load_scores(path) if not path.endswith("controls.npz") else ():
            try:
                scores[method.model] = method.test.at(rows).p[-1]
            except CoralError:  # a method that did not score every shared pair: no row here
                continue
    return seed, top8["labels"], scores


def main(runs: list[str]) -> None:
    seeds = [seed_scores(runs[i], runs[i + 1]) for i in range(0, len(runs), 2)]
    for seed, y, scores in seeds:
        print(f"--- seed {seed}, {len(y)} test pairs ({int((y == 0).sum())} negative)")
        for name, s in scores.items():
            print(f"AUC {name:<28} {100 * roc_auc_score(y, s):.2f}")
        others = [(a, b) for a in ("top8 nearest",) for b in scores if " " not in b]
        for a, b in COMPARISONS + others:
            r = paired_auc_difference(y, scores[a], scores[b])
            print(f"{a:<16} - {b}: {format_interval(r.diff, r.low, r.high)} p={r.p_value:.2g}")
    if len(seeds) > 1:
        print(f"--- pooled over seeds {', '.join(str(s) for s, _, _ in seeds)} (pair bootstrap within each seed)")
        ys = [y for _, y, _ in seeds]
        for a, b in COMPARISONS:
            r = pooled_auc_difference(ys, [s[a] for *_, s in seeds], [s[b] for *_, s in seeds])
            print(f"{a:<16} - {b}: {format_interval(r.estimate, r.low, r.high)}")


if __name__ == "__main__":
    main(sys.argv[1:])
