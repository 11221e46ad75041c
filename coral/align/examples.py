"""Training prompts for alignment: training-split targets with 0..K pieces of retrieved evidence.

Targets are training interactions only, and evidence comes from the environment's evidence index
(:class:`coral.retrieval.EvidenceIndex`), whose pool is the training split and whose leakage guard
refuses the target and every validation/test interaction. :func:`check_no_heldout` checks a built
example set again, on the examples themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from coral.align.config import AlignConfig
from coral.data.dataset import CoralDataset, Interactions
from coral.errors import CoralError
from coral.evidence import Evidence
from coral.io import atomic_write_text
from coral.retrieval import EvidenceIndex, LeakageError, WarmStartConfig, resolve_embeddings


@dataclass(frozen=True)
class AlignExample:
    """One training prompt's content: a target interaction and the evidence shown with it."""

    user: int
    item: int
    label: int
    evidence: tuple[Evidence, ...]
    policy: str
    """Which retrieval policy chose the evidence ("none" for an empty block)."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "user": self.user, "item": self.item, "label": self.label, "policy": self.policy,
                "evidence": [list(e) for e in self.evidence],
            }
        )

    @classmethod
    def from_json(cls, line: str) -> "AlignExample":
        d = json.loads(line)
        return cls(
            int(d["user"]), int(d["item"]), int(d["label"]), tuple(Evidence(*map(int, e)) for e in d["evidence"]),
            str(d["policy"]),
        )


def save_examples(path: str | Path, examples: Sequence[AlignExample]) -> None:
    """Write examples as JSON lines (atomically)."""
    atomic_write_text(path, "".join(e.to_json() + "\n" for e in examples))


def load_examples(path: str | Path) -> list[AlignExample]:
    """Read examples written by :func:`save_examples`."""
    return [AlignExample.from_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


class EvidenceSampler:
    """Draws collaborative evidence for a target as the Random and Greedy retrieval policies would.

    random: uniform over the training interactions; greedy: the training interactions whose
    [user, item] warm-start embedding is nearest to the target pair's (the order in which the
    environment's ``candidates`` action mode lists them). Both exclude the target and go through
    the evidence index's leakage guard.

    :param dataset: the dataset (its training split is the pool).
    :param warm: a warm start (:class:`coral.retrieval.WarmStartConfig`) or embedding tables (an object with user/item
        arrays).
    :param seed: seed of the warm-start embeddings (as the environment's ``embedding_seed``).
    """

    def __init__(self, dataset: CoralDataset, warm: object = WarmStartConfig(), seed: int = 0) -> None:
        self.dataset = dataset
        tables = resolve_embeddings(dataset, warm, seed=seed) if isinstance(warm, WarmStartConfig) else warm
        self.index = EvidenceIndex(dataset, tables)

    def draw(self, user: int, item: int, k: int, policy: str, rng: np.random.Generator) -> tuple[Evidence, ...]:
        """``k`` distinct pieces of evidence for target (user, item), in retrieval order.

        :param policy: "random" or "greedy".
        :param rng: the generator of random draws.
        """
        n = len(self.index)
        excluded = np.zeros(n, dtype=bool)
        target_row = self.index.row_of(user, item)
        if target_row >= 0:
            excluded[target_row] = True
        k = min(int(k), int((~excluded).sum()))
        if k <= 0:
            return ()
        if policy == "greedy":
            rows = self.index.nearest_rows(self.index.pair_vector(user, item), excluded, k)
        elif policy == "random":
            rows = rng.choice(np.flatnonzero(~excluded), size=k, replace=False)
        else:
            raise CoralError(f"unknown retrieval policy {policy!r}; expected random or greedy")
        return tuple(self.index.take(int(r), user, item) for r in rows)


def _pick_targets(pool: Interactions, config: AlignConfig, rng: np.random.Generator) -> np.ndarray:
    """Row indices into ``pool``: ``n_train`` of them, half negatives when balancing by sampling."""
    n = config.n_train
    if config.balance != "sample":
        return rng.permutation(len(pool))[: min(n, len(pool))]
    rows = []
    for label, share in ((0, n // 2), (1, n - n // 2)):
        candidates = np.flatnonzero(pool.label == label)
        if len(candidates) == 0:
            raise CoralError(
                "cannot balance alignment examples: the training split has no "
                f"{'negative' if label == 0 else 'positive'} interactions"
            )
        # Every candidate once (shuffled) before any repeats; a repeat gets different evidence.
        reps = -(-share // len(candidates))
        order = np.concatenate([rng.permutation(candidates) for _ in range(reps)])[:share]
        rows.append(order)
    return rng.permutation(np.concatenate(rows))


def build_examples(
    dataset: CoralDataset, config: AlignConfig, sampler: EvidenceSampler, split: str | None = None, n: int | None = None
) -> list[AlignExample]:
    """Sample alignment examples: targets from a split, each with 0..K evidence from one policy.

    :param dataset: the dataset.
    :param config: gives n_train, the balancing, K, the policies and the seed.
    :param sampler: draws the evidence.
    :param split: where targets come from (default ``config.source_split``; "valid" for validation prompts).
    :param n: how many targets (default ``config.n_train``; validation: all when 0 or None).
    """
    split = split or config.source_split
    rng = np.random.default_rng([config.seed, {"train": 0, "tail_train": 0, "valid": 1, "test": 2}[split]])
    pool = dataset.split(split)
    if split in ("train", "tail_train"):
        rows = _pick_targets(pool, config.replace(n_train=n or config.n_train), rng)
    else:
        rows = np.arange(len(pool)) if not n or n >= len(pool) else np.sort(rng.choice(len(pool), n, replace=False))
    examples = []
    for r in rows:
        user, item, label = int(pool.user[r]), int(pool.item[r]), int(pool.label[r])
        k = int(rng.integers(0, config.rounds + 1))
        policy = str(rng.choice(config.policies)) if k else "none"
        evidence = sampler.draw(user, item, k, policy, rng) if k else ()
        examples.append(AlignExample(user, item, label, evidence, policy))
    if split in ("train", "tail_train"):
        check_no_heldout(examples, dataset)
    return examples


def check_no_heldout(examples: Iterable[AlignExample], dataset: CoralDataset) -> None:
    """Raise unless every target and every piece of evidence is a training interaction and no
    evidence is its own example's target.

    :raises CoralError: naming the first offending interaction.
    """
    n_items = dataset.n_items
    train_keys = np.unique(dataset.train.keys(n_items))
    heldout = dataset.heldout_keys

    def key_in(key: int, keys: np.ndarray) -> bool:
        pos = int(np.searchsorted(keys, key))
        return pos < len(keys) and int(keys[pos]) == key

    for ex in examples:
        for user, item, what in [(ex.user, ex.item, "target"), *((e.user, e.item, "evidence") for e in ex.evidence)]:
            key = int(user) * n_items + int(item)
            if key_in(key, heldout):
                raise LeakageError(f"alignment {what} (user {user}, item {item}) is a validation/test interaction")
            if not key_in(key, train_keys):
                raise LeakageError(f"alignment {what} (user {user}, item {item}) is not a training interaction")
        if any(e.user == ex.user and e.item == ex.item for e in ex.evidence):
            raise LeakageError(f"alignment example (user {ex.user}, item {ex.item}) shows its own target as evidence")
