"""Scoring whole splits: the LLM-only baseline and fixed-evidence variants."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from coral.evidence import ROUNDS, Evidence
from coral.llm.base import Scorer, ScoreResult
from coral.llm.prompt import PromptBuilder

#: Given (user, item), the evidence to put in its prompt.
EvidenceFn = Callable[[int, int], Sequence[Evidence]]


def score_pairs(
    scorer: Scorer, builder: PromptBuilder, users: np.ndarray, items: np.ndarray, evidence: EvidenceFn | None = None,
    chunk: int = 64, progress: bool = False,
) -> ScoreResult:
    """P(Yes) and the Yes/No mass for each (user, item) pair.

    Pairs are scored in chunks, so that with a :class:`~coral.llm.cache.CachedScorer` an
    interrupted run resumes where it stopped.

    :param scorer: any scorer.
    :param builder: writes the prompts.
    :param users: target users.
    :param items: target items (aligned with ``users``).
    :param evidence: evidence per pair; None = no collaborative block (LLM-only).
    :param chunk: prompts per call to the scorer.
    :param progress: show a progress bar.
    """
    prompts = [
        builder.build(int(u), int(i), evidence(int(u), int(i)) if evidence else ())
        for u, i in zip(users, items, strict=False)
    ]
    p, mass = np.zeros(len(prompts)), np.zeros(len(prompts))
    starts = range(0, len(prompts), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, unit="chunk", desc="scoring")
    for start in starts:
        result = scorer.score_details(prompts[start : start + chunk])
        p[start : start + chunk] = result.p_yes
        mass[start : start + chunk] = result.yes_no_mass
    return ScoreResult(p, mass)


def random_evidence(dataset, rounds: int = ROUNDS, seed: int = 0) -> EvidenceFn:
    """CoRAL-random's retrieval: ``rounds`` uniformly drawn training interactions, never the target.

    The draw depends only on (seed, user, item), so it is the same whatever the scoring order.

    :param dataset: a :class:`~coral.data.CoralDataset` (its training split is the pool).
    :param rounds: pieces of evidence per pair.
    :param seed: seed of the draws.
    """
    train = dataset.train

    def draw(user: int, item: int) -> list[Evidence]:
        rng = np.random.default_rng([seed, user, item])
        out: list[Evidence] = []
        while len(out) < rounds:
            k = int(rng.integers(len(train)))
            ev = Evidence(int(train.user[k]), int(train.item[k]), int(train.label[k]))
            if (ev.user, ev.item) != (user, item) and ev not in out:
                out.append(ev)
        return out

    return draw
