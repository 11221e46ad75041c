"""Compare retrieval policies on the validation split's tuning rows with one scorer: greedy, trained variants,
label-aware.

Policy choices (settings, action design, which variant is best) are made here, on rows of the
``tuning`` role of validation (:func:`coral.data.folds.validation_roles`), never on test pairs
and never on the threshold rows. Every method runs K deterministic rounds on the same rows, so
each AUC − greedy's AUC is paired (95% bootstrap interval). Each variant is a ``coral train``
run (its TrainConfig keys as JSON), validated on a fixed subset of the same tuning rows while it
trains (``validation.csv``); the label-aware reference (reads y: never a method) runs on the first
``--label-aware-rows`` of them. ``--prior-votes`` adds heuristics that retrieve by label (:class:`LabelVote`):
told y (a reference, evaluation only) and told a label-free prediction of y (``--prior``), which
split the label-aware reference's room into what lies in the pieces' labels and what a policy can
reach with what it knows. Results are cached per method in OUT (a killed run resumes), and
OUT gets ``table.md`` and ``training_curves.png``. Run it under the shared lock:

    flock /work/heavy.lock python experiments/policy_tuning.py --scorer aligned:DIR --seed 0 --rows 600 \\
        --train features='{"algo": "maskable_ppo", "observe": "candidates", "timesteps": 4096}' --out OUT

``--split test`` confirms on test what validation chose, and nothing else: the rows are ``coral run``'s
shared test pairs of the seed (``--rows 900`` draws the benchmark's 900), ``--only`` names the rows
validation picked, the trained variants are read from the validation run's folder (``--runs``; test mode
never trains) and OUT must be a folder of its own (results are cached by method name):

    python experiments/policy_tuning.py --scorer aligned:DIR --seed 0 --split test --rows 900 \\
        --train features='{...the same keys...}' --runs OUT/runs --prior-votes --prior dfm \\
        --only features prior-share-dfm --out OUT_TEST
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
from coral.pipeline.pairs import SharedPairs
from coral.policies.config import TrainConfig
from coral.policies.curves import plot_training_curves
from coral.policies.evaluate import EvaluationResult, evaluate_policy, mean_return, tuning_episodes
from coral.policies.greedy import GreedyPolicy
from coral.policies.label_aware import LabelAwarePolicy
from coral.policies.run_dir import load_run_policy, read_summary
from coral.policies.train import train
from coral.stats import format_interval, paired_auc_difference


class LabelVote:
    """A heuristic that retrieves by label (no learning, not a method): at each round, the nearest available
    candidate whose label is the one ``direction`` asks for (the nearest of any label when none is left).

    It asks what following a label does to the AUC. The label-aware reference gains by choosing,
    piece by piece, what moves P(Yes) toward y; a vote that is told y itself (``label``, evaluation
    only) measures how much of that gain lies in the pieces' labels alone, and a vote told a label-free
    prediction of y (``prior-vote``, ``prior-share``) what a policy can get by injecting what it knows
    through the labels of the pieces it picks.

    :param name: the row's name.
    :param direction: the wanted label (+1 liked, -1 disliked) of an environment's next piece.
    :param reads_labels: True when ``direction`` reads the target's label (evaluation only).
    """

    needs_embeddings = True

    def __init__(self, name: str, direction: Any, reads_labels: bool = False) -> None:
        self.name = name
        self.direction = direction
        self.reads_labels = reads_labels

    def act(self, observations: np.ndarray, envs: Sequence[Any]) -> np.ndarray:
        actions = []
        for env in envs:
            table = env.candidate_features()
            available = env.action_masks()[: env.config.n_candidates]
            wanted = np.flatnonzero(available & (table[:, 1] == self.direction(env)))
            actions.append(wanted[0] if len(wanted) else np.flatnonzero(available)[0])
        return np.asarray(actions)


def neighbourhood_majority(env: Any) -> float:
    """The majority label of the target's M nearest candidates (ties: liked)."""
    table = env.candidate_features()
    return 1.0 if np.mean(table[: len(env.candidates), 1] > 0) >= 0.5 else -1.0


def prior_rules(prior: dict[tuple[int, int], float]) -> dict[str, Any]:
    """Direction rules from a label-free P(like) of each target pair.

    ``prior-vote``: every piece liked where P(like) >= 0.5, disliked otherwise. ``prior-share``: the
    liked share of the pieces so far follows P(like) (after t pieces, round(t x P(like)) of them liked),
    so the pieces carry the prediction's strength, not only its side.
    """

    def vote(env: Any) -> float:
        return 1.0 if prior[env.user, env.item] >= 0.5 else -1.0

    def share(env: Any) -> float:
        liked = sum(int(ev.label) for ev in env.evidence)
        return 1.0 if liked < round((len(env.evidence) + 1) * prior[env.user, env.item]) else -1.0

    return {"prior-vote": vote, "prior-share": share}


#: The label-free P(like) a prior vote may be told (``--prior``).
PRIORS = ("twin", "warm-start", "dfm")


def label_free_prior(
    kind: str, dataset: Any, env: EnvConfig, embeddings: Any, aligned: str | None, users: np.ndarray, items: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, str]:
    """P(like) of each pair (aligned with ``users``, ``items``), read from nothing but training interactions, and
    the prior's name.

    - ``twin``: the scorer's own input twin (no LLM), a logistic regression on base rates, CF embeddings and
      the like-share of the 5 nearest pieces, fitted on the alignment's training targets (C by
      cross-validation on them): the numbers the LLM is given, read linearly.
    - ``warm-start``: the warm-start CTR model itself (trained on head + its fold), whose embeddings the
      environment retrieves by and a query policy observes.
    - ``dfm``: the DFM baseline trained on the whole training split, as ``coral run``'s DFM row.

    Both CTR models stop early on the validation split's log loss, as the warm start and the baselines do.
    """
    if kind == "twin":
        from coral.align.topk import evidence_index
        from coral.align.twins import InputTwin, alignment_targets

        index = evidence_index(dataset, embeddings)
        twin = InputTwin.fit(dataset, index, alignment_targets(dataset, aligned), ("rates", "cf", "share"), c=None)
        p, name = twin.predict(dataset, index, users, items), twin.name
    elif kind in ("warm-start", "dfm"):
        from coral.baselines.config import BaselineConfig
        from coral.baselines.train import train_baseline
        from coral.data.folds import warm_start_dataset

        if kind == "warm-start":
            trained = train_baseline(warm_start_dataset(dataset, env.warm.folds), env.warm.baseline(seed))
            name = f"the warm-start {trained.config.model.upper()} (head + its fold)"
        else:
            trained = train_baseline(dataset, BaselineConfig(model="dfm", seed=seed))
            name = "DFM (the whole training split)"
        p = trained.predict(users, items)
    else:
        raise SystemExit(f"error: unknown prior {kind!r}; expected one of {', '.join(PRIORS)}")
    return np.asarray(p, dtype=np.float64), name


def noisy_label_votes(results: dict[str, dict[str, Any]], greedy: dict[str, Any], draws: int = 200) -> list[str]:
    """How good a label-free prediction of y a binary vote needs: the vote told y with each target's label
    flipped at rate e (a reference: it reads y), put together target by target from the ``liked-vote`` and
    ``disliked-vote`` rows (a binary vote keeps one label for all of a target's pieces, so it retrieves as
    one of them). Checked on the prior-vote rows: put together from their priors' sides (P(like) >= 0.5),
    they must reproduce their own AUCs."""
    liked, disliked = results["liked-vote"], results["disliked-vote"]
    rows = liked["rows"]
    if not (np.array_equal(rows, disliked["rows"]) and np.array_equal(rows, greedy["rows"])):
        raise SystemExit("error: the fixed-label votes and greedy ran on different rows")
    y, p_liked, p_disliked, p_greedy = liked["labels"], liked["p"][-1], disliked["p"][-1], greedy["p"][-1]
    lines = []
    for name, res in results.items():
        if name.startswith("prior-vote") and np.array_equal(res["rows"], rows):
            side = np.asarray(res["prior_p"]) >= 0.5
            rebuilt = binary_metrics(y, np.where(side, p_liked, p_disliked), n_boot=0)["auc"]
            own = binary_metrics(y, res["p"][-1], n_boot=0)["auc"]
            lines.append(
                f"{name} put together from the fixed-label votes: AUC {100 * rebuilt:.2f} (its own {100 * own:.2f})."
            )
    g = binary_metrics(y, p_greedy, n_boot=0)["auc"]
    rng = np.random.default_rng(0)
    cells = []
    for e in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5):
        aucs = [
            binary_metrics(y, np.where((y == 1) != (rng.random(len(y)) < e), p_liked, p_disliked), n_boot=0)["auc"]
            for _ in range(draws if e else 1)
        ]
        cells.append(f"{1 - e:.2f}: {100 * (np.mean(aucs) - g):+.2f}")
    return [
        *lines,
        "A binary vote told y, each label flipped at rate e (reference, reads y; mean over "
        f"{draws} draws of the flips), by its accuracy 1 − e, AUC − greedy: " + ", ".join(cells) + ".",
    ]


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


def _abs_action(value: float) -> str:
    """Mean |action| per dimension, or n/a where it does not apply (a candidates policy picks, it has no query)."""
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scorer", required=True, help="scorer spec, e.g. aligned:DIR")
    parser.add_argument("--dataset", default="movielens_small")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="the run seed: warm start, split (split_seed = seed, as coral run's vary_split), training",
    )
    parser.add_argument(
        "--split", choices=("valid", "test"), default="valid",
        help="valid: the validation split's tuning rows (where choices are made); test: coral run's shared test "
             "pairs of the seed, to confirm a choice (never trains)",
    )
    parser.add_argument(
        "--rows", type=int, default=600, help="rows every method is evaluated on (tuning rows, or shared test pairs)"
    )
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="NAME",
        help="evaluate only these rows besides greedy (e.g. what validation chose, for --split test)",
    )
    parser.add_argument(
        "--runs", type=Path, default=None, help="folder of the trained variants' coral train runs (default: OUT/runs)"
    )
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
    parser.add_argument(
        "--prior-votes", action="store_true",
        help="also the label votes (candidates mode): prior-vote and prior-share (told a label-free P(like), see "
             "--prior) and reference-label-vote (told y: evaluation only)",
    )
    parser.add_argument(
        "--prior", choices=PRIORS, nargs="+", default=["twin"],
        help="the label-free P(like)s the prior votes follow (a prior other than twin is named in its rows)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    out = Path(args.out)
    # The alignment folder of an aligned:DIR scorer (None for any other scorer): the twin's targets, the figure's name.
    aligned = args.scorer.removeprefix("aligned:") if args.scorer.startswith("aligned:") else None
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
    if args.split == "test":
        # coral run's shared test pairs of this split seed (its draw: the same rows for the same --rows).
        rows = SharedPairs.draw(dataset, args.rows, 0, args.seed).test
        where = f"coral run's {len(rows)} shared test pairs of split seed {args.seed}"
    else:
        rows = tuning_episodes(dataset, args.rows)
        where = f"validation tuning rows (greedy: {len(rows)})"
    runs_dir = args.runs or out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    wanted = None if args.only is None else {"greedy", *args.only}

    def evaluate(
        name: str, policy: Any, cfg: EnvConfig, episodes: np.ndarray, info: dict[str, Any]
    ) -> dict[str, Any] | None:
        if wanted is not None and name not in wanted:
            return None
        path = out / f"{name}.npz"
        saved = _saved(path)
        if saved is not None:
            # Results are cached by name: one folder holds one split's rows (results from before --split: valid).
            if saved.get("split", "valid") != args.split:
                raise SystemExit(f"error: {path} holds results of another split; use a folder of its own")
            if not np.array_equal(saved["rows"], episodes):
                raise SystemExit(f"error: {path} was evaluated on other rows than these; use a folder of its own")
            return saved
        result = evaluate_policy(
            policy, cfg, resources, split=args.split, episodes=episodes, batch_size=args.batch_size, progress=False
        )
        if hasattr(policy, "prompts_scored"):
            info = {**info, "reference_prompts": policy.prompts_scored}
        print(f"{name}: {result.seconds:.0f} s, {result.prompts_scored} prompts", flush=True)
        return _save(path, result, {**info, "split": args.split})

    results = {"greedy": evaluate("greedy", GreedyPolicy(), env, rows, {})}
    runs: dict[str, list[Path]] = {}
    train_seeds = args.train_seeds or [args.seed]
    for name, keys in variants.items():
        for seed in train_seeds:
            # The first seed's run keeps the variant's bare name (the runs of one seed before --train-seeds).
            label = name if seed == args.seed else f"{name}-seed{seed}"
            if wanted is not None and label not in wanted:
                continue
            run = runs_dir / label
            base = {
                "dataset": args.dataset, "split_seed": args.seed, "scorer": args.scorer, "warm_start": "dfm",
                "seed": seed, "out": str(run), "checkpoint_every": 0, "val_every": 1024, "val_size": args.val_size,
                "progress": False, "threads": 2,
            }
            config = from_dict(TrainConfig, base | keys)
            if not (run / "model.zip").exists():
                if args.split == "test":
                    raise SystemExit(f"error: {run / 'model.zip'} is missing: --split test never trains (see --runs)")
                import shutil

                shutil.rmtree(run, ignore_errors=True)
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    # The warm start is the split seed's (as coral run), whatever seed trains the policy.
                    train(config, resources)
                print(f"{label}: trained in {time.perf_counter() - start:.0f} s", flush=True)
            config, policy = load_run_policy(run)
            summary = read_summary(run)
            env_eval = dataclasses.replace(config.env_config(args.split), embedding_seed=args.seed)
            results[label] = evaluate(
                label, policy, env_eval, rows,
                {"train_seconds": summary.get("train_seconds", 0.0), "model": config.model_name},
            )
            runs.setdefault(f"{name} ({config.model_name})", []).append(run)
    candidates_env = EnvConfig.from_any(env, **CANDIDATE_KEYS)
    if args.vote:
        results["neighbourhood-vote"] = evaluate(
            "neighbourhood-vote", LabelVote("neighbourhood-vote", neighbourhood_majority), candidates_env, rows, {}
        )
    if args.prior_votes:
        if "twin" in args.prior and aligned is None:
            raise SystemExit("error: --prior twin needs --scorer aligned:DIR (the twin is fitted on its targets)")
        evaluated = dataset.split(args.split)
        # Every piece of one label: any binary vote is, target by target, one of these two rows.
        for name, label in (("liked-vote", 1.0), ("disliked-vote", -1.0)):
            results[name] = evaluate(name, LabelVote(name, lambda e, label=label: label), candidates_env, rows, {})
        for kind in args.prior:
            users, items = evaluated.user[rows], evaluated.item[rows]
            p_prior, source = label_free_prior(
                kind, dataset, env, resources.embeddings, aligned, users, items, args.seed
            )
            prior = {(int(u), int(i)): float(q) for u, i, q in zip(users, items, p_prior, strict=True)}
            for name, rule in prior_rules(prior).items():
                name = name if kind == "twin" else f"{name}-{kind}"
                results[name] = evaluate(
                    name, LabelVote(name, rule), candidates_env, rows, {"prior": source, "prior_p": p_prior.tolist()}
                )
        name = "reference-label-vote"
        results[name] = evaluate(
            name, LabelVote(name, lambda e: 1.0 if e.label == 1 else -1.0, reads_labels=True), candidates_env, rows, {}
        )
    if args.label_aware_rows:
        reference = LabelAwarePolicy(args.label_aware_nearest, args.label_aware_random, seed=args.seed)
        results["label-aware"] = evaluate(
            "label-aware", reference, env, rows[: args.label_aware_rows] if args.label_aware_rows < len(rows) else rows,
            {},
        )

    results = {name: res for name, res in results.items() if res is not None}
    lines = [
        f"{args.dataset}, seed {args.seed}, scorer {resources.scorer.fingerprint}; {where}.",
        "",
        "| method | rows | AUC | AUC − greedy [95% CI] | return | return − greedy's | Jaccard with greedy | greedy's "
        "first | mean abs action | pieces | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    greedy = results["greedy"]
    index = {int(r): k for k, r in enumerate(greedy["rows"])}
    # Each method's rows as positions in greedy's (a method may run on fewer rows: the label-aware reference).
    on_greedy = {name: np.array([index[int(r)] for r in res["rows"]]) for name, res in results.items()}
    for name, res in results.items():
        on = on_greedy[name]
        y, p, g = res["labels"], res["p"][-1], greedy["p"][-1][on]
        auc = binary_metrics(y, p, n_boot=0)["auc"]
        delta = paired_auc_difference(y, p, g, n_boot=2000) if name != "greedy" else None
        ret = float(np.mean(np.abs(res["p"][0] - y) - np.abs(res["p"][-1] - y)))
        ret_g = float(np.mean(np.abs(greedy["p"][0][on] - y) - np.abs(g - y)))
        cell = format_interval(delta.estimate, delta.low, delta.high) if delta else ""
        lines.append(
            f"| {name} | {len(y)} | {100 * auc:.2f} | {cell} | {ret:+.4f} | {ret - ret_g:+.4f} | "
            f"{res['greedy_jaccard']:.3f} | {res['greedy_first_share']:.3f} | "
            f"{_abs_action(res['mean_abs_action'])} | {res['mean_pieces']:.2f} | "
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
        if "prior_p" in res:
            p_prior = np.asarray(res["prior_p"])
            d = paired_auc_difference(res["labels"], res["p"][-1], p_prior, n_boot=2000)
            prior_wrong = (p_prior >= 0.5) != (res["labels"] == 1)
            # Whether its errors are the scorer's: greedy's P(Yes) on the wrong side of its median.
            g_p = greedy["p"][-1][on_greedy[name]]
            greedy_wrong = (g_p >= np.median(g_p)) != (res["labels"] == 1)
            lines.append(
                f"{name} follows {res['prior']}: its own AUC on these rows {100 * d.auc_b:.2f}, accuracy at 0.5 "
                f"{1 - prior_wrong.mean():.3f}; the vote − it {format_interval(d.diff, d.low, d.high)}; greedy's "
                f"P(Yes) is on the wrong side of its median for {greedy_wrong[prior_wrong].mean():.2f} of the rows "
                f"it gets wrong and {greedy_wrong[~prior_wrong].mean():.2f} of those it gets right."
            )
    if "liked-vote" in results:
        lines += ["", *noisy_label_votes(results, greedy)]
    for name, res in results.items():
        if name == "greedy" or res["mean_pieces"] >= greedy["p"].shape[0] - 1 - 1e-9:
            continue
        on = on_greedy[name]
        k = int(np.ceil(res["mean_pieces"]))
        best = max(range(1, k + 1), key=lambda j: greedy_by_k[j])
        d = paired_auc_difference(res["labels"], res["p"][-1], greedy["p"][best][on], n_boot=2000)
        lines.append(
            f"{name} stops after {res['mean_pieces']:.2f} pieces on average: AUC − greedy's best fixed k <= {k} "
            f"(k={best}) "
            f"{format_interval(d.estimate, d.low, d.high)}."
        )
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", text)
    print(text)
    if runs:
        from coral.llm.aligned import read_meta, scorer_name

        scorer = scorer_name(read_meta(aligned)) if aligned else args.scorer
        title = f"{args.dataset}, scorer {scorer}, seed {args.seed}"
        plot_training_curves(runs, out / "training_curves.png", title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
