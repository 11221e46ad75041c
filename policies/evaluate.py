"""Evaluation of a retrieval policy: K deterministic rounds per interaction, metrics after every round.

:func:`evaluate_policy` needs no trained run (it serves CoRAL-random, greedy and the LLM alone,
which is round 0 of any evaluation); :func:`evaluate_run` evaluates a ``coral train`` run and
writes result rows and the evidence of every episode.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from coral.data.sample import stratified_subset
from coral.envs import CollabRetrievalEnv, EnvConfig, EnvResources, EpisodeBatch, make_env
from coral.errors import CoralError
from coral.io import atomic_write_text
from coral.metrics import binary_metrics
from coral.policies.base import RetrievalPolicy
from coral.retrieval import tables_fingerprint


@dataclass
class EvaluationResult:
    """What an evaluation produced, for one split."""

    split: str
    labels: np.ndarray
    """(n,) the interactions' labels."""
    p: np.ndarray
    """(rounds + 1, n) P(Yes) after each round; round 0 = the prompt without evidence (the LLM alone)."""
    records: list[dict[str, Any]]
    """One per interaction: its user and item (the dataset's own ids, and their indices), label, episode_index, and the
    rounds with their evidence and p."""
    prompts_scored: int
    """Prompts sent to the scorer (rounds that added no evidence are not scored again)."""
    seconds: float
    """Wall-clock time of the evaluation."""
    dataset: str = ""
    """The dataset's name."""
    scorer_fingerprint: str = ""
    """The scorer's identity (``Scorer.fingerprint``)."""
    rows: np.ndarray | None = None
    """(n,) row indices of the evaluated interactions in the split, in the order of ``labels`` and ``p``."""
    warm_start_fingerprint: str = ""
    """The searched embedding tables' identity (:func:`coral.retrieval.tables_fingerprint`)."""
    label_aware: bool = False
    """True when the policy read the targets' labels (the label-aware reference): evaluation only,
    its rows must be named ``reference-...`` (:func:`result_rows` refuses anything else)."""

    @property
    def rounds(self) -> int:
        return self.p.shape[0] - 1

    def retrieval_statistics(self) -> dict[str, float]:
        """What the policy retrieved, compared with greedy retrieval (the K nearest observed
        interactions to each target, recorded per episode as ``greedy``).

        ``greedy_jaccard``: mean over targets of |retrieved ∩ greedy's| / |retrieved ∪ greedy's|
        (1: greedy's set); ``greedy_first_share``: share of targets whose first piece is greedy's
        first; ``mean_abs_action``: query actions only, mean |a| per dimension of the actions
        taken (clipped to [-1, 1]; 0 is greedy's action), nan in the candidates mode;
        ``mean_pieces``: pieces of evidence per target (below K for a policy that stops, or when
        a step added nothing).
        """
        jaccard, first, pieces, actions = [], [], [], []
        for record in self.records:
            got = _pieces(record)
            greedy = [tuple(pair) for pair in record.get("greedy", [])]
            union = set(got) | set(greedy)
            jaccard.append(len(set(got) & set(greedy)) / len(union) if union else 1.0)
            first.append(bool(got) and bool(greedy) and got[0] == greedy[0])
            pieces.append(len(got))
            actions += record.get("mean_abs_action", [])
        n = len(self.records)
        return {
            "greedy_jaccard": float(np.mean(jaccard)) if n else float("nan"),
            "greedy_first_share": float(np.mean(first)) if n else float("nan"),
            "mean_abs_action": float(np.mean(actions)) if actions else float("nan"),
            "mean_pieces": float(np.mean(pieces)) if n else float("nan"),
        }

    def evidence_diversity(self) -> dict[str, float]:
        """How much the retrieved evidence depends on the target (issue 13). Deprecated (issue 28):
        1.0 for any constant query action, so it says nothing about learning; use
        :meth:`retrieval_statistics`. Kept for one release for ``coral run``'s reports.

        ``evidence_diversity``: distinct evidence sequences / evaluated targets (1.0: every target
        got its own; 1/n: one sequence for all); ``top_first_piece_share``: share of targets whose
        first piece is the most common first piece.
        """
        sequences, firsts = [], []
        for record in self.records:
            pieces = tuple(
                (step["user_index"], step["item_index"]) for step in record["rounds"] if step.get("user_index", -1) >= 0
            )
            sequences.append(pieces)
            if pieces:
                firsts.append(pieces[0])
        n = max(len(self.records), 1)
        top = max(Counter(firsts).values()) / n if firsts else 0.0
        return {"evidence_diversity": len(set(sequences)) / n, "top_first_piece_share": top}


def _pieces(record: dict[str, Any]) -> list[tuple[int, int]]:
    """The (user index, item index) of each piece an episode record retrieved, in order."""
    return [(step["user_index"], step["item_index"]) for step in record["rounds"] if step.get("label") is not None]


def episode_record(env: CollabRetrievalEnv, split: str) -> dict[str, Any]:
    """The episode that ``env`` just ran, for the JSONL files: users and items by the dataset's own
    ids (``user``, ``item``) and by index (``user_index``, ``item_index``), every round's evidence and p."""
    ds = env.dataset

    def raw(ids: list[str], index: int) -> str | None:
        return ids[index] if index >= 0 else None

    rounds = []
    for step in env.trace:
        entry = dict(step)
        if "user" in step:
            entry.update(
                user=raw(ds.user_ids, step["user"]), item=raw(ds.item_ids, step["item"]), user_index=step["user"],
                item_index=step["item"],
            )
        rounds.append(entry)
    return {
        "split": split, "episode_index": env.episode_index, "user": ds.user_ids[env.user],
        "item": ds.item_ids[env.item], "user_index": env.user, "item_index": env.item, "label": env.label,
        "rounds": rounds,
    }


def evaluate_policy(
    policy: RetrievalPolicy, config: EnvConfig | None = None, resources: EnvResources | None = None, *,
    split: str = "test", rounds: int | None = None, batch_size: int = 16, limit: int | None = None,
    episodes: np.ndarray | None = None, progress: bool = True,
) -> EvaluationResult:
    """Run K retrieval rounds with ``policy`` for every interaction of ``split``.

    Episodes run ``batch_size`` at a time through one :class:`~coral.envs.EpisodeBatch`: each
    round scores the batch's prompts in one call.

    :param policy: the policy (deterministic policies give deterministic results).
    :param config: environment settings (data, scorer, warm start, action mode, K = ``rounds``);
        split and episode mode are set here. None: defaults, with random embeddings when the
        policy ignores embeddings.
    :param resources: objects replacing the config's names (a loaded dataset, a scorer, ...).
    :param split: valid or test (or train: its tail-item interactions).
    :param rounds: None: the config's ``rounds``; 0: only the prompts without evidence (the LLM alone).
    :param batch_size: episodes evaluated together.
    :param limit: evaluate only ``limit`` interactions of the split, a seeded subset keeping
        both classes (:func:`coral.data.sample.stratified_subset`, seed 0).
    :param episodes: evaluate exactly these interactions of the split (row indices, in this
        order) instead: the shared evaluation pairs of ``coral run``; overrides ``limit``.
    :param progress: show a progress bar.
    """
    start = time.perf_counter()
    if config is None:
        config = EnvConfig.from_any(warm_start="dfm" if policy.needs_embeddings else "none")
    rounds = config.rounds if rounds is None else int(rounds)
    cfg = EnvConfig.from_any(config, split=split, mode="eval", rounds=max(1, rounds))
    first = make_env(cfg, resources=resources)
    if episodes is None:
        episodes = stratified_subset(first.episodes.label, limit, 0)
    episodes = np.asarray(episodes, dtype=np.int64)
    n = len(episodes)
    shared = EnvResources(
        dataset=first.dataset, scorer=first.scorer, embeddings=first.embeddings, prompt_builder=first.prompt_builder
    )
    batch = EpisodeBatch([first] + [make_env(cfg, resources=shared) for _ in range(max(1, min(batch_size, n)) - 1)])
    p = np.zeros((rounds + 1, n))
    records: list[dict[str, Any]] = []
    query_mode = cfg.action_mode == "query"
    bar = tqdm(
        total=n, desc=f"{getattr(policy, 'name', 'policy')} on {split}", unit="episode", disable=not progress,
        leave=False,
    )
    for begin in range(0, n, len(batch)):
        size = min(len(batch), n - begin)
        bar.update(size)
        envs = list(range(size))
        obs = np.stack([o for o, _ in batch.reset(envs, options=[{"index": int(episodes[begin + k])} for k in envs])])
        greedy = [greedy_pairs(batch.envs[k], rounds) for k in envs]
        abs_actions: list[list[float]] = [[] for _ in envs]
        for _ in range(rounds):
            # An episode ends early only by a stop action or by running out of evidence (a tiny pool).
            live = [k for k in envs if batch.envs[k].active]
            if not live:
                break
            actions = policy.act(obs[live], [batch.envs[k] for k in live])
            if query_mode:
                for k, a in zip(live, np.asarray(actions, dtype=np.float64).reshape(len(live), -1), strict=False):
                    abs_actions[k].append(float(np.mean(np.abs(np.clip(a, -1.0, 1.0)))))
            for k, (o, *_rest) in zip(live, batch.step(live, actions), strict=False):
                obs[k] = o
        for k in envs:
            env = batch.envs[k]
            trace_p = [step["p"] for step in env.trace]
            p[:, begin + k] = trace_p + trace_p[-1:] * (rounds + 1 - len(trace_p))
            record = episode_record(env, split) | {"greedy": greedy[k]}
            if query_mode:
                record["mean_abs_action"] = abs_actions[k]
            records.append(record)
    bar.close()
    labels = np.asarray(first.episodes.label[episodes], dtype=np.int64)
    return EvaluationResult(
        split, labels, p, records, sum(e.prompts_scored for e in batch.envs), time.perf_counter() - start,
        first.dataset.name, getattr(first.scorer, "fingerprint", ""), episodes, tables_fingerprint(first.embeddings),
        label_aware=bool(getattr(policy, "reads_labels", False)),
    )


def greedy_pairs(env: CollabRetrievalEnv, k: int) -> list[list[int]]:
    """[user index, item index] of the ``k`` pieces greedy retrieval takes for ``env``'s target, nearest
    first (call right after the reset): the reference of :meth:`EvaluationResult.retrieval_statistics`."""
    if env.config.action_mode == "candidates" and len(env.candidates) >= min(k, len(env.index)):
        rows = env.candidates[:k]  # the candidates are the nearest rows already
    else:
        rows = env.index.nearest_rows(env.target_vector, env.used_rows, k)
    pool = env.index.pool
    return [[int(pool.user[r]), int(pool.item[r])] for r in rows]


def tuning_episodes(dataset: Any, size: int | None, seed: int = 0) -> np.ndarray:
    """Rows of the validation split's ``tuning`` role (:func:`coral.data.folds.validation_roles`),
    a seeded subset of ``size`` keeping both classes (all of them for None or 0): where policy
    settings are compared and training is validated, never the threshold or early-stopping rows.

    :param dataset: the dataset.
    :param size: how many rows.
    :param seed: seed of the subset.
    """
    from coral.data.folds import validation_roles

    rows = validation_roles(dataset).tuning
    return rows[stratified_subset(dataset.valid.label[rows], size, seed)]


def mean_return(result: EvaluationResult) -> float:
    """Mean undiscounted episode return |p_0 - y| - |p_K - y| of an evaluation (no piece costs)."""
    return float(np.mean(np.abs(result.p[0] - result.labels) - np.abs(result.p[-1] - result.labels)))


def round_metrics(
    test: EvaluationResult, valid: EvaluationResult | None = None, n_boot: int = 1000
) -> list[dict[str, float]]:
    """``coral.metrics.binary_metrics`` after each round 0..K, with the round number in ``round``.

    :param test: the evaluated split.
    :param valid: the validation split evaluated the same way: its round-r scores tune round r's
        F1 threshold; without it the threshold is 0.5.
    :param n_boot: bootstrap resamples of the AUC interval.
    """
    rows = []
    for r in range(test.rounds + 1):
        v_y, v_p = (valid.labels, valid.p[r]) if valid is not None else (None, None)
        rows.append({"round": r, **binary_metrics(test.labels, test.p[r], v_y, v_p, n_boot=n_boot)})
    return rows


def write_records(path: str | Path, results: Sequence[EvaluationResult]) -> None:
    """Write every episode's evidence and p per round as JSON lines (atomically)."""
    lines = [json.dumps(rec, sort_keys=True) for res in results for rec in res.records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


#: F1 threshold sources: tuned on the validation rounds (costs a validation evaluation) or fixed 0.5.
THRESHOLDS = ("valid", "0.5")


def result_rows(
    test: EvaluationResult, valid: EvaluationResult | None, *, dataset: str, model: str, seed: int,
    config: dict[str, Any], train_seconds: float = 0.0, n_boot: int = 1000,
) -> list[dict[str, Any]]:
    """Rows in the shared results.csv format, one per round 0..K (column ``round``).

    :param test: the evaluated split.
    :param valid: validation evaluated the same way (F1 threshold per round), or None (0.5).
    :param dataset: dataset name.
    :param model: method name, e.g. coral-ppo-dfm or coral-random (a label-aware evaluation:
        ``reference-...``, see :mod:`coral.policies.label_aware`).
    :raises CoralError: when a label-aware evaluation is named as a method.
    :param seed: the run's seed.
    :param config: settings that identify the method (stored as JSON in the row).
    :param train_seconds: training time of the policy.
    :param n_boot: bootstrap resamples of the AUC interval.
    """
    from coral.policies.label_aware import require_reference_name
    from coral.results import make_row

    if test.label_aware or (valid is not None and valid.label_aware):
        require_reference_name(model)
    rows = []
    statistics = test.retrieval_statistics()
    for metrics in round_metrics(test, valid, n_boot=n_boot):
        r = int(metrics.pop("round"))
        rows.append(
            make_row(
                dataset=dataset, model=model, seed=seed, split=test.split, metrics=metrics,
                config={**config, "f1_threshold_from": "valid" if valid is not None else "0.5"},
                train_seconds=train_seconds, round=r,
                eval_seconds=round(test.seconds + (valid.seconds if valid is not None else 0.0), 3), **statistics,
            )
        )
    return rows


def evaluate_run(
    run: str | Path, split: str = "test", threshold: str = "valid", results: str | Path | None = None,
    batch_size: int = 16, limit: int | None = None, n_boot: int = 1000, valid_limit: int | None = None,
    resources: EnvResources | None = None, rows: str = "all",
) -> list[dict[str, Any]]:
    """Evaluate a ``coral train`` run: rows appended to ``results`` and episodes saved as JSONL.

    Writes ``<run>/eval_<split>.jsonl`` (and ``eval_valid.jsonl`` when the threshold comes from
    validation) and appends one row per round to ``results`` (default ``<run>/results.csv``).

    :param run: the run directory.
    :param split: the split evaluated (test or valid).
    :param threshold: "valid": F1 threshold tuned on validation rounds; "0.5": fixed.
    :param results: the results.csv to append to.
    :param batch_size: episodes scored together.
    :param limit: evaluate only ``limit`` interactions of each split, a seeded subset keeping both classes.
    :param n_boot: bootstrap resamples of the AUC interval (0: none).
    :param valid_limit: the same for the validation split that tunes the F1 threshold (None: ``limit``).
    :param resources: objects replacing the run config's names (a loaded dataset, a scorer, ...).
    :param rows: with ``split="valid"``: "all" validation rows, or "tuning" (:func:`tuning_episodes`, ``limit`` of
        them).
    """
    from coral.envs.resources import resolve_dataset
    from coral.policies.run_dir import load_run_policy, read_summary
    from coral.results import append_rows

    if threshold not in THRESHOLDS:
        raise CoralError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {threshold!r}")
    run = Path(run)
    config, policy = load_run_policy(run)
    cfg = config.env_config(split)
    if rows not in ("all", "tuning") or (rows == "tuning" and split != "valid"):
        raise CoralError(f"rows must be all, or tuning with split valid; got rows {rows!r} with split {split!r}")
    episodes = None
    if rows == "tuning":
        dataset = (
            resources.dataset if resources is not None and resources.dataset is not None else resolve_dataset(cfg.data)
        )
        episodes = tuning_episodes(dataset, limit)
    test = evaluate_policy(policy, cfg, resources, split=split, batch_size=batch_size, limit=limit, episodes=episodes)
    valid = None
    if threshold == "valid" and split != "valid":
        valid = evaluate_policy(
            policy, cfg, resources, split="valid", batch_size=batch_size,
            limit=valid_limit if valid_limit is not None else limit,
        )
    write_records(run / f"eval_{split}.jsonl", [test])
    if valid is not None:
        write_records(run / "eval_valid.jsonl", [valid])
    identity = {
        **config.to_dict(), "scorer_fingerprint": test.scorer_fingerprint, "limit": limit, "valid_limit": valid_limit,
        "rows": rows,
    }
    rows = result_rows(
        test, valid, dataset=test.dataset, model=config.model_name, seed=config.seed, config=identity,
        train_seconds=float(read_summary(run).get("train_seconds", 0.0)),
        n_boot=n_boot,
    )
    append_rows(
        results if results is not None else run / "results.csv",
        rows,
        replace_keys=("dataset", "model", "seed", "split", "round"),
    )
    return rows
