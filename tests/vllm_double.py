"""A test double of the ``vllm`` module: the ``LLM`` / ``SamplingParams`` surface coral's backend uses.

Installed with ``monkeypatch.setitem(sys.modules, "vllm", make_fake_vllm(tokenizer, logits_fn))``.
It records every ``LLM(...)`` and ``generate(...)`` call and is as strict as vLLM where a mistake
would otherwise pass unnoticed; each rule names the vLLM source it follows (files of
github.com/vllm-project/vllm, read through the code index, see experiments/notes/vllm.md):

- ``SamplingParams``: an unknown field is a TypeError (a ``msgspec.Struct`` in vLLM,
  ``vllm/sampling_params.py``); temperature < 0 is a ValueError;
- ``LLM(**options)``: an option that is not an engine argument is a TypeError (``EngineArgs(**kwargs)``
  in ``vllm/entrypoints/llm.py``); ``logprobs_mode`` must be one of the four modes of
  ``vllm/config/model.py``; ``max_logprobs`` defaults to 20 there;
- ``generate``: ``logprobs`` above ``max_logprobs``, an empty or out-of-vocabulary
  ``allowed_token_ids``, an empty prompt or a prompt id outside the vocabulary are ValueErrors
  (``vllm/v1/engine/input_processor.py``); coral's own rule on top: a prompt must be
  ``{"prompt_token_ids": [...]}`` (text would be tokenised by vLLM, not segment-wise), else TypeError;
- the answer follows the v1 sampler (``vllm/v1/sample/sampler.py``): ``raw_logprobs`` is the
  log-softmax of the logits before the allowed-token mask, ``processed_logprobs`` after it;
  greedy at temperature 0; the table holds the top ``logprobs`` tokens plus the sampled one, as
  ``out.outputs[0].logprobs[0] = {token id: Logprob(logprob, rank, decoded_token)}``.

Everything is float64 (vLLM computes log-probabilities in float32), so a readout can be compared
with the double's exact restricted softmax to 1e-9.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: Engine arguments the double accepts: the ones coral passes or documents (a subset of EngineArgs).
LLM_OPTIONS = frozenset(
    {
        "dtype", "enable_prefix_caching", "max_logprobs", "logprobs_mode", "gpu_memory_utilization", "max_model_len",
        "seed", "tensor_parallel_size", "enforce_eager", "generation_config",
    }
)
LOGPROBS_MODES = ("raw_logits", "raw_logprobs", "processed_logits", "processed_logprobs")


@dataclass(frozen=True)
class Logprob:
    """``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class SamplingParams:
    """The ``vllm.SamplingParams`` fields coral may set (keyword-only, like the msgspec struct)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int | None = 16
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    allowed_token_ids: list[int] | None = None
    seed: int | None = None
    detokenize: bool = True

    def __post_init__(self) -> None:
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


@dataclass
class Recorder:
    """What the code under test asked of the double."""

    llm_options: list[dict[str, Any]] = field(default_factory=list)
    """One dict per ``LLM(...)``: the model and the options."""
    generate_calls: list[tuple[list[Any], SamplingParams, dict[str, Any]]] = field(default_factory=list)
    """(prompts, sampling params, keyword options) per ``generate(...)``."""


def log_softmax(x: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    return x - np.logaddexp.reduce(finite)


def make_fake_vllm(tokenizer: Any, logits_fn: Callable[[list[int]], np.ndarray]) -> types.ModuleType:
    """A module object standing in for ``vllm``.

    :param tokenizer: what ``LLM.get_tokenizer()`` returns (a Hugging Face tokenizer); its length
        is the vocabulary.
    :param logits_fn: prompt token ids -> next-token logits over the vocabulary.
    :returns: the module; ``module.recorder`` holds the calls, ``module.llms`` the LLM objects.
    """
    recorder = Recorder()
    vocab = len(tokenizer)
    llms: list[Any] = []

    class LLM:
        def __init__(self, model: str, **options: Any) -> None:
            unknown = set(options) - LLM_OPTIONS
            if unknown:
                raise TypeError(f"EngineArgs.__init__() got unexpected keyword argument(s) {sorted(unknown)}")
            self.logprobs_mode = options.get("logprobs_mode", "raw_logprobs")
            if self.logprobs_mode not in LOGPROBS_MODES:
                raise ValueError(f"logprobs_mode must be one of {LOGPROBS_MODES}, got {self.logprobs_mode!r}")
            self.max_logprobs = int(options.get("max_logprobs", 20))
            recorder.llm_options.append({"model": model, **options})
            llms.append(self)

        def get_tokenizer(self) -> Any:
            return tokenizer

        def generate(
            self, prompts: Sequence[Any], sampling_params: SamplingParams | None = None, *, use_tqdm: bool = True,
            **options: Any,
        ) -> list[RequestOutput]:
            params = sampling_params if sampling_params is not None else SamplingParams()
            recorder.generate_calls.append((list(prompts), params, {"use_tqdm": use_tqdm, **options}))
            if params.logprobs is not None and params.logprobs > self.max_logprobs:
                raise ValueError(
                    f"Requested sample logprobs of {params.logprobs}, which is greater than max allowed: "
                    f"{self.max_logprobs}"
                )
            if params.allowed_token_ids is not None:
                if not params.allowed_token_ids:
                    raise ValueError("allowed_token_ids is not None and empty!")
                if not all(0 <= t < vocab for t in params.allowed_token_ids):
                    raise ValueError("allowed_token_ids contains out-of-vocab token id!")
            outputs = []
            for n, prompt in enumerate(prompts):
                if not isinstance(prompt, dict) or set(prompt) != {"prompt_token_ids"}:
                    raise TypeError(
                        f"prompt {n}: the double takes token-id prompts only, {{'prompt_token_ids': [...]}}, got "
                        f"{prompt!r:.80}"
                    )
                ids = prompt["prompt_token_ids"]
                if not ids:
                    raise ValueError("The decoder prompt cannot be empty")
                if not all(isinstance(t, int) for t in ids):
                    raise TypeError(f"prompt {n}: token ids must be ints")
                if min(ids) < 0 or max(ids) >= vocab:
                    raise ValueError(f"Token id {max(ids)} is out of vocabulary")
                outputs.append(self._complete(str(n), list(ids), params))
            return outputs

        def _complete(self, request_id: str, ids: list[int], params: SamplingParams) -> RequestOutput:
            logits = np.asarray(logits_fn(ids), dtype=np.float64)
            assert logits.shape == (vocab,), "logits_fn must return one logit per vocabulary entry"
            raw = log_softmax(logits)
            masked = logits.copy()
            if params.allowed_token_ids is not None:
                keep = np.zeros(vocab, dtype=bool)
                keep[list(params.allowed_token_ids)] = True
                masked[~keep] = -np.inf
            processed = log_softmax(masked)
            if params.temperature != 0.0:
                raise NotImplementedError("the double samples greedily only (coral asks for temperature 0)")
            sampled = int(np.argmax(processed))
            reported = processed if self.logprobs_mode == "processed_logprobs" else raw
            if self.logprobs_mode not in ("raw_logprobs", "processed_logprobs"):
                raise NotImplementedError(f"the double does not model logprobs_mode={self.logprobs_mode!r}")
            table = None
            if params.logprobs is not None:
                order = np.argsort(-reported, kind="stable")

                def entry(t: int) -> Logprob:
                    rank = 1 + int(np.sum(reported > reported[t]))
                    return Logprob(float(reported[t]), rank, tokenizer.decode([t]))

                table = {int(t): entry(int(t)) for t in order[: params.logprobs]}
                table.setdefault(sampled, entry(sampled))
            text = tokenizer.decode([sampled])
            return RequestOutput(
                request_id, ids, [CompletionOutput(0, text, [sampled], [table] if table is not None else None)]
            )

    module = types.ModuleType("vllm")
    module.LLM = LLM  # type: ignore[attr-defined]
    module.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    module.recorder = recorder  # type: ignore[attr-defined]
    module.llms = llms  # type: ignore[attr-defined]
    return module
