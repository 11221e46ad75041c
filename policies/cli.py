"""``coral train`` and ``coral evaluate``: the retrieval policy's command-line sub-commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


#: TrainConfig fields that ``coral train`` takes as flags (an explicit flag overrides --config).
TRAIN_FLAGS = ("dataset", "algo", "warm_start", "timesteps", "seed", "out", "scorer", "query_match", "n_envs", "checkpoint_every", "val_every", "val_size", "embedding_dim")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``evaluate`` sub-commands."""
    from policies.config import TrainConfig

    defaults = TrainConfig()
    p = subparsers.add_parser("train", help="train a retrieval policy (PPO, DDPG or MaskablePPO)", description="Train a CoRAL retrieval policy with Stable-Baselines3.")
    p.add_argument("--dataset", help=f"dataset name or path (default: {defaults.dataset})")
    p.add_argument("--algo", choices=["ppo", "ddpg", "maskable_ppo"], help=f"algorithm (default: {defaults.algo})")
    p.add_argument("--warm-start", choices=["dfm", "wdl", "afm", "dcn", "none"], help=f"embeddings: a CTR model's, or none = random (default: {defaults.warm_start})")
    p.add_argument("--timesteps", type=int, help=f"environment steps (default: {defaults.timesteps})")
    p.add_argument("--seed", type=int, help=f"seed (default: {defaults.seed})")
    p.add_argument("--out", help=f"run directory (default: {defaults.out})")
    p.add_argument("--scorer", help=f"scorer spec: hf, hf:PATH, vllm:MODEL, openai:URL#MODEL, scripted[:k=v,...] (default: {defaults.scorer})")
    p.add_argument("--query-match", choices=["observed", "independent"], help=f"query actions: nearest observed interaction, or nearest user and item separately (default: {defaults.query_match})")
    p.add_argument("--n-envs", type=int, help=f"parallel episodes scored in one batch (default: {defaults.n_envs})")
    p.add_argument("--checkpoint-every", type=int, help=f"timesteps between checkpoints (default: {defaults.checkpoint_every})")
    p.add_argument("--val-every", type=int, help=f"timesteps between coral/val_auc measurements, 0 = never (default: {defaults.val_every})")
    p.add_argument("--val-size", type=int, help=f"validation interactions for coral/val_auc (default: {defaults.val_size})")
    p.add_argument("--embedding-dim", type=int, help=f"embedding size (default: {defaults.embedding_dim})")
    p.add_argument("--config", help="a JSON file of TrainConfig fields; flags given explicitly override it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (its saved config; --timesteps may raise the total)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    e = subparsers.add_parser("evaluate", help="evaluate a trained run, or the random/greedy policy", description="Evaluate retrieval: K deterministic rounds per interaction, AUC/F1 after each round.")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a coral train run directory")
    src.add_argument("--policy", choices=["random", "greedy"], help="evaluate a policy that needs no training")
    e.add_argument("--split", default="test", choices=["test", "valid"], help="split (default: %(default)s)")
    e.add_argument("--threshold", default="valid", choices=["valid", "0.5"], help="F1 threshold: tuned on validation rounds, or 0.5 (default: %(default)s)")
    e.add_argument("--results", help="results.csv to append to (default: <run or out>/results.csv)")
    e.add_argument("--limit", type=int, help="only N interactions of each split: a seeded subset keeping both classes (quick checks)")
    e.add_argument("--batch-size", type=int, default=16, help="episodes scored together (default: %(default)s)")
    e.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the AUC interval, 0 = none (default: %(default)s)")
    e.add_argument("--dataset", default="gift_cards", help="with --policy: dataset (default: %(default)s)")
    e.add_argument("--scorer", default="hf", help="with --policy: scorer spec (default: %(default)s)")
    e.add_argument("--warm-start", default="dfm", choices=["dfm", "wdl", "afm", "dcn", "none"], help="with --policy greedy: embeddings (default: %(default)s)")
    e.add_argument("--rounds", type=int, default=5, help="with --policy: retrieval rounds (default: %(default)s)")
    e.add_argument("--seed", type=int, default=0, help="with --policy: seed (default: %(default)s)")
    e.add_argument("--out", default="runs/baselines", help="with --policy: where the JSONL and results go (default: %(default)s)")
    e.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from coral.errors import CoralError
    from policies.config import TrainConfig
    from policies.train import train

    if args.resume:
        path = Path(args.out or TrainConfig.out) / "config.json"
        if not path.is_file():
            raise CoralError(f"{path.parent}: nothing to resume (no config.json)")
        # The run may have been moved or copied since: it lives where --out says now.
        config = dataclasses.replace(TrainConfig.load(path), out=str(path.parent))
        if args.timesteps is not None:
            config = dataclasses.replace(config, timesteps=args.timesteps)
    else:
        fields: dict = {}
        if args.config:
            try:
                fields = json.loads(Path(args.config).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise CoralError(f"{args.config}: cannot read the config ({err})") from None
        flags = {name: getattr(args, name) for name in TRAIN_FLAGS}
        fields.update({k: v for k, v in flags.items() if v is not None})
        try:
            config = TrainConfig(**fields)
        except TypeError as err:
            raise CoralError(f"bad train config: {err}") from None
    config = dataclasses.replace(config, progress_bar=not args.no_progress)
    out = train(config, resume=args.resume)
    print(f"run saved in {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from policies.evaluate import evaluate_run

    if args.run:
        rows = evaluate_run(args.run, split=args.split, threshold=args.threshold, results=args.results, batch_size=args.batch_size, limit=args.limit, n_boot=args.n_boot)
    else:
        rows = _evaluate_fixed_policy(args)
    for row in rows:
        print(f"{row['model']} {row['split']} round {row['round']}: AUC {row['auc']:.4f}  F1 {row['f1']:.4f}  F1@0.5 {row['f1_at_05']:.4f}")
    return 0


def _evaluate_fixed_policy(args: argparse.Namespace) -> list[dict]:
    from coral.results import append_rows
    from envs.collab_retrieval import EnvConfig
    from envs.resources import resolve_dataset, resolve_scorer
    from policies.evaluate import evaluate_policy, result_rows, write_records
    from policies.greedy import GreedyPolicy
    from policies.random_policy import RandomPolicy

    policy = RandomPolicy(args.seed) if args.policy == "random" else GreedyPolicy()
    dataset, scorer = resolve_dataset(args.dataset), resolve_scorer(args.scorer)
    warm = args.warm_start if policy.needs_embeddings else "none"
    cfg = EnvConfig(dataset=dataset, scorer=scorer, embeddings=warm, embedding_seed=args.seed)
    test = evaluate_policy(policy, dataset, scorer, args.split, args.rounds, config=cfg, batch_size=args.batch_size, limit=args.limit)
    valid = None
    if args.threshold == "valid" and args.split != "valid":
        valid = evaluate_policy(policy, dataset, scorer, "valid", args.rounds, config=cfg, batch_size=args.batch_size, limit=args.limit)
    out = Path(args.out)
    name = "coral-random" if args.policy == "random" else f"coral-greedy-{warm}"
    write_records(out / f"{name}_{args.split}.jsonl", [test] + ([valid] if valid is not None else []))
    identity = {"policy": args.policy, "warm_start": warm, "rounds": args.rounds, "scorer": args.scorer, "scorer_fingerprint": getattr(scorer, "fingerprint", ""), "limit": args.limit}
    rows = result_rows(test, valid, dataset=dataset.name, model=name, seed=args.seed, config=identity, n_boot=args.n_boot)
    append_rows(args.results or out / "results.csv", rows, replace_keys=("dataset", "model", "seed", "split", "round"))
    return rows

