"""How many shared evaluation pairs does a paired AUC comparison need? (issue 12: choosing N)

Cheap scorers stand in for the LLM methods: the six CTR baselines and the mean-rating reference,
trained once on the dataset (seed 0). For every pair of them and every subset size N, this draws
``--repeats`` seeded stratified subsets of the test split (``coral.data.sample.stratified_subset``, proportional,
the rule ``coral run`` uses) and records the half-width of the paired bootstrap 95% interval of
the AUC difference (``coral.stats.paired_auc_difference``) and DeLong's standard deviation of the
difference. Half-widths shrink as 1/sqrt(N), so each pair's constant c = half-width * sqrt(N) gives
the N that reaches a target half-width: N = (c / target)^2. Printed beside: the correlation of the
two AUC estimates (DeLong) and the half-width two *uncorrelated* scorers of these AUCs would have,
an upper bound for methods that share little with the CTR models.

    python experiments/bench/pairs_power.py --dataset movielens_small --sizes 250,500,1000,1500,2000,3000 --repeats 20
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens_small")
    parser.add_argument("--models", default="dfm,dcn,wdl,afm,ips,cause,mean")
    parser.add_argument("--sizes", default="250,500,1000,1500,2000,3000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--target", type=float, default=0.03, help="half-width to reach")
    args = parser.parse_args()

    from coral.baselines import BaselineConfig
    from coral.baselines.runner import fit_and_score
    from coral.data import load_dataset
    from coral.data.sample import stratified_subset
    from coral.stats import delong, paired_auc_difference

    ds = load_dataset(args.dataset)
    labels = np.asarray(ds.test.label, dtype=np.int64)
    scores = {}
    for name in args.models.split(","):
        start = time.perf_counter()
        fitted = fit_and_score(ds, name, 0, BaselineConfig())
        scores[name] = fitted.test
        print(
            f"{name}: test AUC {delong(labels, fitted.test, fitted.test).auc_a:.4f} ({time.perf_counter() - start:.0f} "
            "s)",
            flush=True,
        )

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"\ntest split: {len(labels)} pairs, {int((labels == 0).sum())} negative; {args.repeats} subsets per size, "
        f"{args.n_boot} resamples"
    )
    print(
        "pair         "
        + "".join(f"  N={n:<5}" for n in sizes)
        + "   c=hw*sqrt(N)  N for hw<=%.3f  corr  hw if uncorrelated (N=1000)" % args.target
    )
    worst = 0.0
    for a, b in itertools.combinations(scores, 2):
        widths, cs = [], []
        for n in sizes:
            hw = []
            for r in range(args.repeats):
                idx = stratified_subset(labels, n, r, proportional=True)
                res = paired_auc_difference(labels[idx], scores[a][idx], scores[b][idx], n_boot=args.n_boot, seed=r)
                hw.append((res.high - res.low) / 2)
            widths.append(float(np.mean(hw)))
            cs.append(widths[-1] * math.sqrt(min(n, len(labels))))
        c = float(np.median(cs))
        full = delong(labels, scores[a], scores[b])
        corr = full.cov_ab / math.sqrt(full.var_a * full.var_b)
        uncorrelated = 1.96 * math.sqrt(full.var_a + full.var_b) * math.sqrt(len(labels) / 1000)
        worst = max(worst, c)
        print(
            f"{a:>5} - {b:<5}"
            + "".join(f"  {w:.4f} " for w in widths)
            + f"   {c:.3f}        {math.ceil((c / args.target) ** 2):>5}        {corr:.2f}  {uncorrelated:.4f}"
        )
    print(
        f"\nworst pair: c = {worst:.3f}, N = {math.ceil((worst / args.target) ** 2)} for a half-width of {args.target}"
    )


if __name__ == "__main__":
    main()
