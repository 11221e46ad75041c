"""Helpers for the LLM tests: a small dataset, the embedded tokenizer, a tiny random llama,
and scripted scorers for the cache tests. Imported by tests/test_llm_*.py (not a conftest, so
that it stays owned by those tests)."""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Sequence

import numpy as np

from coral.llm.base import Prompt, Scorer, ScoreResult


def small_dataset():
    """A processed dataset of 40 users and 15 items with texts and likes/dislikes."""
    from coral.data import DataConfig, RawData, build_dataset

    rng = np.random.default_rng(0)
    users, items, ratings, ts = [], [], [], []
    for u in range(40):
        for i in rng.choice(15, size=8, replace=False):
            users.append(f"u{u}")
            items.append(f"i{i}")
            ratings.append(float(rng.integers(1, 6)))
            ts.append(int(rng.integers(1_000, 100_000)))
    texts = {f"i{i}": f"Gift card number {i} in a {['red', 'blue', 'gold'][i % 3]} box" for i in range(15)}
    return build_dataset(
        RawData(users, items, ratings, ts, item_text=texts, source="small"), DataConfig(k_core=2), name="small"
    )


@functools.lru_cache(maxsize=None)
def embedded_tokenizer():
    """The real embedded tokenizer (via the safetensors copy of the embedded model)."""
    from transformers import AutoTokenizer

    from coral.llm.model import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir(None))


def tiny_llama(seed: int = 0):
    """A randomly initialised 2-layer llama (hidden 32) over the embedded tokenizer's vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = embedded_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,  # large random weights: P(Yes) then varies visibly between prompts
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def pseudo_p(text: str) -> float:
    """A deterministic P(Yes) from a prompt's text."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


class HashScorer(Scorer):
    """P(Yes) = a hash of the prompt text, plus a per-instance random offset (so that a value
    can only come back identical from the cache, never from recomputation)."""

    fingerprint = "hash-scorer"

    def __init__(self) -> None:
        self.offset = int.from_bytes(os.urandom(2), "little") / 2**20
        self.calls = 0
        self.prompts = 0

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        self.calls += 1
        self.prompts += len(prompts)
        p = np.array([(pseudo_p(x.text) + self.offset) % 1.0 for x in prompts])
        return ScoreResult(p, np.full(len(prompts), 0.9))


class FailingScorer(Scorer):
    """Raises if asked to score anything: proves that values came from the cache."""

    fingerprint = "hash-scorer"

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        raise AssertionError(f"inner scorer called for {len(prompts)} prompts")


def text_prompts(n: int, tag: str = "") -> list[Prompt]:
    return [Prompt((f"prompt {tag}{k}: ", "answer?")) for k in range(n)]


def evidence_episodes(dataset, n: int, steps: int, seed: int) -> list[tuple[int, int, list]]:
    """``n`` (user, item, evidence) episodes: validation pairs, each with ``steps`` random training pieces."""
    from coral.evidence import Evidence

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        u, i = int(dataset.valid.user[k]), int(dataset.valid.item[k])
        rows = rng.choice(len(dataset.train), steps, replace=False)
        out.append(
            (
                u,
                i,
                [
                    Evidence(int(dataset.train.user[r]), int(dataset.train.item[r]), int(dataset.train.label[r]))
                    for r in rows
                ],
            )
        )
    return out
