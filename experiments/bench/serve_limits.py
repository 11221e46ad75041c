"""``coral serve-scorer`` under bad and heavy input, with the embedded model (issue 25's figures).

Usage:
    flock /work/heavy.lock python experiments/bench/serve_limits.py --threads 2

One server of the embedded SmolLM2-135M-Instruct (``--layout auto``: bfloat16 on a CPU with
AVX512-BF16). Printed, each beside its requirement:

1. the issue's 155 KB prompt (about 55k tokens) and a 4 MB one: status and seconds to the answer,
   the server's resident memory before and after;
2. 64 clients connecting at once, each with a coral prompt (gift_cards, chat template, 0-5
   pieces of evidence): how many were answered, connection errors, seconds;
3. a client that sends 64 prompts of about 1,800 tokens and leaves once scoring has started:
   seconds until the next request is answered, prompts dropped, memory vs the idle level;
4. P(Yes) of the same coral prompts scored one request at a time vs all at once (bf16: a
   prompt's P(Yes) moves with its batch's padding);
5. SIGTERM while 16 clients keep sending: exit status, seconds to exit, what the clients got.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

SENTENCE = "I liked the movie Heat (1995). "


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def coral_prompts(tokenizer: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` prompts as the environment builds them: gift_cards validation pairs with 0-5 random training pieces."""
    import numpy as np

    from coral.data import load_dataset
    from coral.evidence import Evidence
    from coral.llm.prompt import PromptBuilder

    dataset = load_dataset("gift_cards")
    builder = PromptBuilder(dataset, tokenizer=tokenizer)
    rng = np.random.default_rng(seed)
    prompts = []
    for k in range(n):
        u, i = int(dataset.valid.user[k]), int(dataset.valid.item[k])
        rows = rng.choice(len(dataset.train), int(rng.integers(0, 6)), replace=False)
        prompts.append(
            builder.build(
                u,
                i,
                [
                    Evidence(int(dataset.train.user[r]), int(dataset.train.item[r]), int(dataset.train.label[r]))
                    for r in rows
                ],
            )
        )
    return prompts


def post(url: str, payload: dict[str, Any], timeout: float = 600) -> Any:
    import requests

    return requests.post(url + "/completions", json=payload, timeout=timeout)


def long_prompts(served: Any) -> None:
    print("1. prompts over --max-prompt-tokens (2048)")
    for repeats in (5000, 130_000):
        before = rss_mb(served.process.pid)
        start = time.perf_counter()
        response = post(
            served.url, {"model": served.model, "prompt": SENTENCE * repeats, "max_tokens": 1, "logprobs": 1}
        )
        seconds = time.perf_counter() - start
        print(
            f"   {len(SENTENCE) * repeats / 1e3:7.0f} KB: HTTP {response.status_code} in {seconds:.3f} s (required: "
            f"400 within 1 s); RSS {before:.0f} -> {rss_mb(served.process.pid):.0f} MB"
        )


def concurrent_clients(served: Any, prompts: list[Any], n: int = 64) -> None:
    import requests

    barrier, outcomes = threading.Barrier(n), Counter()
    lock = threading.Lock()

    def client(k: int) -> None:
        prompt = prompts[k % len(prompts)]
        barrier.wait()
        try:
            status: Any = post(
                served.url,
                {
                    "model": served.model, "prompt": prompt.text, "coral_segments": list(prompt.segments),
                    "max_tokens": 1, "logprobs": 1,
                },
            ).status_code
        except requests.RequestException as err:
            status = type(err).__name__
        with lock:
            outcomes[status] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        f"2. {n} clients at once: {dict(outcomes)} in {time.perf_counter() - start:.1f} s (required: all 200, no "
        f"resets); largest batch {served.metrics()['largest_batch']}"
    )


def client_leaves(served: Any) -> None:
    prompts = [SENTENCE * 165 + str(k) for k in range(4)]
    post(
        served.url, {"model": served.model, "prompt": prompts, "max_tokens": 1, "logprobs": 1}
    )  # the allocator's working set at this length
    time.sleep(1.0)
    idle, before = rss_mb(served.process.pid), served.metrics()
    body = json.dumps(
        {"model": served.model, "prompt": [SENTENCE * 165 + str(k) for k in range(64)], "max_tokens": 1, "logprobs": 1}
    ).encode()
    host, port = served.url.split("//")[1].split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        while served.metrics()["chunks"] <= before["chunks"]:
            time.sleep(0.05)
    left = time.perf_counter()
    status = post(
        served.url, {"model": served.model, "prompt": "Hello\nWorld", "max_tokens": 1, "logprobs": 1}
    ).status_code
    waited = time.perf_counter() - left
    time.sleep(1.0)
    after = served.metrics()
    print(
        f"3. a client left 64 prompts of ~1,800 tokens: next request HTTP {status} after {waited:.1f} s (required: "
        "within one forward chunk); "
        f"chunks run {after['chunks'] - before['chunks']}, prompts dropped "
        f"{after['dropped_prompts'] - before['dropped_prompts']}; "
        f"RSS idle {idle:.0f} MB, after {rss_mb(served.process.pid):.0f} MB (required: within 10%)"
    )


def batch_dependence(served: Any, prompts: list[Any]) -> None:
    import numpy as np

    from coral.llm import make_scorer

    client = make_scorer(served.spec, cache=False)
    one_by_one = np.array([client.score([p])[0] for p in prompts])
    together = client.score(prompts)
    diff = np.abs(one_by_one - together)
    print(
        f"4. {len(prompts)} coral prompts one request at a time vs all at once: max |dP(Yes)| {diff.max():.4f}, median "
        f"{np.median(diff):.5f}"
    )


def sigterm_under_load(args: argparse.Namespace) -> None:
    import requests

    from coral.serve.client import start_server, stop_under_load

    served = start_server(["--scorer", "hf", "--threads", str(args.threads)], log=args.log)

    def send(k: int) -> tuple[bool, Any]:
        try:
            status = post(
                served.url,
                {
                    "model": served.model, "prompt": [SENTENCE * 40 + f"{k}-{j}" for j in range(4)], "max_tokens": 1,
                    "logprobs": 1,
                },
                timeout=60,
            ).status_code
        except requests.RequestException as err:
            return False, type(err).__name__
        return status == 200, status

    code, seconds, outcomes = stop_under_load(served, send, load_seconds=5.0)
    print(
        f"5. SIGTERM with 16 clients sending: exit {code} after {seconds:.1f} s (required: 0 within 10 s); client "
        f"outcomes {dict(Counter(outcomes))}"
    )
    print(f"   {Path(args.log).read_text().strip().splitlines()[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--prompts", type=int, default=32, help="coral prompts for 2. and 4.")
    parser.add_argument("--log", default="/tmp/serve_limits.log", help="the servers' output")
    args = parser.parse_args()

    from coral.llm.precision import resolve_precision
    from coral.serve.client import start_server

    served = start_server(["--scorer", "hf", "--threads", str(args.threads)], log=args.log)
    try:
        print(
            f"embedded model, layout {resolve_precision(None)}, {args.threads} torch threads; server up in "
            f"{served.startup_seconds:.1f} s"
        )
        from coral.llm import make_scorer

        tokenizer = make_scorer(served.spec, cache=False).tokenizer
        prompts = coral_prompts(tokenizer, args.prompts)
        lengths = sorted(len(tokenizer(p.text, add_special_tokens=False).input_ids) for p in prompts)
        print(
            f"coral prompts: {lengths[0]}-{lengths[-1]} tokens (median {lengths[len(lengths) // 2]}); a forward chunk "
            "holds at most 8 prompts and 4,096 padded tokens"
        )
        long_prompts(served)
        concurrent_clients(served, prompts)
        client_leaves(served)
        batch_dependence(served, prompts)
    finally:
        served.stop()
    sigterm_under_load(args)


if __name__ == "__main__":
    main()
