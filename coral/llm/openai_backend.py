"""A backend for any OpenAI-compatible completions endpoint that returns log-probabilities.

Works with ``vllm serve MODEL`` (``openai:http://127.0.0.1:8000/v1#MODEL``) and hosted services
that still offer the legacy ``/completions`` route with ``logprobs``. Each prompt is one request
for a single next token with the top-k log-probabilities; p is read from the label tokens found
among them (see :func:`coral.llm.labels.readout_from_top_logprobs`). The prompt must already be
in the model's chat format: build prompts with a local tokenizer of the same model, or plain.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult
from coral.llm.labels import DEFAULT_LABELS, readout_from_top_logprobs

#: HTTP statuses worth retrying (rate limits and server-side trouble).
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIScorer(Scorer):
    """P(Yes) from an OpenAI-compatible ``/completions`` endpoint.

    :param base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
    :param model: the model name the server expects.
    :param labels: (positive, negative) label text; " Yes"/" No" variants count too.
    :param top_logprobs: how many next-token log-probabilities to ask for (vLLM allows 20).
    :param timeout: seconds per HTTP request.
    :param retries: further attempts after a failed request (exponential back-off).
    :param max_concurrency: requests in flight at once.
    :param api_key: bearer token; default ``$OPENAI_API_KEY`` if set.
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        labels: tuple[str, str] = DEFAULT_LABELS,
        top_logprobs: int = 20,
        timeout: float = 60.0,
        retries: int = 4,
        max_concurrency: int = 8,
        api_key: str | None = None,
    ) -> None:
        import requests

        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.yes_keys = (labels[0], " " + labels[0])
        self.no_keys = (labels[1], " " + labels[1])
        self.top_logprobs = int(top_logprobs)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.max_concurrency = max(1, int(max_concurrency))
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._session = requests.Session()
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"
        self.fingerprint = f"openai|{base_url.rstrip('/')}|{model}|yes={list(self.yes_keys)};no={list(self.no_keys)}|top={self.top_logprobs}"
        self._counters = {"llm_calls": 0, "prompts": 0, "retries": 0}
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _request(self, text: str) -> tuple[float, float]:
        import requests

        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": self.top_logprobs}
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                response = self._session.post(self.url, json=body, timeout=self.timeout)
            except requests.RequestException as err:
                last_error = f"{type(err).__name__}: {err}"
                continue
            self._count("llm_calls")
            if response.status_code in RETRY_STATUS:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise CoralError(f"{self.url}: HTTP {response.status_code}: {response.text[:200]!r}")
            try:
                top = response.json()["choices"][0]["logprobs"]["top_logprobs"][0]
            except (ValueError, KeyError, IndexError, TypeError):
                raise CoralError(f"{self.url}: the response has no next-token top_logprobs (does the server support logprobs?)") from None
            return readout_from_top_logprobs(top, self.yes_keys, self.no_keys)
        raise CoralError(f"{self.url}: no answer after {self.retries + 1} attempts ({last_error})")

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        texts = [p.text for p in prompts]
        if not texts:
            return ScoreResult(np.zeros(0), np.zeros(0))
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(texts))) as pool:
            results = list(pool.map(self._request, texts))
        self._counters["prompts"] += len(texts)
        return ScoreResult(np.array([r[0] for r in results]), np.array([r[1] for r in results]))

    def stats(self) -> dict[str, float]:
        return dict(self._counters)
