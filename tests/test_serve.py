"""``coral serve-scorer``: one scorer process shared by env workers in other processes.

Started and stopped on loopback as a real subprocess. With a tiny random llama (fast): two env
worker processes get the in-process P(Yes), bad requests get OpenAI-style errors, a client
killed mid-request leaves the server working, the SQLite cache is shared by clients (its
namespace is the in-process scorer's fingerprint, not the URL), SIGTERM stops it with exit 0. With the embedded model
(slow): the two-worker equality for real.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from coral.cli import main
from coral.serve.client import ServedScorer, start_server

#: fp32 on both sides; the rest is batching and padding (measured about 5e-6 with the embedded model).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir, tmp_path_factory):
    """A server of the tiny llama (float32, 1 thread), shared by the module's tests."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    served = start_server(
        ["--scorer", f"hf:{tiny_model_dir}", "--precision", "float32", "--threads", "1", "--max-wait-ms", "20"], log=log
    )
    served.log = log  # type: ignore[attr-defined]
    yield served
    served.stop(timeout=10)


def env_worker(spec: str, seed: int, episodes: int = 2, rounds: int = 3) -> dict:
    """One env worker (run in its own process): retrieval episodes scored through ``spec``.

    Returns the prompts it scored (segments), the P(Yes) it got, and its scorer's fingerprint.
    """
    from llm_fixtures import small_dataset

    from coral.envs import EnvConfig, EnvResources, make_env
    from coral.llm import make_scorer
    from coral.llm.base import Scorer, ScoreResult

    class Recording(Scorer):
        def __init__(self, inner: Scorer) -> None:
            self.inner, self.fingerprint, self.tokenizer = inner, inner.fingerprint, inner.tokenizer
            self.segments: list[list[str]] = []
            self.p: list[float] = []

        def score_details(self, prompts) -> ScoreResult:
            result = self.inner.score_details(prompts)
            self.segments += [list(p.segments) for p in prompts]
            self.p += [float(x) for x in result.p_yes]
            return result

    scorer = Recording(make_scorer(spec, cache=False))
    config = EnvConfig.from_any(scorer=spec, warm_start="none", embedding_dim=8, split="valid", rounds=rounds)
    env = make_env(config, resources=EnvResources(dataset=small_dataset(), scorer=scorer))
    env.action_space.seed(seed)
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    return {"segments": scorer.segments, "p": scorer.p, "fingerprint": scorer.fingerprint}


def two_workers_against_in_process(served: ServedScorer, in_process_spec: str) -> float:
    """Two env worker processes score through ``served``; returns max |p - in-process p| (asserted < TOLERANCE)."""
    from coral.llm import make_scorer
    from coral.llm.base import Prompt

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(env_worker, [served.spec] * 2, [0, 100]))
    segments = [s for r in results for s in r["segments"]]
    served_p = np.array([p for r in results for p in r["p"]])
    local = make_scorer(in_process_spec, precision="float32", cache=False)
    local_p = local.score([Prompt(segments=tuple(s)) for s in segments])
    assert len(segments) >= 8 and all(
        "<|im_start|>assistant" in "".join(s) for s in segments
    )  # the server's chat template
    assert {r["fingerprint"] for r in results} == {local.fingerprint}  # port-free: shared with in-process scoring
    diff = float(np.max(np.abs(served_p - local_p)))
    print(
        f"{len(segments)} prompts from 2 worker processes: max |served - in-process| = {diff:.2e}; server "
        f"{served.metrics()}"
    )
    np.testing.assert_allclose(served_p, local_p, atol=TOLERANCE, rtol=0)
    return diff


def test_two_env_worker_processes_get_in_process_scores(tiny_server, tiny_model_dir) -> None:
    two_workers_against_in_process(tiny_server, f"hf:{tiny_model_dir}")


def _post(served: ServedScorer, body, path: str = "/completions") -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(served.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=120)


def test_requests_and_clear_errors(tiny_server) -> None:
    ok = {"model": tiny_server.model, "prompt": "Hello\nWorld", "max_tokens": 1, "temperature": 0.0, "logprobs": 2}
    body = _post(tiny_server, ok).json()
    choice = body["choices"][0]
    top = choice["logprobs"]["top_logprobs"][0]
    assert {"Yes", "No"} <= set(top) and len(top) >= 3  # the label tokens always come back
    assert 0.0 < choice["coral"]["p_yes"] < 1.0 and body["usage"]["completion_tokens"] == 1
    bad = [
        (b"{not json", 400, "not valid JSON", None), ({**ok, "model": "other"}, 404, "does not exist", "model"),
        ({**ok, "max_tokens": 5}, 400, "max_tokens must be 1", "max_tokens"),
        ({**ok, "logprobs": None}, 400, "logprobs must be an integer", "logprobs"),
        ({**ok, "logprobs": 50}, 400, "logprobs must be an integer in [0, 20]", "logprobs"),
        ({**ok, "prompt": [1, 2, 3]}, 400, "token-id prompts", "prompt"),
        ({**ok, "prompt": ""}, 400, "must not be empty", "prompt"),
        ({**ok, "coral_segments": ["Hello\n", "Earth"]}, 400, "do not add up", "coral_segments"),
        ({**ok, "stream": True}, 400, "stream is not supported", "stream"),
    ]
    for request, status, fragment, param in bad:
        response = _post(tiny_server, request)
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["param"]) == (status, status, param), (
            request,
            response.text,
        )
        assert fragment in error["message"] and error["type"].endswith("_error"), error
    response = requests.get(tiny_server.root + "/v2/nothing", timeout=30)
    assert response.status_code == 404 and "no route GET /v2/nothing" in response.json()["error"]["message"]
    assert _post(tiny_server, ok, path="/chat/completions").status_code == 404
    assert requests.get(tiny_server.root + "/health", timeout=30).status_code == 200


def test_a_client_killed_mid_request_does_not_break_the_server(tiny_server) -> None:
    from coral.llm import make_scorer
    from coral.llm.base import Prompt

    probe = [Prompt(segments=("You judge gift cards.\n", "Does user 3 like the red one? Answer:"))]
    client = make_scorer(tiny_server.spec, cache=False)
    before = client.score(probe)
    # 1. a client that leaves half-way through sending its request
    with socket.create_connection(
        (tiny_server.url.split("//")[1].split(":")[0], int(tiny_server.url.rsplit(":", 1)[1].split("/")[0]))
    ) as sock:
        sock.sendall(b'POST /v1/completions HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{"model":')
    # 2. a client process SIGKILLed while its requests (256 long prompts each) wait or are scored
    code = textwrap.dedent(f"""
        import requests, sys
        prompts = ["word " * 100 + str(k) for k in range(256)]
        body = {{"model": {tiny_server.model!r}, "prompt": prompts, "max_tokens": 1, "logprobs": 20}}
        while True:
            print("sending", flush=True)
            requests.post({tiny_server.url + '/completions'!r}, json=body, timeout=600)
    """)
    killed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "sending"
    time.sleep(1.0)
    killed.kill()
    killed.wait()
    assert requests.get(tiny_server.root + "/health", timeout=30).status_code == 200
    np.testing.assert_allclose(client.score(probe), before, atol=TOLERANCE, rtol=0)
    metrics = tiny_server.metrics()
    print(f"after the killed clients: {metrics}")
    assert metrics["client_gone"] + metrics["cancelled"] >= 1 and metrics["errors"] == 0
    assert tiny_server.process.poll() is None


def cache_worker(spec: str, cache: str, start: int, stop: int) -> list[float]:
    """Score prompts ``start..stop`` through ``spec`` with the SQLite cache at ``cache`` (own process)."""
    from llm_fixtures import text_prompts

    from coral.llm import make_scorer

    return [float(p) for p in make_scorer(spec, cache=cache).score(text_prompts(12)[start:stop])]


def test_the_score_cache_is_shared_by_clients_and_with_in_process_scoring(
    tiny_server, tiny_model_dir, tmp_path
) -> None:
    from llm_fixtures import text_prompts

    from coral.llm import make_scorer

    cache = str(tmp_path / "scores.sqlite")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        first, second = pool.map(cache_worker, [tiny_server.spec] * 2, [cache] * 2, [0, 4], [8, 12])
    # The overlap may be computed by both (each missed the cache): the first write stays, and
    # the values agree to batching noise.
    np.testing.assert_allclose(first[4:], second[:4], atol=TOLERANCE, rtol=0)
    # A third client finds every prompt in the cache: the server is not asked again.
    scorer = make_scorer(tiny_server.spec, cache=cache)
    served_before = tiny_server.metrics()["prompts"]
    again = scorer.score(text_prompts(12))
    assert len(scorer) == 12 and scorer.stats()["cache_misses"] == 0 and scorer.stats()["llm_calls"] == 0
    assert tiny_server.metrics()["prompts"] == served_before
    np.testing.assert_allclose(again, first + second[4:], atol=TOLERANCE, rtol=0)
    # The cache namespace is the in-process scorer's, not the URL's: a server on another port
    # (or in-process scoring of the same model and layout) shares these entries.
    assert scorer.fingerprint == make_scorer(f"hf:{tiny_model_dir}", precision="float32", cache=False).fingerprint
    assert tiny_server.url.rsplit(":", 1)[1].split("/")[0] not in scorer.fingerprint


def test_openai_spec_takes_a_tokenizer(tiny_model_dir) -> None:
    from coral.errors import CoralError
    from coral.llm.openai_backend import parse_openai_spec

    assert parse_openai_spec("http://h:1/v1#org/model;tokenizer=embedded") == (
        "http://h:1/v1", "org/model", "embedded", False,
    )
    assert parse_openai_spec("http://h:1/v1#m") == ("http://h:1/v1", "m", None, False)
    assert parse_openai_spec("http://h:1/v1#m;tokenizer=embedded;labels_only") == (
        "http://h:1/v1", "m", "embedded", True,
    )
    with pytest.raises(CoralError, match="unknown option 'tok=x'"):
        parse_openai_spec("http://h:1/v1#m;tok=x")


def _fails(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_cli_errors_are_one_line(capsys) -> None:
    assert (
        _fails(["serve-scorer", "--scorer", "scripted"], capsys)
        == "error: --scorer must be hf, hf:PATH or aligned:DIR to be served, got 'scripted'"
    )
    assert _fails(["serve-scorer", "--port", "70000"], capsys) == "error: --port must be in 0..65535, got 70000"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _fails(["serve-scorer", "--port", str(port)], capsys)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "in use" in line


def test_sigterm_stops_the_server_cleanly(tiny_server) -> None:
    # Last in the module: it stops the shared server.
    start = time.perf_counter()
    assert tiny_server.stop(timeout=60) == 0
    output = Path(tiny_server.log).read_text()
    print(f"stopped in {time.perf_counter() - start:.1f}s: {output.strip().splitlines()[-1]}")
    assert "coral serve-scorer: stopped" in output and "Traceback" not in output, output


@pytest.mark.slow
def test_embedded_model_two_env_workers_match_in_process(tmp_path) -> None:
    served = start_server(
        ["--scorer", "hf", "--precision", "float32", "--threads", "1", "--max-wait-ms", "20"],
        log=tmp_path / "server.log",
    )
    try:
        print(f"embedded server up in {served.startup_seconds:.1f}s")
        two_workers_against_in_process(served, "hf")
    finally:
        assert served.stop() == 0
