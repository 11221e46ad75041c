"""What the label-aware reference costs in ``coral run``: prompts per second and seconds per pair.

Usage:
    python experiments/bench/label_aware_cost.py --scorer aligned:RUN/stages/align-seed0-*/aligned \\
        --pairs 16 --candidates 20+10 50+50

The reference (:class:`coral.policies.label_aware.LabelAwarePolicy`) scores every candidate's
prompt at every round: (nearest + random) x K prompts per pair on top of the episode's own K + 1.
This runs it exactly as ``coral run``'s ``reference-label-aware-...`` stage does (the run's
environment for seed 0, the first warm start, ``train.n_envs`` episodes per batch) on ``--pairs``
of the seed's shared test pairs, once per candidate set, and prints side by side: candidate prompts,
seconds, prompts/s, seconds per pair and the extrapolated minutes for ``--for-pairs`` pairs. Each
candidate set runs on its own pairs (disjoint slices), so that no set reads prompts another one
computed; the scorer's persistent score cache is off.
"""

from __future__ import annotations

import argparse
import os
import time

from coral.threads import set_thread_defaults

set_thread_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="movielens_small")
    parser.add_argument("--scorer", required=True, help="the methods' scorer, e.g. aligned:PATH (or scripted)")
    parser.add_argument("--pairs", type=int, default=16, help="test pairs per candidate set")
    parser.add_argument("--candidates", nargs="+", default=["20+10", "50+50"], help="NEAREST+RANDOM candidate sets")
    parser.add_argument(
        "--for-pairs", type=int, default=300, help="extrapolate the minutes per seed for this many pairs"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from coral.config import from_dict
    from coral.envs import EnvResources
    from coral.llm import make_scorer
    from coral.pipeline.config import RunConfig
    from coral.pipeline.headroom import reference_rows
    from coral.pipeline.pairs import SharedPairs
    from coral.pipeline.run import MainJob
    from coral.policies.evaluate import evaluate_policy
    from coral.policies.label_aware import LabelAwarePolicy

    config = from_dict(
        RunConfig,
        {
            "dataset": args.dataset,
            "scorer": args.scorer,
            "align": False,
            "seeds": [0],
            "eval_pairs": 900,
            "valid_pairs": 300,
        },
    )
    job = MainJob(config, out=None, log=lambda _: None)  # type: ignore[arg-type]
    ds = job.dataset(args.dataset, 0)
    pairs = SharedPairs.draw(ds, config.eval_pairs, config.valid_pairs, config.data.split_seed)
    env = job.env_config(ds, args.scorer, config.warm_starts[0], 0)
    scorer = make_scorer(args.scorer, cache=False, layout=env.scorer.layout)
    resources = EnvResources(dataset=ds, scorer=scorer)
    rows = reference_rows(ds, pairs, args.pairs * len(args.candidates))
    print(
        f"{args.dataset}, scorer {args.scorer}, {os.cpu_count()} CPUs, torch threads {args.threads}, K = {env.rounds}, "
        f"{config.train.n_envs} episodes per batch"
    )
    print(
        f"{'candidates':>12} {'pairs':>6} {'cand. prompts':>14} {'seconds':>8} {'prompts/s':>10} {'s/pair':>7} "
        f"{f'min/{args.for_pairs} pairs':>16} "
        f"{'tokens computed/prompt':>23} {'reused/prompt':>14}"
    )
    for k, spec in enumerate(args.candidates):
        nearest, random = (int(x) for x in spec.split("+"))
        policy = LabelAwarePolicy(nearest, random, seed=0)
        chunk = rows[k :: len(args.candidates)][: args.pairs]
        before = scorer.stats()
        start = time.perf_counter()
        result = evaluate_policy(
            policy, env, resources, split="test", batch_size=config.train.n_envs, episodes=chunk, progress=False
        )
        seconds = time.perf_counter() - start
        prompts = policy.prompts_scored + result.prompts_scored
        per_pair = seconds / len(chunk)
        after = scorer.stats()
        computed, reused = (
            (after.get(k, 0) - before.get(k, 0)) / prompts for k in ("tokens_computed", "tokens_reused")
        )
        print(
            f"{spec:>12} {len(chunk):>6} {policy.prompts_scored:>14} {seconds:>8.1f} {prompts / seconds:>10.1f} "
            f"{per_pair:>7.2f} "
            f"{per_pair * args.for_pairs / 60:>16.1f} {computed:>23.1f} {reused:>14.1f}"
        )


if __name__ == "__main__":
    main()
