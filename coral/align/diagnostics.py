"""Does a scorer use collaborative evidence? Figures for zero-shot vs aligned scorers.

For each target pair of a split, one retrieval trajectory of K pieces (random or greedy,
alternating over pairs) is scored after every piece: p_0 (no evidence), p_1, ..., p_K. From
these:

- ``auc_llm_only``: AUC of p_0 (the LLM alone, "LLM-Language"), with a bootstrap interval;
- ``auc_k``: AUC of p_K (K = ``rounds`` pieces of evidence), and ``auc_mean_0k`` the mean of AUC(p_t) over t;
- ``mean_abs_dp``: the mean |p_t - p_{t-1}| caused by adding one piece of evidence;
- ``share_toward_label``: the share of pieces that move p toward the evidence's own label
  (up for a liked item, down for a disliked one; no change counts as not toward), and
  ``share_toward_label_balanced`` the mean of that share over liked and disliked pieces.

Scoring goes step by step over chunks of pairs, so that each step's prompts reuse the key/value
cache of the previous step's prefix in the scorer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from coral.align.examples import EvidenceSampler
from coral.data.dataset import CoralDataset
from coral.data.sample import stratified_subset
from coral.errors import CoralError
from coral.evidence import ROUNDS
from coral.llm.base import Scorer
from coral.metrics import binary_metrics
from coral.retrieval import WarmStartConfig


def score_trajectories(
    scorer: Scorer, builder: Any, targets: Sequence[tuple[int, int]], evidence: Sequence[Sequence[Any]],
    chunk: int = 32, progress: bool = True,
) -> np.ndarray:
    """(n, K+1) P(Yes) after 0..K pieces of each target's evidence (NaN past a shorter trajectory).

    :param scorer: the scorer.
    :param builder: a prompt builder (``build(user, item, evidence)``).
    :param targets: (user, item) pairs.
    :param evidence: per target, its evidence in retrieval order.
    :param chunk: pairs scored together (bounds the scorer's prefix cache).
    :param progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    k_max = max((len(e) for e in evidence), default=0)
    p = np.full((len(targets), k_max + 1), np.nan)
    bar = tqdm(total=sum(len(e) + 1 for e in evidence), desc="diagnostics", unit="prompt", disable=not progress)
    for start in range(0, len(targets), chunk):
        rows = range(start, min(start + chunk, len(targets)))
        for t in range(k_max + 1):
            todo = [j for j in rows if t <= len(evidence[j])]
            prompts = [builder.build(targets[j][0], targets[j][1], tuple(evidence[j][:t])) for j in todo]
            if prompts:
                p[todo, t] = scorer.score(prompts)
                bar.update(len(prompts))
    bar.close()
    return p


def evidence_diagnostics(
    scorer: Scorer, dataset: CoralDataset, builder: Any, split: str = "valid", *, rounds: int = ROUNDS,
    policies: Sequence[str] = ("random", "greedy"), warm: Any = WarmStartConfig(), n_pairs: int = 0, seed: int = 0,
    n_boot: int = 1000, progress: bool = True,
) -> dict[str, Any]:
    """LLM-only AUC, AUC with K pieces of evidence, and how much and which way one piece moves p.

    :param scorer: the scorer to examine.
    :param dataset: the dataset; targets are the ``split`` interactions, evidence comes from training.
    :param builder: the prompt builder the scorer expects (same template as in the environment).
    :param split: "valid" or "test" (or "train"/"tail_train").
    :param rounds: evidence pieces per trajectory (K).
    :param policies: retrieval policies, alternated over pairs.
    :param warm: the greedy policy's embeddings: a warm start, or tables (an object with user and item arrays).
    :param n_pairs: score this many pairs, a seeded sample keeping both classes (0 = all;
        :func:`coral.data.sample.stratified_subset`).
    :param seed: seed of the sample and of the random policy.
    :param n_boot: bootstrap resamples of the AUC intervals of p_0 and p_K (0 = none).
    :param progress: show a progress bar.
    :returns: the figures above plus ``p`` ((n, K+1) scores), ``labels``, ``evidence_labels`` and counts.
    """
    if rounds < 1:
        raise CoralError(f"diagnostics need rounds >= 1 pieces of evidence, got {rounds}")
    pool = dataset.split(split)
    rng = np.random.default_rng([seed, 7])
    rows = stratified_subset(pool.label, n_pairs, rng)
    sampler = EvidenceSampler(dataset, warm)
    targets = [(int(pool.user[r]), int(pool.item[r])) for r in rows]
    evidence = [sampler.draw(u, i, rounds, policies[j % len(policies)], rng) for j, (u, i) in enumerate(targets)]
    labels = pool.label[rows].astype(np.int64)
    p = score_trajectories(scorer, builder, targets, evidence, progress=progress)
    ev_labels = np.full((len(targets), p.shape[1] - 1), np.nan)
    for j, ev in enumerate(evidence):
        ev_labels[j, : len(ev)] = [e.label for e in ev]
    return {
        "split": split, "n_pairs": len(targets), "n_negative": int((labels == 0).sum()), "rounds": int(p.shape[1] - 1),
        **_auc_figures(p, labels, n_boot, seed), **_movement_figures(p, ev_labels), "p": p, "labels": labels,
        "evidence_labels": ev_labels,
    }


def _auc_figures(p: np.ndarray, labels: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUC of p_0 (the LLM alone) and of p_K with bootstrap intervals, and the AUC after each step."""

    def metrics(scores: np.ndarray, boot: int) -> dict[str, float]:
        ok = ~np.isnan(scores)
        return binary_metrics(labels[ok], scores[ok], n_boot=boot, seed=seed)

    at_0, at_k = metrics(p[:, 0], n_boot), metrics(p[:, -1], n_boot)
    aucs = [metrics(p[:, t], 0)["auc"] for t in range(p.shape[1])]
    return {
        "auc_llm_only": at_0["auc"], "auc_llm_only_ci": [at_0["auc_ci_low"], at_0["auc_ci_high"]], "auc_k": at_k["auc"],
        "auc_k_ci": [at_k["auc_ci_low"], at_k["auc_ci_high"]], "auc_by_t": aucs, "auc_mean_0k": float(np.mean(aucs)),
        "mean_p0": float(np.nanmean(p[:, 0])),
    }


def _movement_figures(p: np.ndarray, ev_labels: np.ndarray) -> dict[str, Any]:
    """How far each piece of evidence moves p, and how often toward the evidence's own label."""
    dp = np.diff(p, axis=1)
    moved = ~np.isnan(dp)
    direction = np.where(ev_labels == 1, 1.0, -1.0)
    toward = (np.sign(dp) == direction) & moved
    liked = moved & (ev_labels == 1)
    disliked = moved & (ev_labels == 0)
    return {
        "mean_abs_dp": float(np.abs(dp[moved]).mean()) if moved.any() else float("nan"),
        "share_toward_label": float(toward.sum() / moved.sum()) if moved.any() else float("nan"),
        # Random evidence on a 98%-positive dataset is nearly all "liked": a scorer that raises p
        # on any evidence scores high on the plain share, so the per-label mean also matters.
        "share_toward_label_balanced": float(np.mean([toward[m].mean() for m in (liked, disliked) if m.any()]))
        if moved.any()
        else float("nan"),
        "mean_dp_liked": float(dp[liked].mean()) if liked.any() else float("nan"),
        "mean_dp_disliked": float(dp[disliked].mean()) if disliked.any() else float("nan"),
        "n_pieces": int(moved.sum()),
        "n_disliked_pieces": int(disliked.sum()),
    }


def summary(diag: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of :func:`evidence_diagnostics`'s result (drops the arrays)."""
    return {k: v for k, v in diag.items() if not isinstance(v, np.ndarray)}
