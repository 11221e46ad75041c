"""The scorer interface: prompts in, P("Yes") out. Backends live beside this module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from coral.evidence import Evidence


@dataclass(frozen=True)
class Prompt:
    """A prompt as ordered text segments.

    ``text`` is the concatenation of ``segments``. Every boundary between segments is a place
    where a backend may reuse the key/value cache of everything before it: the prompt builder
    puts the parts that stay fixed during an episode first, one segment per piece of evidence
    next, and the short changing tail last, so a retrieval step costs only its new tokens.
    ``user``, ``item`` and ``evidence`` are metadata for scripted scorers and logs; LLM
    backends read only the text.
    """

    segments: tuple[str, ...]
    user: int = field(default=-1, compare=False)
    item: int = field(default=-1, compare=False)
    evidence: tuple[Evidence, ...] = field(default=(), compare=False)
    version: str = ""
    """The prompt template's version (:attr:`coral.llm.prompt.PromptBuilder.version`): part of
    every cache key and result row."""

    @property
    def text(self) -> str:
        return "".join(self.segments)


@dataclass(frozen=True)
class ScoreResult:
    """P(Yes) per prompt, and the raw probability mass on the Yes and No tokens together."""

    p_yes: np.ndarray
    yes_no_mass: np.ndarray


class Scorer(ABC):
    """Maps prompts to p = P("Yes" | prompt), softmax over the Yes/No label-token logits."""

    #: Identity of everything that changes a score (backend, model, dtype, template version,
    #: label tokens, adapter). It is part of every cache key and result row.
    fingerprint: str = ""
    #: The tokenizer whose chat template prompts should use, when the backend has one locally.
    tokenizer = None
    #: The prompt settings (:class:`coral.llm.prompt.PromptConfig`) the scorer was trained for, when it
    #: was (an aligned scorer); None = any. :func:`coral.llm.prompt.scorer_prompt_builder` reads it.
    prompt_config = None
    #: The prompt template version it was trained for (None = any): a scorer that has one refuses other prompts.
    prompt_version: str | None = None

    @abstractmethod
    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        """Score a batch of prompts."""

    def score(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """P(Yes) for each prompt, float64 in [0, 1]."""
        return self.score_details(prompts).p_yes

    def stats(self) -> dict[str, float]:
        """Counters for logging (``coral/llm_calls``, ``coral/cache_hits``, ...)."""
        return {}
