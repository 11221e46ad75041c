"""How much the like-share of the k nearest pieces can add to a reader of the default scorer's numbers; no LLM.

Issue 27's lever "evidence count (5 -> 10, 20)": before an LLM is aligned to read more pieces, a linear
reader measures what more pieces could give it. For each split seed, input twins
(:mod:`coral.align.twins`, logistic regressions with C cross-validated on their own targets) are fitted
on the whole ``align`` fold (the alignment's pool of targets) and scored on ``coral run``'s shared test
pairs of that seed: LR(base rates + CF embeddings), the numbers the default prompt gives the LLM, and
the same with the like-share of the k nearest pieces (greedy's evidence) for each k. Every Δ is paired
on the same pairs and pooled over the seeds::

    python experiments/share_ceiling.py --seeds 0 1 2 3 --pairs 900 --ks 5 10 20 50
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from coral.align.topk import evidence_index
from coral.align.twins import InputTwin, twin_name
from coral.data.folds import fold_interactions
from coral.envs.config import EnvConfig
from coral.envs.resources import resolve_dataset, resolve_embeddings
from coral.errors import CoralError
from coral.pipeline.pairs import SharedPairs
from coral.stats import format_interval, pooled_auc_difference

#: The numbers the default prompt gives the LLM (base rates and the soft tokens' CF embeddings).
NUMBERS = ("rates", "cf")


def seed_scores(dataset_name: str, seed: int, pairs: int, ks: list[int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One split seed's test labels and each twin's P(like) on its shared test pairs.

    :param dataset_name: a registered dataset.
    :param seed: split seed (and warm-start seed, as ``coral run``).
    :param pairs: shared test pairs (``coral run``'s draw).
    :param ks: nearest pieces of the like-share inputs.
    """
    env = EnvConfig.from_any(dataset=dataset_name, split_seed=seed, warm_start="dfm", embedding_seed=seed)
    dataset = resolve_dataset(env.data)
    index = evidence_index(dataset, resolve_embeddings(dataset, env.warm, seed=seed))
    targets = fold_interactions(dataset, "align")
    rows = SharedPairs.draw(dataset, pairs, 0, seed).test
    users, items, labels = dataset.test.user[rows], dataset.test.item[rows], dataset.test.label[rows]
    # (inputs, k): the numbers alone (k unused), then the numbers with the like-share of each k.
    twins = [(NUMBERS, 1), *(((*NUMBERS, "share"), k) for k in ks)]
    scores = {}
    for inputs, k in twins:
        twin = InputTwin.fit(dataset, index, targets, inputs, k, c=None)
        scores[twin.name] = twin.predict(dataset, index, users, items)
    return labels, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="movielens_small", help="a registered dataset")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="split seeds")
    parser.add_argument("--pairs", type=int, default=900, help="shared test pairs per seed (coral run's draw)")
    parser.add_argument("--ks", nargs="+", type=int, default=[5, 10, 20], help="nearest pieces of the like-share")
    args = parser.parse_args(argv)
    per_seed = [seed_scores(args.dataset, seed, args.pairs, args.ks) for seed in args.seeds]
    ys = [labels for labels, _ in per_seed]
    base = twin_name(NUMBERS)
    print(f"| twin | AUC per seed ({', '.join(map(str, args.seeds))}) | − {base}, pooled |\n|---|---|---|")
    for name in per_seed[0][1]:
        aucs = " / ".join(f"{100 * roc_auc_score(y, s[name]):.2f}" for y, s in per_seed)
        cell = ""
        if name != base:  # the Δ against the numbers alone, for the twins that add a like-share
            delta = pooled_auc_difference(ys, [s[name] for _, s in per_seed], [s[base] for _, s in per_seed])
            cell = format_interval(delta.estimate, delta.low, delta.high)
        print(f"| {name} | {aucs} | {cell} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CoralError as error:  # an unknown dataset, a split too small for the pairs: one line, no traceback
        sys.exit(f"error: {error}")
