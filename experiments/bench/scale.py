"""Env steps/s for 1, 2 and 4 env workers: one served scorer (``coral serve-scorer``) vs an in-process scorer each.

Usage:
    nice -n 10 python experiments/bench/scale.py --workers 1 2 4 --seconds 60 --threads 1

Each worker is a separate process running CollabRetrieval training episodes with random query
actions (the policy costs nothing next to the LLM). ``in-process``: every worker loads the
embedded LLM itself. ``served``: one ``coral serve-scorer`` process holds it and batches the
workers' requests; workers use the ``openai`` backend (``openai:URL#MODEL``), which takes the
server's tokenizer, so prompts and tokens are those of in-process scoring. The score cache is
off on both sides, so every step costs a forward pass. Workers start stepping together (a
barrier) and run for ``--seconds``. Reported: total env steps/s, and CPU seconds per step
(workers' + server's process CPU / steps), the figure that survives a CPU shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from typing import Any


def _worker(spec: str, dataset: str, seconds: float, seed: int, threads: int, barrier: Any, results: Any) -> None:
    """Run episodes for ``seconds`` after the barrier; put a dict of counts on ``results``."""
    import torch

    torch.set_num_threads(threads)
    from coral.envs import EnvConfig, EnvResources, make_env
    from coral.llm import make_scorer

    config = EnvConfig.from_any(
        dataset=dataset, scorer=spec, precision="float32", warm_start="none", embedding_dim=64, embedding_seed=seed
    )
    # Built before the barrier, without the score cache: every step costs a forward pass.
    scorer = make_scorer(spec, cache=False, precision="float32")
    env = make_env(config, resources=EnvResources(scorer=scorer))
    env.action_space.seed(seed)
    env.reset(seed=seed)
    barrier.wait()
    start, cpu_start = time.perf_counter(), time.process_time()
    steps = episodes = 0
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            episodes += 1
            env.reset()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    results.put(
        {
            "cpu_seconds": cpu, "steps": steps, "episodes": episodes, "seconds": elapsed, "prompts": env.prompts_scored,
            "stats": {k: float(v) for k, v in scorer.stats().items()},
        }
    )


def run(spec: str, workers: int, seconds: float, dataset: str, threads: int, server: Any = None) -> dict[str, Any]:
    """Total env steps/s of ``workers`` processes scoring through ``spec``, and CPU s per step (workers + server).

    :param spec: "hf" (in-process) or the served scorer's ``openai:URL#MODEL``.
    :param workers: worker processes.
    :param seconds: the measured window.
    :param dataset: the dataset name.
    :param threads: torch threads per in-process worker.
    :param server: the :class:`~coral.serve.client.ServedScorer` (its CPU is counted), or None.
    """
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(spec, dataset, seconds, 1000 + w, threads, barrier, results))
        for w in range(workers)
    ]
    before = server.metrics() if server else {}
    for p in procs:
        p.start()
    rows = [results.get(timeout=seconds + 900) for _ in procs]
    for p in procs:
        p.join()
    after = server.metrics() if server else {}
    server_cpu = after.get("cpu_seconds", 0.0) - before.get("cpu_seconds", 0.0)
    steps = sum(r["steps"] for r in rows)
    prompts = sum(r["prompts"] for r in rows)
    if server:  # token counters live on the server
        computed = after["scorer_tokens_computed"] - before["scorer_tokens_computed"]
        reused = after["scorer_tokens_reused"] - before["scorer_tokens_reused"]
        served_prompts = after["prompts"] - before["prompts"]
        batches = after["batches"] - before["batches"]
    else:
        computed = sum(r["stats"].get("tokens_computed", 0.0) for r in rows)
        reused = sum(r["stats"].get("tokens_reused", 0.0) for r in rows)
        served_prompts, batches = prompts, sum(r["stats"].get("llm_calls", 0.0) for r in rows)
    return {
        "mode": "served" if server else "in-process", "workers": workers, "steps": steps,
        "steps_per_s": sum(r["steps"] / r["seconds"] for r in rows),
        "cpu_s_per_step": (sum(r["cpu_seconds"] for r in rows) + server_cpu) / steps if steps else None,
        "server_cpu_s": server_cpu, "prompts_per_step": prompts / steps if steps else None,
        "tokens_computed_per_prompt": computed / served_prompts if served_prompts else None,
        "tokens_reused_per_prompt": reused / served_prompts if served_prompts else None,
        "prompts_per_batch": served_prompts / batches if batches else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="env worker counts to measure")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per row")
    parser.add_argument("--dataset", default="gift_cards")
    parser.add_argument("--modes", nargs="+", default=["in-process", "served"], choices=["in-process", "served"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per in-process worker and of the server (1: pinned threads collapse on a shared, "
             "oversubscribed CPU)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's batching window")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = []
    if "in-process" in args.modes:
        for n in args.workers:
            rows.append(run("hf", n, args.seconds, args.dataset, args.threads))
            print(json.dumps(rows[-1]), flush=True)
    if "served" in args.modes:
        from coral.serve.client import start_server

        server = start_server(
            [
                "--scorer", "hf", "--precision", "float32", "--threads", str(args.threads), "--max-wait-ms",
                str(args.max_wait_ms),
            ]
        )
        print(json.dumps({"server_startup_s": round(server.startup_seconds, 1)}), flush=True)
        try:
            for n in args.workers:
                rows.append(run(server.spec, n, args.seconds, args.dataset, 1, server))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    by = {(r["mode"], r["workers"]): r for r in rows}
    print(
        "\n| env workers | in-process steps/s | served steps/s | in-process CPU s/step | served CPU s/step | served "
        "prompts/batch |"
    )
    print("|---|---|---|---|---|---|")
    for n in args.workers:
        cells = []
        for key, fmt in (("steps_per_s", "{:.3f}"), ("cpu_s_per_step", "{:.2f}")):
            cells += [
                fmt.format(by[(m, n)][key]) if (m, n) in by and by[(m, n)][key] is not None else "-"
                for m in ("in-process", "served")
            ]
        batch = by.get(("served", n), {}).get("prompts_per_batch")
        print(f"| {n} | {' | '.join(cells)} | {batch:.2f} |" if batch else f"| {n} | {' | '.join(cells)} | - |")
    if args.out:
        from coral.io import atomic_write_json

        atomic_write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
