"""Compare retrieval policies on the validation split's tuning rows with one scorer: greedy, trained variants,
label-aware.

Policy choices (settings, action design, which variant is best) are made here, on rows of the
``tuning`` role of validation (:func:`coral.data.folds.validation_roles`), never on test pairs
and never on the threshold rows. Every method runs K deterministic rounds on the same rows, so
each AUC − greedy's AUC is paired (95% bootstrap interval). Each variant is a ``coral train``
run (its TrainConfig keys as JSON), validated on a fixed subset of the same tuning rows while it
trains (``validation.csv``); the label-aware reference (reads y: never a method) runs on the first
``--label-aware-rows`` of them. Results are cached per method in OUT (a killed run resumes), and
OUT gets ``table.md`` and ``training_curves.png``. Run it under the shared lock:

    flock /work/heavy.lock python experiments/policy_tuning.py --scorer aligned:DIR --seed 0 --rows 600 \\
        --train features='{"algo": "maskable_ppo", "observe": "candidates", "timesteps": 4096}' --out OUT
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coral.config import from_dict
from coral.envs import EnvConfig, EnvResources
from coral.envs.candidates import CANDIDATE_KEYS
from coral.envs.resources import resolve_dataset, resolve_embeddings, resolve_scorer
from coral.io import atomic_write_npz, atomic_write_text
from coral.metrics import binary_metrics
from coral.policies.config import TrainConfig
from coral.policies.curves import plot_training_curves
from coral.policies.evaluate import EvaluationResult, evaluate_policy, mean_return, tuning_episodes
from coral.policies.greedy import GreedyPolicy
from coral.policies.label_aware import LabelAwarePolicy
from coral.policies.run_dir import load_run_policy, read_summary
from coral.policies.train import train
from coral.stats import paired_auc_difference


class NeighbourhoodVote:
    """A label-free heuristic (no learning, not a method): take the nearest candidates whose label is
    the majority label of the target's M nearest candidates. It raises the return of the paper's
    reward where the neighbourhood predicts y, and shows what following the vote does to the AUC."""

    name = "neighbourhood-vote"
    needs_embeddings = True

    def act(self, observations: np.ndarray, envs: Sequence[Any]) -> np.ndarray:
        actions = []
        for env in envs:
            table = env.candidate_features()
            available = env.action_masks()[: env.config.n_candidates]
            majority = 1.0 if np.mean(table[: len(env.candidates), 1] > 0) >= 0.5 else -1.0
            agreeing = np.flatnonzero(available & (table[:, 1] == majority))
            actions.append(agreeing[0] if len(agreeing) else np.flatnonzero(available)[0])
        return np.asarray(actions)


def _saved(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = np.load(path, allow_pickle=False)
    return {"labels": data["labels"], "p": data["p"], "rows": data["rows"], **json.loads(str(data["info"]))}


def _save(path: Path, result: EvaluationResult, info: dict[str, Any]) -> dict[str, Any]:
    stats = result.retrieval_statistics()
    info = {**info, **stats, "seconds": result.seconds, "prompts": result.prompts_scored, "return": mean_return(result)}
    atomic_write_npz(path, labels=result.labels, p=result.p, rows=result.rows, info=np.asarray(json.dumps(info)))
    return {"labels": result.labels, "p": result.p, "rows": result.rows, **info}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scorer", required=True, help="scorer spec, e.g. aligned:DIR")
    parser.add_argument("--dataset", default="movielens_small")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="the run seed: warm start, split (split_seed = seed, as coral run's vary_split), training",
    )
    parser.add_argument("--rows", type=int, default=600, help="tuning rows every method is evaluated on")
    parser.add_argument("--val-size", type=int, default=128, help="tuning rows of the validation curve during training")
    parser.add_argument(
        "--train", action="append", default=[], metavar="NAME=JSON", help="a trained variant: its TrainConfig keys"
    )
    parser.add_argument(
        "--train-seeds", type=int, nargs="+", default=None,
        help="train each variant with each of these seeds (default: --seed); the split, warm start and scorer stay "
             "those of --seed",
    )
    parser.add_argument("--label-aware-rows", type=int, default=0, help="rows of the label-aware reference (0: none)")
    parser.add_argument("--label-aware-nearest", type=int, default=20)
    parser.add_argument("--label-aware-random", type=int, default=10)
    parser.add_argument(
        "--vote", action="store_true", help="also the label-free neighbourhood-vote heuristic (candidates mode)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    out = Path(args.out)
    variants = {}
    for spec in args.train:
        name, sep, keys = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: --train {spec!r}: expected NAME=JSON")
        variants[name] = json.loads(keys)

    env = EnvConfig.from_any(
        dataset=args.dataset, split_seed=args.seed, scorer=args.scorer, warm_start="dfm", embedding_seed=args.seed
    )
    dataset = resolve_dataset(env.data)
    resources = EnvResources(
        dataset=dataset,
        scorer=resolve_scorer(env.scorer),
        embeddings=resolve_embeddings(dataset, env.warm, seed=args.seed),
    )
    rows = tuning_episodes(dataset, args.rows)
    out.mkdir(parents=True, exist_ok=True)

    def evaluate(name: str, policy: Any, cfg: EnvConfig, episodes: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
        path = out / f"{name}.npz"
        saved = _saved(path)
        if saved is not None:
            return saved
        result = evaluate_policy(
            policy, cfg, resources, split="valid", episodes=episodes, batch_size=args.batch_size, progress=False
        )
        if hasattr(policy, "prompts_scored"):
            info = {**info, "reference_prompts": policy.prompts_scored}
        print(f"{name}: {result.seconds:.0f} s, {result.prompts_scored} prompts", flush=True)
        return _save(path, result, info)

    results = {"greedy": evaluate("greedy", GreedyPolicy(), env, rows, {})}
    runs: dict[str, list[Path]] = {}
    train_seeds = args.train_seeds or [args.seed]
    for name, keys in variants.items():
        for seed in train_seeds:
            # The first seed's run keeps the variant's bare name (the runs of one seed before --train-seeds).
            label = name if seed == args.seed else f"{name}-seed{seed}"
            run = out / "runs" / label
            base = {
                "dataset": args.dataset, "split_seed": args.seed, "scorer": args.scorer, "warm_start": "dfm",
                "seed": seed, "out": str(run), "checkpoint_every": 0, "val_every": 1024, "val_size": args.val_size,
                "progress": False, "threads": 2,
            }
            config = from_dict(TrainConfig, base | keys)
            if not (run / "model.zip").exists():
                import shutil

                shutil.rmtree(run, ignore_errors=True)
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    # The warm start is the split seed's (as coral run), whatever seed trains the policy.
                    train(config, resources)
                print(f"{label}: trained in {time.perf_counter() - start:.0f} s", flush=True)
            config, policy = load_run_policy(run)
            summary = read_summary(run)
            env_valid = dataclasses.replace(config.env_config("valid"), embedding_seed=args.seed)
            results[label] = evaluate(
                label, policy, env_valid, rows,
                {"train_seconds": summary.get("train_seconds", 0.0), "model": config.model_name},
            )
            runs.setdefault(f"{name} ({config.model_name})", []).append(run)
    if args.vote:
        results["neighbourhood-vote"] = evaluate(
            "neighbourhood-vote", NeighbourhoodVote(), EnvConfig.from_any(env, **CANDIDATE_KEYS), rows, {}
        )
    if args.label_aware_rows:
        reference = LabelAwarePolicy(args.label_aware_nearest, args.label_aware_random, seed=args.seed)
        results["label-aware"] = evaluate(
            "label-aware", reference, env, rows[: args.label_aware_rows] if args.label_aware_rows < len(rows) else rows,
            {},
        )

    lines = [
        f"{args.dataset}, seed {args.seed}, scorer {resources.scorer.fingerprint}; validation tuning rows (greedy: "
        f"{len(rows)}).",
        "",
        "| method | rows | AUC | AUC − greedy [95% CI] | return | return − greedy's | Jaccard with greedy | greedy's "
        "first | mean abs action | pieces | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    greedy = results["greedy"]
    index = {int(r): k for k, r in enumerate(greedy["rows"])}
    for name, res in results.items():
        on = np.array([index[int(r)] for r in res["rows"]])
        y, p, g = res["labels"], res["p"][-1], greedy["p"][-1][on]
        auc = binary_metrics(y, p, n_boot=0)["auc"]
        delta = paired_auc_difference(y, p, g, n_boot=2000) if name != "greedy" else None
        ret = float(np.mean(np.abs(res["p"][0] - y) - np.abs(res["p"][-1] - y)))
        ret_g = float(np.mean(np.abs(greedy["p"][0][on] - y) - np.abs(g - y)))
        cell = f"{100 * delta.estimate:+.2f} [{100 * delta.low:+.2f}, {100 * delta.high:+.2f}]" if delta else ""
        lines.append(
            f"| {name} | {len(y)} | {100 * auc:.2f} | {cell} | {ret:+.4f} | {ret - ret_g:+.4f} | "
            f"{res['greedy_jaccard']:.3f} | {res['greedy_first_share']:.3f} | "
            f"{res['mean_abs_action']:.3f} | {res['mean_pieces']:.2f} | "
            f"{res['seconds'] + res.get('train_seconds', 0.0):.0f} |"
        )
    greedy_by_k = [
        binary_metrics(greedy["labels"], greedy["p"][k], n_boot=0)["auc"] for k in range(greedy["p"].shape[0])
    ]
    lines += [
        "",
        "Greedy retrieval stopped after k pieces (same rows): "
        + ", ".join(f"k={k} {100 * a:.2f}" for k, a in enumerate(greedy_by_k))
        + ".",
    ]
    for name, res in results.items():
        if name == "greedy" or res["mean_pieces"] >= greedy["p"].shape[0] - 1 - 1e-9:
            continue
        on = np.array([index[int(r)] for r in res["rows"]])
        k = int(np.ceil(res["mean_pieces"]))
        best = max(range(1, k + 1), key=lambda j: greedy_by_k[j])
        d = paired_auc_difference(res["labels"], res["p"][-1], greedy["p"][best][on], n_boot=2000)
        lines.append(
            f"{name} stops after {res['mean_pieces']:.2f} pieces on average: AUC − greedy's best fixed k <= {k} "
            f"(k={best}) "
            f"{100 * d.estimate:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]."
        )
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", text)
    print(text)
    if runs:
        plot_training_curves(
            runs,
            out / "training_curves.png",
            title=f"{args.dataset}, scorer {args.scorer.split('/')[-2] if '/' in args.scorer else args.scorer}, seed "
                  f"{args.seed}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
