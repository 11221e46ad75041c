"""Random, greedy, learned and label-aware retrieval on the scripted environments, in seconds to minutes.

For RL researchers who want to iterate without the LLM: every policy runs K = 5 deterministic
rounds on the same rows of the validation split's ``tuning`` role, and the table gives the mean
return |p_0 - y| - |p_K - y|, the AUC after round K, AUC − greedy's AUC with its paired 95%
bootstrap interval, the overlap with greedy's evidence and the seconds each row took (training
included). Environments:

- ``planted`` (``CoRAL/CollabRetrieval-Planted-v1`` / ``CoRAL/CandidateRetrieval-Planted-v0``):
  greedy retrieval is wrong by construction (most of a target's nearest pieces rate its popular
  twin of the opposite quality); a policy that reads a candidate's side can be right.
- ``movielens`` (``CoRAL/CollabRetrieval-Scripted-v1`` / ``CoRAL/CandidateRetrieval-Scripted-v0``
  on movielens_small with the DFM warm start): the scripted scorer (each liked piece +1 logit,
  each disliked one -1) on real neighbourhoods.

Learned rows: PPO on query actions (v1), MaskablePPO on the candidates of v1 (its observation
says nothing about them), MaskablePPO with candidate features (CandidateRetrieval-v0, the shared
candidate scorer), each with ``coral train``'s settings unless ``--timesteps`` is given.

    python experiments/scripted_table.py                      # planted only, ~1 min on 2 cores
    python experiments/scripted_table.py --envs planted movielens --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from coral.config import from_dict
from coral.envs import EnvConfig, EnvResources
from coral.envs.candidates import CANDIDATE_KEYS
from coral.envs.resources import resolve_dataset, resolve_embeddings, resolve_scorer
from coral.metrics import binary_metrics
from coral.policies.config import TrainConfig
from coral.policies.evaluate import EvaluationResult, evaluate_policy, mean_return, tuning_episodes
from coral.policies.greedy import GreedyPolicy
from coral.policies.label_aware import LabelAwarePolicy
from coral.policies.random_policy import RandomPolicy
from coral.policies.run_dir import load_run_policy
from coral.policies.train import train
from coral.stats import format_interval, paired_auc_difference

#: Learned rows: name -> (TrainConfig keys, environment keys).
LEARNED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "PPO, query actions (v1)": ({"algo": "ppo"}, {}),
    "MaskablePPO, candidates (v1 observation)": ({"algo": "maskable_ppo"}, {}),
    "MaskablePPO, candidate features (CandidateRetrieval-v0)": ({"algo": "maskable_ppo"}, {"observe": "candidates"}),
}


def environment(name: str, seed: int) -> tuple[EnvConfig, EnvResources]:
    """The config (query actions) and loaded resources of a scripted environment."""
    if name == "planted":
        from coral.envs.planted import planted_config, planted_resources

        return planted_config(embedding_seed=seed), planted_resources(seed)
    if name == "movielens":
        cfg = EnvConfig.from_any(dataset="movielens_small", scorer="scripted", warm_start="dfm", embedding_seed=seed)
        dataset = resolve_dataset(cfg.data)
        tables = resolve_embeddings(dataset, cfg.warm, seed=seed)
        return cfg, EnvResources(dataset=dataset, scorer=resolve_scorer(cfg.scorer), embeddings=tables)
    raise SystemExit(f"error: unknown environment {name!r} (planted, movielens)")


def learned_policy(
    cfg: EnvConfig, resources: EnvResources, train_keys: dict[str, Any], env_keys: dict[str, Any], seed: int,
    timesteps: int | None, out: Path,
) -> tuple[Any, EnvConfig]:
    """Train a policy with ``coral train``'s settings (quietly); returns it and its evaluation environment."""
    keys = {k: v for k, v in _env_keys(cfg).items()} | env_keys
    base = {
        "out": str(out), "seed": seed, "checkpoint_every": 0, "val_every": 0, "progress": False, "threads": 1,
        **train_keys, **keys,
    }
    if timesteps is not None:
        base["timesteps"] = timesteps
    config = from_dict(TrainConfig, base)
    with contextlib.redirect_stdout(io.StringIO()):
        train(config, resources)
    config, policy = load_run_policy(out)
    return policy, config.env_config("valid")


def _env_keys(cfg: EnvConfig) -> dict[str, Any]:
    """The flat keys of an environment config that a TrainConfig takes."""
    from coral.config import to_dict

    skip = {"split", "mode", "action_mode", "embedding_seed"}
    return {k: v for k, v in to_dict(cfg).items() if k not in skip}


def row(name: str, result: EvaluationResult, greedy: EvaluationResult | None, seconds: float) -> dict[str, Any]:
    """One table row's numbers."""
    y = result.labels
    auc = float(binary_metrics(y, result.p[-1], n_boot=0)["auc"])
    delta = paired_auc_difference(y, result.p[-1], greedy.p[-1], n_boot=1000) if greedy is not None else None
    stats = result.retrieval_statistics()
    return {
        "policy": name, "return": mean_return(result), "auc": auc,
        "delta": (delta.estimate, delta.low, delta.high) if delta is not None else None,
        "jaccard": stats["greedy_jaccard"], "first": stats["greedy_first_share"], "seconds": seconds,
    }


def run_env(name: str, seed: int, n_rows: int, timesteps: int | None, work: Path) -> list[dict[str, Any]]:
    """Every policy on one environment and seed."""
    cfg, resources = environment(name, seed)
    rows = tuning_episodes(resources.dataset, n_rows)
    candidates = EnvConfig.from_any(cfg, **CANDIDATE_KEYS)

    def evaluate(policy: Any, env: EnvConfig) -> EvaluationResult:
        return evaluate_policy(policy, env, resources, split="valid", episodes=rows, batch_size=16, progress=False)

    def timed(make: Callable[[], EvaluationResult]) -> tuple[EvaluationResult, float]:
        start = time.perf_counter()
        return make(), time.perf_counter() - start

    greedy, seconds = timed(lambda: evaluate(GreedyPolicy(), cfg))
    out = [row("greedy (the zero action)", greedy, None, seconds)]
    result, seconds = timed(lambda: evaluate(RandomPolicy(seed), cfg))
    out.append(row("random", result, greedy, seconds))
    for label, (train_keys, env_keys) in LEARNED.items():
        def fit_and_evaluate(train_keys=train_keys, env_keys=env_keys) -> EvaluationResult:
            policy, env = learned_policy(
                cfg, resources, train_keys, env_keys, seed, timesteps, work / f"{name}-{len(out)}-seed{seed}"
            )
            return evaluate(policy, env)

        result, seconds = timed(fit_and_evaluate)
        out.append(row(label, result, greedy, seconds))
    # The label-aware reference (reads y: not a method): among the candidates of the candidates
    # mode (the choice the candidate policies have), and among 50 nearest + 50 random pieces.
    result, seconds = timed(lambda: evaluate(LabelAwarePolicy(), candidates))
    out.append(row(f"label-aware reference, {cfg.n_candidates} nearest candidates", result, greedy, seconds))
    result, seconds = timed(lambda: evaluate(LabelAwarePolicy(50, 50, seed=seed), cfg))
    out.append(row("label-aware reference, 50 nearest + 50 random", result, greedy, seconds))
    return out


def markdown(name: str, seed: int, n: int, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"### {name}, seed {seed}, {n} tuning rows of validation",
        "",
        "| policy | return | AUC | AUC − greedy [95% CI] | Jaccard with greedy | greedy's first piece | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        delta = format_interval(*r["delta"]) if r["delta"] else ""
        lines.append(
            f"| {r['policy']} | {r['return']:+.3f} | {100 * r['auc']:.2f} | {delta} | {r['jaccard']:.2f} | "
            f"{r['first']:.2f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["planted"], help="planted, movielens")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rows", type=int, default=0, help="tuning rows evaluated (0: all of them)")
    parser.add_argument(
        "--timesteps", type=int, default=None, help="training timesteps of the learned rows (default: coral train's)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="scripted-table-") as tmp:
        for name in args.envs:
            for seed in args.seeds:
                rows = run_env(name, seed, args.rows, args.timesteps, Path(tmp))
                n = len(tuning_episodes(environment(name, seed)[1].dataset, args.rows))
                print(markdown(name, seed, n, rows) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
