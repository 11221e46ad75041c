"""``coral serve-scorer`` under bad and heavy input, as a real server process (tiny random llama).

What a request may cost is bounded: a prompt over ``--max-prompt-tokens`` gets a 400 in well under
a second with no growth of the server's memory; malformed bodies get a 400 (never a closed
connection or a traceback); 64 clients connecting at once are all answered; a client that leaves
mid-request stops its work within a forward chunk and the server's memory returns to its idle
level; SIGTERM under load answers the requests in flight with 503 and exits 0 within 10 s.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from coral.serve.client import ServedScorer, start_server, stop_under_load

#: 11 tokens of the embedded tokenizer; the issue's report sent 5,000 of them (about 55k tokens).
SENTENCE = "I liked the movie Heat (1995). "
SERVER_ARGS = [
    "--precision", "float32", "--threads", "1", "--max-wait-ms", "20", "--max-prompt-tokens", "2048", "--chunk-tokens",
    "4096",
]


def rss_mb(served: ServedScorer) -> float:
    """The server process's resident memory in MB (Linux /proc)."""
    for line in Path(f"/proc/{served.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def body(served: ServedScorer, prompt) -> dict:
    return {"model": served.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "logprobs": 2}


def post(served: ServedScorer, payload, timeout: float = 120) -> requests.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(
        served.url + "/completions", data=data, headers={"Content-Type": "application/json"}, timeout=timeout
    )


def address(served: ServedScorer) -> tuple[str, int]:
    host, port = served.url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def raw_request(served: ServedScorer, head: bytes, data: bytes = b"") -> bytes:
    """Send bytes on a fresh connection and return everything the server answers before closing."""
    with socket.create_connection(address(served), timeout=30) as sock:
        sock.sendall(head + data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-limits") / "server.log"
    served = start_server(["--scorer", f"hf:{tiny_model_dir}", *SERVER_ARGS], log=log)
    served.log = log  # type: ignore[attr-defined]
    assert post(served, body(served, "Hello\nWorld")).status_code == 200  # warm: the first forward pass allocates
    yield served
    assert served.stop(timeout=20) == 0
    assert "Traceback" not in log.read_text()


def test_a_prompt_over_the_maximum_gets_400_within_a_second_and_no_memory(server) -> None:
    before = rss_mb(server)
    for repeats in (5000, 130_000):  # the 155 KB prompt, and a body near the 4 MB limit
        start = time.perf_counter()
        response = post(server, body(server, SENTENCE * repeats))
        seconds = time.perf_counter() - start
        error = response.json()["error"]
        assert response.status_code == 400 and error["param"] == "prompt", response.text
        assert "too long" in error["message"] and "at most 2048 (--max-prompt-tokens)" in error["message"]
        assert seconds < 1.0, f"{len(SENTENCE) * repeats} characters refused in {seconds:.2f} s"
    after = rss_mb(server)
    print(f"RSS {before:.0f} MB -> {after:.0f} MB")
    assert after < before * 1.05, (before, after)
    # At the limit it is scored: the count is the scorer's own (usage.prompt_tokens).
    ok = post(server, body(server, SENTENCE * 180))
    assert ok.status_code == 200 and 1900 < ok.json()["usage"]["prompt_tokens"] <= 2048
    metrics = server.metrics()
    assert metrics["too_long"] >= 2 and metrics["errors"] == 0


def test_malformed_bodies_get_400(server) -> None:
    cases = [
        (b'{"model": "x", "logprobs": ' + b"9" * 5001 + b"}", "not valid JSON"),  # more digits than int() converts
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"prompt": "\xff\xfe"}', "not valid JSON"),  # not UTF-8
        (json.dumps(body(server, "\ud800 lone surrogate")).encode(), "unpaired surrogate"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "not valid JSON"),
    ]
    for data, fragment in cases:
        response = post(server, data)
        assert response.status_code == 400 and fragment in response.json()["error"]["message"], (
            data[:40],
            response.text,
        )
    for head in (
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ):
        answer = raw_request(server, head)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert post(server, body(server, "Hello\nWorld")).status_code == 200
    assert "Traceback" not in Path(server.log).read_text()


def test_64_concurrent_clients_are_all_answered(server) -> None:
    n = 64
    start_together = threading.Barrier(n)
    outcomes: list[object] = [None] * n

    def client(k: int) -> None:
        start_together.wait()
        try:  # a fresh connection per client: all 64 connect at once
            outcomes[k] = post(
                server, body(server, f"You judge movies.\nDoes user {k} like Heat (1995)? Answer:"), timeout=120
            ).status_code
        except requests.RequestException as err:
            outcomes[k] = repr(err)

    for _ in range(2):
        threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert outcomes == [200] * n, [o for o in outcomes if o != 200][:3]
    print(f"largest batch {server.metrics()['largest_batch']}")


def test_a_client_that_leaves_stops_its_work_and_frees_its_memory(server) -> None:
    # Idle level: after prompts of this length were scored once (the allocator's working set).
    assert post(server, body(server, [SENTENCE * 170 + str(k) for k in range(4)])).status_code == 200
    time.sleep(0.5)
    idle = rss_mb(server)
    before = server.metrics()
    data = json.dumps(body(server, [SENTENCE * 170 + str(k) for k in range(256)])).encode()  # 128 chunks of 2 prompts
    with socket.create_connection(address(server)) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
            + data
        )
        deadline = time.monotonic() + 60
        while server.metrics()["chunks"] < before["chunks"] + 3:  # it is being scored
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
    left = time.perf_counter()
    response = post(server, body(server, "Hello\nWorld"))  # the next request is answered at once
    waited = time.perf_counter() - left
    assert response.status_code == 200
    time.sleep(0.5)
    after = server.metrics()
    memory = rss_mb(server)
    print(
        f"next request answered {waited:.2f} s after the client left; chunks run {after['chunks'] - before['chunks']}, "
        f"prompts dropped {after['dropped_prompts'] - before['dropped_prompts']}; RSS idle {idle:.0f} MB, after "
        f"{memory:.0f} MB"
    )
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["dropped_prompts"] - before["dropped_prompts"] >= 200  # at most a few of the 128 chunks ran
    assert waited < 3.0
    assert memory <= idle * 1.10, (idle, memory)
    assert server.process.poll() is None


def test_sigterm_under_load_answers_in_flight_requests_and_exits_0(tiny_model_dir, tmp_path) -> None:
    log = tmp_path / "server.log"
    served = start_server(["--scorer", f"hf:{tiny_model_dir}", *SERVER_ARGS], log=log)

    def send(k: int) -> tuple[bool, object]:
        try:
            response = post(served, body(served, [SENTENCE * 170 + f"{k}-{j}" for j in range(4)]), timeout=60)
        except requests.RequestException as err:  # refused: the server is gone
            return False, type(err).__name__
        return response.status_code == 200, (response.status_code, response.json().get("error", {}).get("message", ""))

    code, seconds, outcomes = stop_under_load(served, send)
    output = log.read_text()
    print(
        f"exit {code} {seconds:.1f} s after SIGTERM; outcomes {sorted({str(s) for s in outcomes})}; "
        f"{output.strip().splitlines()[-1]}"
    )
    assert code == 0 and seconds < 10
    assert (503, "the server is stopping") in outcomes  # in-flight requests got an answer, not a dropped connection
    assert "Traceback" not in output and "terminate called" not in output


def test_limit_settings_are_checked(tiny_model_dir, capsys) -> None:
    from coral.cli import main

    assert main(["serve-scorer", "--chunk-tokens", "100"]) == 2
    assert capsys.readouterr().err == "error: --chunk-tokens must be >= --max-prompt-tokens (2048), got 100\n"
    assert (
        main(
            [
                "serve-scorer", "--scorer", f"hf:{tiny_model_dir}",
                "--port", "0", "--max-prompt-tokens", "5000", "--chunk-tokens", "8192",
            ]
        )
        == 2
    )
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "error: --max-prompt-tokens 5000 exceeds the model's context of 4096 tokens"
    )
