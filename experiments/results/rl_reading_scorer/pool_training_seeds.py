"""Each trained variant of a policy_tuning.py run, pooled over its training seeds, against greedy (and one variant
against another) on the same rows: mean AUC difference, pair bootstrap with every seed on the same pairs.

python experiments/results/rl_reading_scorer/pool_training_seeds.py OUT VARIANT [VARIANT ...]
(OUT: policy_tuning.py's --out; a variant trained with --train-seeds S0 S1 ... has results VARIANT, VARIANT-seedS1, ...)
"""
import sys
from pathlib import Path

import numpy as np

from coral.stats import format_interval, pooled_auc_difference

out, variants = Path(sys.argv[1]), sys.argv[2:]
greedy = np.load(out / "greedy.npz")


def seeds_of(variant: str) -> dict[str, dict]:
    """The variant's runs by training seed ("" for the first seed, VARIANT.npz), seeds in numeric order."""
    extra = {f.stem.rsplit("-seed", 1)[1]: f for f in out.glob(f"{variant}-seed*.npz")}
    files = {"": out / f"{variant}.npz"} | {s: extra[s] for s in sorted(extra, key=int)}
    runs = {s: dict(np.load(f)) for s, f in files.items()}
    for run in runs.values():  # policy_tuning.py evaluates every method on greedy's rows, in greedy's order
        assert np.array_equal(run["rows"], greedy["rows"]), "not greedy's rows"
    return runs


def pooled(a: list[dict], b: list[dict]) -> str:
    r = pooled_auc_difference(
        [x["labels"] for x in a], [x["p"][-1] for x in a], [x["p"][-1] for x in b], shared_pairs=True
    )
    return format_interval(r.estimate, r.low, r.high)


runs = {v: seeds_of(v) for v in variants}
for v, seeds in runs.items():
    pooled_vs_greedy = pooled(list(seeds.values()), [dict(greedy)] * len(seeds))
    print(f"{v} - greedy, {len(seeds)} training seeds pooled: {pooled_vs_greedy}")
for i, a in enumerate(variants):
    for b in variants[i + 1 :]:
        if runs[a].keys() == runs[b].keys():  # paired seed by seed
            paired = pooled(list(runs[a].values()), [runs[b][s] for s in runs[a]])
            print(f"{a} - {b}, same training seeds paired: {paired}")
