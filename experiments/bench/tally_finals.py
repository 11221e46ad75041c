"""Issue 27: the evidence-tally scorer beside the default on test (experiments/results/scorer_ablation.md).

``python experiments/bench/tally_finals.py --tally-run runs/scorer_tally --benchmark-run runs/benchmark``

Reads the evidence controls of both scorers on the same shared test pairs of each seed (the default
scorer's from the benchmark's run, the tally scorer's from ``experiments/scorer_tally.yaml``'s) and
prints Markdown rows: per seed the pair bootstrap, then pooled over seeds and the two-level bootstrap;
then the tally scorer reading its 5 nearest against the non-LLM references of the same pairs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from coral.pipeline.run import read_controls
from coral.pipeline.scores import load_scores
from coral.stats import format_interval, paired_auc_difference, pooled_auc_difference, two_level_auc_difference

TALLY, DEFAULT = "top2-finetune+rates+cf4+tally", "top2-finetune+rates+cf4"


def stage(root: Path, name: str, seed: int) -> Path:
    found = sorted((root / "stages").glob(f"{name}-seed{seed}-*"))
    if len(found) != 1:
        raise SystemExit(f"{root}: expected one stage {name}-seed{seed}-*, found {len(found)}")
    return found[0]


def method_scores(root: Path, name: str, model: str, seed: int, rows: np.ndarray) -> np.ndarray:
    """``model``'s test P on ``rows`` (its last round for a per-round method)."""
    for m in load_scores(stage(root, name, seed) / "scores.npz"):
        if m.model == model:
            position = {int(r): k for k, r in enumerate(m.test.rows)}
            p = np.asarray(m.test.p)
            return (p[-1] if p.ndim == 2 else p)[[position[int(r)] for r in rows]]
    raise SystemExit(f"{root}: no model {model!r} in stage {name}-seed{seed}")


def row(label: str, ys, a, b) -> str:
    per_seed = [paired_auc_difference(y, x, z) for y, x, z in zip(ys, a, b, strict=True)]
    overall = [pooled_auc_difference(ys, a, b), two_level_auc_difference(ys, a, b)]
    return (
        f"| {label} | " + " | ".join(format_interval(r.diff, r.low, r.high) for r in per_seed)
        + "".join(f" | {format_interval(e.estimate, e.low, e.high)}" for e in overall) + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tally-run", type=Path, default=Path("runs/scorer_tally"))
    parser.add_argument("--benchmark-run", type=Path, default=Path("runs/benchmark"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    new = {s: read_controls(stage(args.tally_run, f"controls@{TALLY}", s))["per_pair"] for s in seeds}
    old = {s: read_controls(stage(args.benchmark_run, f"controls@{DEFAULT}", s))["per_pair"] for s in seeds}
    for s in seeds:
        if not (np.array_equal(new[s]["rows"], old[s]["rows"]) and np.array_equal(new[s]["labels"], old[s]["labels"])):
            raise SystemExit(f"seed {s}: the two runs' controls are not on the same pairs")
    ys = [new[s]["labels"] for s in seeds]
    print("| scorer: comparison | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled pairs | two-level |")
    print("|---|" + "---|" * (len(seeds) + 2))
    for name, runs in ((f"{DEFAULT} (default)", old), (TALLY, new)):
        for control in ("nearest", "random", "shuffled"):
            a = [runs[s][f"p_{control}"] for s in seeds]
            print(row(f"{name}: 5 {control} − none", ys, a, [runs[s]["p_none"] for s in seeds]))
    for control in ("nearest", "none"):
        a, b = [new[s][f"p_{control}"] for s in seeds], [old[s][f"p_{control}"] for s in seeds]
        print(row(f"tally − default: {'5 nearest' if control == 'nearest' else 'no evidence'}", ys, a, b))
    print("\n| the tally scorer reading its 5 nearest − reference | " + " | ".join(f"seed {s}" for s in seeds)
          + " | pooled pairs | two-level |")
    print("|---|" + "---|" * (len(seeds) + 2))
    references = [
        ("kNN like-share (DFM)", args.tally_run, "knn-share-dfm", "knn-share-dfm"),
        ("LR(base rates + CF embeddings + like-share), this alignment's twin", args.tally_run, "twins",
         "twin-rates+cf+share-dfm"),
        ("LR(base rates), this alignment's twin", args.tally_run, "twins", "twin-rates"),
        ("CausE + side features (the benchmark's best CTR by validation)", args.benchmark_run, "baselines+side",
         "cause+side"),
        ("DCN", args.benchmark_run, "baselines", "dcn"),
    ]
    nearest = [new[s]["p_nearest"] for s in seeds]
    for label, root, name, model in references:
        print(row(label, ys, nearest, [method_scores(root, name, model, s, new[s]["rows"]) for s in seeds]))


if __name__ == "__main__":
    main()
