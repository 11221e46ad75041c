"""LLM scoring: prompts (:mod:`coral.llm.prompt`), backends and the persistent score cache.

``make_scorer(spec)`` builds a scorer from a short spec string:

- ``"hf"``: the embedded SmolLM2-135M-Instruct through transformers (the default);
- ``"hf:PATH"``: any local HF model directory or ``.gguf`` file;
- ``"aligned:DIR"``: an LLM aligned by ``coral align`` (LoRA merged, or a readout head);
- ``"vllm:MODEL"``: in-process vLLM (optional extra);
- ``"scripted[:weight=..,noise=..,bias=..,seed=..]"``: a fast scripted scorer for RL work and tests;
- ``"openai:URL#MODEL"``: an OpenAI-compatible completions endpoint, e.g. ``coral serve-scorer``'s
  ``openai:http://127.0.0.1:8000/v1#HuggingFaceTB/SmolLM2-135M-Instruct`` (which hands the client
  its tokenizer and fingerprint); ``openai:URL#MODEL;tokenizer=DIR`` gives the tokenizer whose
  chat template the prompts need (an HF dir, a .gguf, or ``embedded``), e.g. for ``vllm serve``;
  ``;labels_only`` restricts vLLM's next token to the label ids (``allowed_token_ids``), so p is
  exact even when a label is outside the top 20 (start it with ``--logprobs-mode processed_logprobs``).

Torch and transformers are imported only when a scorer is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from coral.config import renamed
from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult
from coral.llm.model import embedded_model_path, load_embedded_model, load_model
from coral.llm.precision import PRECISIONS, default_precision
from coral.llm.spec import ScorerSpec, parse_scorer_spec

__all__ = [
    "Prompt", "Scorer", "ScoreResult", "ScorerConfig", "ScorerSpec", "make_scorer", "parse_scorer_spec",
    "default_cache_path", "PRECISIONS", "default_precision", "embedded_model_path", "load_embedded_model", "load_model",
]  # fmt: skip


@dataclass(frozen=True)
class ScorerConfig:
    """Which LLM scores the prompts: the scorer section of every command that scores."""

    scorer: str = "hf"
    """Scorer spec: hf (the embedded SmolLM2-135M-Instruct), hf:PATH (HF dir or .gguf), aligned:DIR (from `coral
    align`), vllm:MODEL, openai:URL#MODEL[;tokenizer=DIR][;labels_only] (e.g. a `coral serve-scorer`; ;labels_only for
    vllm serve), scripted[:k=v,...]."""
    precision: Optional[Literal["auto", "float32", "int8", "bfloat16"]] = renamed(None, old="layout")
    """How hf/aligned weights compute (vllm: its dtype); None/auto: the fastest precision this CPU runs natively whose
    recorded parity check passed (coral.llm.precision)."""


def default_cache_path() -> Path:
    """The shared score cache file under ``coral.io.cache_dir``."""
    from coral.io import cache_dir

    return cache_dir("llm") / "scores.sqlite"


def make_scorer(
    spec: str = ScorerConfig.scorer, *, cache: str | Path | bool | None = True, precision: str | None = None,
    batch_size: int = 8, kv_reuse: bool = True, labels: tuple[str, str] = ("Yes", "No"),
) -> Scorer:
    """Build a scorer from ``spec`` (see the module docstring), wrapped in the persistent cache.

    :param spec: "hf", "hf:PATH", "aligned:DIR", "vllm:MODEL", "openai:URL#MODEL[;tokenizer=DIR]" or "scripted[:...]".
    :param cache: True = the default cache file, a path = that file, False/None = no cache.
    :param precision: "float32", "int8" or "bfloat16" (hf, aligned; vllm: its dtype, int8 not offered);
        None / "auto" = :func:`~coral.llm.precision.default_precision` for hf and aligned.
    :param batch_size: prompts per forward pass (hf).
    :param kv_reuse: reuse prefix key/value caches across prompts (hf).
    :param labels: (positive, negative) label text.
    :raises CoralError: for an unknown spec.
    """
    parsed = parse_scorer_spec(spec)
    backend, arg = parsed.backend, parsed.argument
    if backend == "scripted":  # a deterministic function of the prompt's metadata: nothing to cache
        from coral.llm.scripted import ScriptedScorer

        return ScriptedScorer.from_spec(spec)
    if backend == "hf":
        from coral.llm.hf import HFScorer
        from coral.llm.model import model_identity

        path = arg or None
        model, tokenizer = load_model(path, precision)
        scorer: Scorer = HFScorer(
            model, tokenizer, model_id=model_identity(path), labels=labels, batch_size=batch_size, kv_reuse=kv_reuse
        )
    elif backend == "aligned":
        from coral.llm.aligned import load_aligned_scorer

        scorer = load_aligned_scorer(arg, precision=precision, batch_size=batch_size, kv_reuse=kv_reuse)
    elif backend == "vllm":
        from coral.llm.vllm_backend import VLLMScorer

        if precision == "int8":
            raise CoralError("the vllm backend takes precision float32 or bfloat16 (its dtype), not int8")
        scorer = VLLMScorer(arg, dtype=None if precision in (None, "auto") else precision, labels=labels)
    else:  # openai (parse_scorer_spec knows no other backend)
        from coral.llm.openai_backend import OpenAIScorer, parse_openai_spec

        url, model_name, tokenizer, labels_only = parse_openai_spec(arg)
        scorer = OpenAIScorer(url, model_name, labels=labels, tokenizer=tokenizer, labels_only=labels_only)
    if cache is True:
        cache = default_cache_path()
    if cache:
        from coral.llm.cache import CachedScorer

        scorer = CachedScorer(scorer, cache)
    return scorer
