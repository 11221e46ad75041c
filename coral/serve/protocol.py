"""The OpenAI-compatible ``/v1/completions`` subset that ``coral serve-scorer`` speaks.

A scorer request asks for one next token with its top log-probabilities, exactly what
:class:`coral.llm.openai_backend.OpenAIScorer` sends to ``vllm serve``:
``{"model": M, "prompt": TEXT, "max_tokens": 1, "temperature": 0, "logprobs": K}``; ``prompt`` may
also be a list of texts (one choice each). Two coral extensions, both optional, which other
OpenAI clients never send nor need to read:

- request ``coral_segments``: the prompt's segments (their concatenation must be the prompt), so
  the server tokenises and reuses prefix KV exactly as the in-process scorer would;
- response ``choices[i].coral``: ``{"p_yes", "yes_no_mass"}`` as the HF scorer computed them
  (also right for aligned scorers with a readout head, whose p is not a label-token softmax).

Anything else is refused with an OpenAI-style error body, so that a misconfigured client fails
loudly instead of scoring the wrong thing. The extension names live in the client's module (the
lower layer): the server follows the client.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from coral.llm.base import Prompt
from coral.llm.openai_backend import CORAL_CHOICE_FIELD, CORAL_MODEL_FIELD, PROTOCOL_VERSION, SEGMENTS_FIELD

#: vLLM's default cap on requested log-probabilities (``--max-logprobs 20``).
MAX_LOGPROBS = 20
#: Request bodies above this many bytes are refused (a prompt is a few KB).
MAX_BODY_BYTES = 4 << 20
#: Prompts per request at most.
MAX_PROMPTS_PER_REQUEST = 256
#: After a newline followed by visible text: where :func:`segments_of` cuts.
SEGMENT_BOUNDARY = re.compile(r"(?<=\n)(?=\S)")
#: OpenAI's error ``type`` per HTTP status.
ERROR_TYPES = {
    400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error", 503: "service_unavailable",
}


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and the offending parameter.

    :param status: HTTP status of the answer.
    :param message: one line saying what is wrong.
    :param param: the request field at fault, if one is.
    """

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


class ClientGone(Exception):
    """The client of a request left before its answer was ready (nobody reads the result)."""


class ServerStopping(Exception):
    """The server stopped (SIGTERM/SIGINT) before a request was scored."""


@dataclass(frozen=True)
class CompletionRequest:
    """A validated scoring request."""

    model: str
    """The served model name the client asked for."""
    prompts: tuple[Prompt, ...]
    """The prompts (one choice each), as segments."""
    top_logprobs: int
    """Next-token log-probabilities to return per prompt (label tokens are always added)."""


@dataclass(frozen=True)
class NextToken:
    """The next-token distribution of one prompt, as the server reports it."""

    top: tuple[tuple[str, float], ...]
    """(token text, log-probability) of the most likely tokens, best first (:data:`MAX_LOGPROBS` of them)."""
    labels: dict[str, float]
    """Token text -> log-probability of every label token ("Yes", " Yes", "No", " No")."""
    token: str
    """The most likely token (the greedy completion)."""
    logprob: float
    """Its log-probability."""
    prompt_tokens: int
    """Prompt length in tokens (for ``usage``)."""
    p_yes: float
    """P(Yes) as the in-process scorer computes it."""
    yes_no_mass: float
    """Probability mass on the label tokens."""


def _prompts(data: dict[str, Any]) -> tuple[Prompt, ...]:
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        texts: list[str] = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        texts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        raise RequestError(
            400, "token-id prompts are not supported by coral serve-scorer; send the prompt text", "prompt"
        )
    else:
        raise RequestError(400, "prompt must be a non-empty string or a list of strings", "prompt")
    if len(texts) > MAX_PROMPTS_PER_REQUEST:
        raise RequestError(400, f"at most {MAX_PROMPTS_PER_REQUEST} prompts per request, got {len(texts)}", "prompt")
    if not all(texts):
        raise RequestError(400, "prompt must not be empty", "prompt")
    if not all(_encodable(t) for t in texts):
        raise RequestError(400, "prompt must be valid Unicode text (it holds an unpaired surrogate)", "prompt")
    segments = data.get(SEGMENTS_FIELD)
    if segments is None:
        return tuple(Prompt(segments=segments_of(t)) for t in texts)
    if (
        len(texts) != 1
        or not isinstance(segments, list)
        or not segments
        or not all(isinstance(s, str) and s for s in segments)
    ):
        raise RequestError(
            400, f"{SEGMENTS_FIELD} must be a list of non-empty strings, with a single string prompt", SEGMENTS_FIELD
        )
    if "".join(segments) != texts[0]:
        raise RequestError(400, f"the {SEGMENTS_FIELD} do not add up to the prompt", SEGMENTS_FIELD)
    return (Prompt(segments=tuple(segments)),)


def _encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON allows lone surrogates such as ``"\\ud800"``; tokenizers do
    not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_completion_request(body: bytes, served_model: str) -> CompletionRequest:
    """Validate a ``/v1/completions`` body.

    :param body: the raw request body.
    :param served_model: the model name this server answers to.
    :raises RequestError: 400 for malformed or unsupported requests, 404 for another model.
    """
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as err:  # not JSON, not UTF-8, or an integer of more digits than Python converts
        raise RequestError(400, f"request body is not valid JSON: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "request body must be a JSON object")
    model = data.get("model")
    if model != served_model:
        raise RequestError(404, f"the model {model!r} does not exist; this server serves {served_model!r}", "model")
    prompts = _prompts(data)
    max_tokens = data.get("max_tokens", 16)
    if max_tokens != 1:
        raise RequestError(
            400, f"this server only scores the next token: max_tokens must be 1, got {max_tokens!r}", "max_tokens"
        )
    logprobs = data.get("logprobs")
    if not isinstance(logprobs, int) or isinstance(logprobs, bool) or not 0 <= logprobs <= MAX_LOGPROBS:
        raise RequestError(400, f"logprobs must be an integer in [0, {MAX_LOGPROBS}], got {logprobs!r}", "logprobs")
    temperature = data.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise RequestError(400, f"temperature must be a number >= 0, got {temperature!r}", "temperature")
    for unsupported in ("echo", "stream", "suffix"):
        if data.get(unsupported):
            raise RequestError(400, f"{unsupported} is not supported by coral serve-scorer", unsupported)
    n = data.get("n", 1)
    if n != 1:
        raise RequestError(400, f"n must be 1, got {n!r}", "n")
    return CompletionRequest(model=model, prompts=prompts, top_logprobs=logprobs)


def segments_of(text: str) -> tuple[str, ...]:
    """Segments for a prompt sent as plain text (a client that does not send ``coral_segments``).

    Cut after every newline that is followed by visible text (byte-level BPE never merges across
    such a point, so the token ids are those of the whole text), with the trailing chat-template
    lines (``<|...``) kept with the line before them. HFScorer stores the KV of each prompt's
    prefix "all segments but the last", and the next retrieval step inserts an evidence line
    before the query: the last segment must be the whole tail (query + template footer), or the
    stored prefix would contain the query line and no later prompt would reuse it (measured:
    about 3x the CPU per step).

    :param text: the prompt text.
    """
    parts = [s for s in SEGMENT_BOUNDARY.split(text) if s]
    while len(parts) > 1 and parts[-1].startswith("<|"):
        parts[-2:] = [parts[-2] + parts[-1]]
    return tuple(parts)


def completion_response(
    request: CompletionRequest, results: list[NextToken], request_id: str, created: int
) -> dict[str, Any]:
    """The OpenAI ``text_completion`` object for ``results`` (one choice per prompt).

    :param request: the request answered.
    :param results: one next-token distribution per prompt.
    :param request_id: the ``id`` of the answer.
    :param created: its Unix time.
    """
    choices = []
    for index, res in enumerate(results):
        # The label tokens are always there, so that a client reading top_logprobs finds both.
        shown = {**dict(res.top[: request.top_logprobs]), **res.labels}
        ranked = sorted(shown.items(), key=lambda kv: kv[1], reverse=True)
        choices.append(
            {
                "index": index,
                "text": res.token,
                "logprobs": {
                    "tokens": [res.token],
                    "token_logprobs": [res.logprob],
                    "top_logprobs": [dict(ranked)],
                    "text_offset": [0],
                },
                "finish_reason": "length",
                CORAL_CHOICE_FIELD: {"p_yes": res.p_yes, "yes_no_mass": res.yes_no_mass},
            }
        )
    prompt_tokens = sum(r.prompt_tokens for r in results)
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": request.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(results),
            "total_tokens": prompt_tokens + len(results),
        },
    }


def models_response(model_name: str, created: int, scorer_info: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/models``: the served model, with coral's metadata under ``coral``.

    :param model_name: the name clients put in ``model``.
    :param created: the server's start time (Unix).
    :param scorer_info: the scorer's fingerprint, labels, tokenizer digest, ... (what a client
        needs to reproduce in-process scoring and to share the score cache).
    """
    entry = {"id": model_name, "object": "model", "created": created, "owned_by": "coral", "root": model_name}
    entry[CORAL_MODEL_FIELD] = {"protocol": PROTOCOL_VERSION, **scorer_info}
    return {"object": "list", "data": [entry]}


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object.

    :param status: the HTTP status it goes with.
    :param message: one line saying what is wrong.
    :param param: the request field at fault, if one is.
    """
    return {
        "error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": param, "code": status}
    }
