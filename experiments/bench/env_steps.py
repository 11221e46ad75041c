"""Environment steps per second with the embedded LLM (1 env and N batched envs), and the LLM's share.

Usage:
    python experiments/bench/env_steps.py --dataset gift_cards --steps 40 --n-envs 1 8

Random query actions on training episodes; the scorer is the embedded LLM without the
persistent score cache (``make_scorer("hf", cache=False)``), so every prompt is computed, with
the KV-prefix reuse across steps that the incremental prompt order allows. ``--scorer scripted``
measures everything except the LLM.
"""

from __future__ import annotations

import argparse
import time

from coral.threads import set_thread_defaults

set_thread_defaults()

import numpy as np  # noqa: E402

from coral.llm.base import Scorer, ScoreResult  # noqa: E402


class TimedScorer(Scorer):
    """Wraps a scorer and adds up the wall time spent inside it."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.fingerprint = inner.fingerprint
        self.tokenizer = getattr(inner, "tokenizer", None)
        self.seconds = 0.0
        self.prompts = 0

    def score_details(self, prompts) -> ScoreResult:
        start = time.perf_counter()
        out = self.inner.score_details(prompts)
        self.seconds += time.perf_counter() - start
        self.prompts += len(prompts)
        return out

    def stats(self) -> dict[str, float]:
        return self.inner.stats()


def bench(dataset: str, scorer: TimedScorer, n_envs: int, steps: int, seed: int) -> dict[str, float]:
    """Run ``steps`` vector steps of ``n_envs`` batched environments; env steps/s and LLM share."""
    from coral.envs import EnvConfig, EnvResources, make_env
    from coral.envs.vector import make_batched_vec_env

    cfg = EnvConfig.from_any(dataset=dataset, warm_start="dfm")
    resources = EnvResources(scorer=scorer)
    rng = np.random.default_rng(seed)
    if n_envs == 1:
        env = make_env(cfg, resources=resources)
        env.reset(seed=seed)
        scorer.seconds, scorer.prompts = 0.0, 0
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            if terminated or truncated:
                env.reset()
    else:
        vec = make_batched_vec_env(cfg, n_envs=n_envs, seed=seed, resources=resources)
        vec.reset()
        scorer.seconds, scorer.prompts = 0.0, 0
        start = time.perf_counter()
        for _ in range(steps):
            vec.step(rng.uniform(-1, 1, (n_envs, *vec.action_space.shape)).astype(np.float32))
    total = time.perf_counter() - start
    env_steps = steps * n_envs
    return {
        "n_envs": n_envs, "env_steps": env_steps, "seconds": total, "steps_per_s": env_steps / total,
        "llm_share": scorer.seconds / total, "prompts": scorer.prompts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gift_cards")
    parser.add_argument("--scorer", default="hf", help="hf (embedded LLM, no score cache) or scripted")
    parser.add_argument("--steps", type=int, default=40, help="vector steps per setting")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.scorer == "hf":
        from coral.llm import make_scorer

        inner = make_scorer("hf", cache=False)
    else:
        from coral.llm import make_scorer

        inner = make_scorer(args.scorer)
    scorer = TimedScorer(inner)
    print(
        f"scorer {inner.fingerprint}, dataset {args.dataset}, {args.steps} vector steps per setting, torch threads "
        f"{args.threads}"
    )
    for n in args.n_envs:
        r = bench(args.dataset, scorer, n, args.steps, args.seed)
        print(
            f"n_envs={r['n_envs']:>3}  env steps {r['env_steps']:>5}  {r['seconds']:8.1f} s  {r['steps_per_s']:8.2f} "
            f"env steps/s  LLM share {100 * r['llm_share']:5.1f}%  prompts scored {r['prompts']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
