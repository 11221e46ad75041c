"""``coral train`` and ``coral evaluate``: the retrieval policy's sub-commands."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from coral.cli.common import add_command, require_output_dir, require_output_file
from coral.config import add_arguments, from_args, leaves, require, section
from coral.envs.collab_retrieval import EnvConfig
from coral.errors import CoralError
from coral.policies.config import TrainConfig


@dataclass(frozen=True)
class TrainCommand:
    """``coral train``: a training run, or the continuation of one."""

    train: TrainConfig = section(TrainConfig, flat=True)
    """The run."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint, with its saved config (only --timesteps, to raise the total,
    --progress and, for an rllib run, --num-env-runners may be given)."""


@dataclass(frozen=True)
class EvaluateCommand:
    """``coral evaluate``: K deterministic rounds per interaction, AUC/F1 after each round."""

    run: Optional[str] = None
    """A coral train run directory to evaluate (or give --policy)."""
    policy: Optional[Literal["random", "greedy", "label-aware"]] = None
    """Evaluate a policy that needs no training instead of a run (label-aware: the reference that reads the targets'
    labels, evaluation only, rows named reference-label-aware-WARM)."""
    split: Literal["test", "valid"] = "test"
    """The split evaluated."""
    rows: Literal["all", "tuning"] = "all"
    """With --split valid: all validation rows, or only the tuning role's (where policy settings are compared; never the
    threshold or early-stopping rows)."""
    label_aware_nearest: int = 50
    """With --policy label-aware: candidates per round among the nearest unused interactions (query mode)."""
    label_aware_random: int = 50
    """With --policy label-aware: candidates per round drawn at random (query mode)."""
    threshold: Literal["valid", "0.5"] = "valid"
    """F1 threshold: tuned on the validation rounds, or 0.5."""
    results: Optional[str] = None
    """results.csv to append to; None: RUN/results.csv, or OUT/results.csv with --policy."""
    limit: Optional[int] = None
    """Only N >= 2 interactions of each split: a seeded subset keeping both classes (quick checks)."""
    batch_size: int = 16
    """Episodes scored together."""
    n_boot: int = 1000
    """Bootstrap resamples of the AUC interval; 0 = none."""
    env: EnvConfig = section(EnvConfig, flat=True, skip=("split", "mode", "embedding_seed"))
    """With --policy: the environment (a run brings its own)."""
    seed: int = 0
    """With --policy: seed of the random draws and of the warm start."""
    out: str = "runs/baselines"
    """With --policy: where the JSONL and results go."""

    def __post_init__(self) -> None:
        require(
            self.limit is None or self.limit >= 2,
            "limit",
            f"must be >= 2 (a subset that keeps both classes) or none, got {self.limit}",
        )
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.n_boot >= 0, "n_boot", f"must be >= 0, got {self.n_boot}")
        require(self.rows == "all" or self.split == "valid", "rows", "tuning needs --split valid")
        require(
            self.label_aware_nearest >= 0
            and self.label_aware_random >= 0
            and self.label_aware_nearest + self.label_aware_random >= 1,
            "label_aware_nearest",
            "and --label-aware-random must be >= 0 with at least one candidate",
        )


def _resumed_config(args: argparse.Namespace) -> TrainConfig:
    """The saved config of the run in --out, with --timesteps and --progress applied."""
    # How many processes sample is not part of what is learned: an rllib run may resume on another count.
    allowed = {"out", "timesteps", "progress", "resume", "num_env_runners"}
    extra = [leaf.flag for leaf in leaves(TrainCommand) if hasattr(args, leaf.name) and leaf.key[-1] not in allowed]
    if extra or getattr(args, "config_file", None):
        raise CoralError(
            f"--resume continues a run with its saved config; {', '.join(extra) or '--config'} cannot be given with it"
        )
    out = Path(getattr(args, "out", TrainConfig.out))
    path = out / "config.json"
    if not path.is_file():
        raise CoralError(f"{out}: nothing to resume (no config.json)")
    # The run may have been moved or copied since: it lives where --out says now.
    saved = dataclasses.replace(TrainConfig.load(path), out=str(out))
    return from_args(TrainCommand, args, base=TrainCommand(train=saved, resume=True)).train


def train(args: argparse.Namespace) -> int:
    from coral.policies.train import train as run_training

    if getattr(args, "resume", False):
        config, resume = _resumed_config(args), True
    else:
        config, resume = from_args(TrainCommand, args).train, False
    require_output_dir(config.out)
    out = run_training(config, resume=resume)
    print(f"run saved in {out}")
    return 0


def evaluate(config: EvaluateCommand) -> int:
    from coral.policies.evaluate import evaluate_run

    if (config.run is None) == (config.policy is None):
        raise CoralError("give exactly one of --run (a trained run) and --policy (random, greedy or label-aware)")
    if config.results:
        require_output_file(config.results, "--results")
    if config.policy:
        require_output_dir(config.out)
    if config.run:
        rows = evaluate_run(
            config.run, split=config.split, threshold=config.threshold, results=config.results,
            batch_size=config.batch_size, limit=config.limit, n_boot=config.n_boot, rows=config.rows,
        )
    else:
        rows = _evaluate_fixed_policy(config)
    for row in rows:
        print(
            f"{row['model']} {row['split']} round {row['round']}: AUC {row['auc']:.4f}  F1 {row['f1']:.4f}  F1@0.5 "
            f"{row['f1_at_05']:.4f}"
        )
    if rows:
        r = rows[0]
        print(
            f"overlap with greedy retrieval: Jaccard {r['greedy_jaccard']:.3f}, same first piece "
            f"{r['greedy_first_share']:.3f} of targets; "
            f"mean |action| {r['mean_abs_action']:.3f} per dimension; {r['mean_pieces']:.2f} pieces per target"
        )
    return 0


def _evaluate_fixed_policy(config: EvaluateCommand) -> list[dict]:
    from coral.config import to_dict
    from coral.envs.resources import EnvResources, resolve_dataset, resolve_scorer
    from coral.policies.evaluate import evaluate_policy, result_rows, tuning_episodes, write_records
    from coral.policies.fixed import fixed_policy_env
    from coral.policies.greedy import GreedyPolicy
    from coral.policies.label_aware import LabelAwarePolicy
    from coral.policies.random_policy import RandomPolicy
    from coral.results import append_rows

    policies = {
        "random": lambda: RandomPolicy(config.seed),
        "greedy": GreedyPolicy,
        "label-aware": lambda: LabelAwarePolicy(
            config.label_aware_nearest, config.label_aware_random, seed=config.seed
        ),
    }
    policy = policies[config.policy]()
    env = fixed_policy_env(config.env, policy, config.seed)
    warm = env.warm.warm_start
    dataset = resolve_dataset(env.data)
    dataset.require_both_classes(config.split, *(("valid",) if config.threshold == "valid" else ()))
    resources = EnvResources(dataset=dataset, scorer=resolve_scorer(env.scorer))
    episodes = tuning_episodes(dataset, config.limit) if config.rows == "tuning" else None
    test = evaluate_policy(
        policy, env, resources, split=config.split, batch_size=config.batch_size, limit=config.limit, episodes=episodes
    )
    valid = None
    if config.threshold == "valid" and config.split != "valid":
        valid = evaluate_policy(policy, env, resources, split="valid", batch_size=config.batch_size, limit=config.limit)
    out = Path(config.out)
    name = {"random": "coral-random", "greedy": f"coral-greedy-{warm}", "label-aware": f"reference-label-aware-{warm}"}[
        config.policy
    ]
    write_records(out / f"{name}_{config.split}.jsonl", [test] + ([valid] if valid is not None else []))
    identity = {
        "policy": config.policy, "env": to_dict(env), "scorer_fingerprint": test.scorer_fingerprint,
        "limit": config.limit, "rows": config.rows,
    }
    rows = result_rows(
        test, valid, dataset=dataset.name, model=name, seed=config.seed, config=identity, n_boot=config.n_boot
    )
    append_rows(
        config.results or out / "results.csv", rows, replace_keys=("dataset", "model", "seed", "split", "round")
    )
    return rows


def register(subparsers: argparse._SubParsersAction) -> None:
    # Not add_command: --resume reads the run's saved config before the flags are applied.
    parser = subparsers.add_parser(
        "train",
        help="train a retrieval policy (PPO, DDPG or MaskablePPO)",
        description="Train a CoRAL retrieval policy with Stable-Baselines3 (or, with --engine rllib, RLlib PPO).",
    )
    add_arguments(parser, TrainCommand)
    parser.set_defaults(func=train, config_class=TrainCommand)
    add_command(
        subparsers, "evaluate", EvaluateCommand, evaluate, help="evaluate a trained run, or the random/greedy policy"
    )
