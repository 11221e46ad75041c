"""The OpenAI-compatible backend against a local completions server with logprobs."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from llm_fixtures import pseudo_p, text_prompts

from coral.errors import CoralError
from coral.llm import make_scorer
from coral.llm.openai_backend import OpenAIScorer


class _Server:
    """A completions endpoint: P(Yes) = pseudo_p(prompt); the first ``fail_first`` requests get 503."""

    def __init__(self, fail_first: int = 0, with_logprobs: bool = True) -> None:
        self.requests: list[dict] = []
        self.fail_first = fail_first
        self.in_flight = 0
        self.max_in_flight = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.requests.append(body)
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    threading.Event().wait(0.02)
                    if self.path != "/v1/completions":
                        return self._send(404, {"error": "not found"})
                    if n <= server.fail_first:
                        return self._send(503, {"error": "busy"})
                    p = pseudo_p(body["prompt"])
                    top = {"Yes": math.log(0.8 * p), "No": math.log(0.8 * (1 - p)), "The": math.log(0.1)}
                    logprobs = (
                        {"tokens": ["Yes"], "token_logprobs": [top["Yes"]], "top_logprobs": [top]}
                        if with_logprobs
                        else None
                    )
                    self._send(
                        200,
                        {
                            "object": "text_completion",
                            "model": body["model"],
                            "choices": [{"index": 0, "text": "Yes", "logprobs": logprobs, "finish_reason": "length"}],
                        },
                    )
                finally:
                    with lock:
                        server.in_flight -= 1

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_scores_from_logprobs_with_a_concurrency_limit():
    prompts = text_prompts(12)
    with _Server() as server:
        scorer = OpenAIScorer(server.url, "tiny-model", max_concurrency=3)
        result = scorer.score_details(prompts)
    np.testing.assert_allclose(result.p_yes, [pseudo_p(p.text) for p in prompts], atol=1e-9)
    np.testing.assert_allclose(result.yes_no_mass, 0.8, atol=1e-9)
    assert 1 < server.max_in_flight <= 3
    body = server.requests[0]
    assert (
        body["model"] == "tiny-model" and body["max_tokens"] == 1 and body["logprobs"] >= 2 and body["temperature"] == 0
    )
    assert scorer.stats()["prompts"] == 12


def test_retries_transient_errors():
    with _Server(fail_first=2) as server:
        scorer = OpenAIScorer(server.url, "m", retries=3, max_concurrency=1)
        p = scorer.score(text_prompts(1))
    assert p[0] == pytest.approx(pseudo_p(text_prompts(1)[0].text))
    assert scorer.stats()["retries"] == 2


def test_clear_errors(tmp_path):
    with _Server(fail_first=100) as server:
        with pytest.raises(CoralError, match="no answer after 2 attempts"):
            OpenAIScorer(server.url, "m", retries=1).score(text_prompts(1))
    with _Server(with_logprobs=False) as server:
        with pytest.raises(CoralError, match="logprobs"):
            OpenAIScorer(server.url, "m").score(text_prompts(1))
    with pytest.raises(CoralError, match="no answer"):  # nothing listens there
        OpenAIScorer("http://127.0.0.1:9/v1", "m", retries=0, timeout=2).score(text_prompts(1))
    with pytest.raises(CoralError, match="openai:URL#MODEL"):
        make_scorer("openai:http://127.0.0.1:9/v1", cache=False)


def test_make_scorer_spec_and_cache(tmp_path):
    with _Server() as server:
        scorer = make_scorer(f"openai:{server.url}#tiny-model", cache=tmp_path / "c.sqlite")
        first = scorer.score(text_prompts(3))
        second = scorer.score(text_prompts(3))
    np.testing.assert_array_equal(first, second)
    assert len(server.requests) == 3 and scorer.stats()["cache_hits"] == 3
    assert scorer.fingerprint.startswith("openai|") and "tiny-model" in scorer.fingerprint
    with pytest.raises(CoralError, match="unknown scorer spec"):
        make_scorer("llama:whatever", cache=False)


def test_vllm_backend_without_vllm_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(CoralError, match="pip install coral-rec\\[vllm\\]"):
        make_scorer("vllm:some/model", cache=False)
    with pytest.raises(CoralError, match="vllm:MODEL"):
        make_scorer("vllm", cache=False)


class _VLLMStub(_Server):
    """A vllm-serve-like endpoint: with ``allowed_token_ids`` it returns the log-probabilities of
    exactly those tokens renormalised (``processed``) or the unrestricted top 2 (``raw``)."""

    def __init__(self, tokenizer, processed: bool) -> None:
        super().__init__()
        self.tokenizer, self.processed = tokenizer, processed
        handler = self.httpd.RequestHandlerClass
        stub = self

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            p = pseudo_p(body["prompt"])
            # The labels far down the distribution: a raw top-2 would not contain them.
            weights = {
                "Yes": 0.01 * p, " Yes": 0.002 * p, "No": 0.01 * (1 - p), " No": 0.002 * (1 - p), "The": 0.5, "A": 0.4,
            }
            if stub.processed:
                allowed = [stub.tokenizer.decode([t]) for t in body["allowed_token_ids"]]
                total = sum(weights[s] for s in allowed)
                top = {s: math.log(weights[s] / total) for s in allowed}
            else:
                top = {s: math.log(weights[s]) for s in ("The", "A")}
            self._send(
                200,
                {
                    "object": "text_completion",
                    "choices": [{"index": 0, "text": "The", "logprobs": {"top_logprobs": [top]}}],
                },
            )

        handler.do_POST = do_POST


@pytest.mark.parametrize("processed", [True, False])
def test_labels_only_restricts_the_next_token_to_the_labels(processed):
    from llm_fixtures import embedded_tokenizer

    from coral.llm.labels import resolve_label_tokens

    tokenizer = embedded_tokenizer()
    labels = resolve_label_tokens(tokenizer)
    prompts = text_prompts(3, "labels-only")
    with _VLLMStub(tokenizer, processed) as server:
        scorer = OpenAIScorer(server.url, "m", tokenizer=tokenizer, labels_only=True)
        assert "allowed=" in scorer.fingerprint
        if not processed:  # raw log-probabilities ignore the restriction: a clear error, not a wrong p
            with pytest.raises(CoralError, match="processed_logprobs"):
                scorer.score(prompts)
            return
        p = scorer.score(prompts)
        body = server.requests[0]
        assert body["allowed_token_ids"] == [*labels.yes_ids, *labels.no_ids] and body["logprobs"] == 4
        assert np.allclose(p, [pseudo_p(q.text) for q in prompts], atol=1e-12)
