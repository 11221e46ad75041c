"""Two LLM jobs at once: what makes them slower than one after the other.

``python experiments/bench/two_jobs.py [--prompts 96]`` starts worker processes that each load
the scorer (the embedded model, this CPU's default layout), wait until every worker of the round
has loaded, then score the same full prompts (the default run's validation pairs with 5 random
pieces, no prefix reuse, 8 per batch) and report their wall seconds. Rounds, side by side in one
run:

- ``alone``: one worker, 2 torch threads, bound (``OMP_PROC_BIND=true``, ``OMP_PLACES=cores``: coral's
  setting until 2026-12-06, see :mod:`coral.threads`; the runtime's wait policy), run twice: the cost of the
  two jobs one after the other;
- ``alone, passive waits``: one worker whose idle OpenMP threads sleep (``OMP_WAIT_POLICY=passive``):
  what that setting costs a job that has the machine to itself;
- two workers at once, 2 threads each, under: bound threads (``bound``); threads free to move
  (``unbound``: ``OMP_PROC_BIND=false``); bound, with idle threads sleeping instead of spinning
  (``passive``); and one thread each, bound (``1 thread``: both bind to the first core) and
  unbound.

For each round it prints the slowest worker's seconds and the throughput of the pair against the
two jobs one after the other (x1.00 = no loss from running them together, > 1 = a gain).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("OMP_PLACES", "cores")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

#: The OpenMP setting of each round of two workers, on top of bound threads (the script's own default).
ROUNDS: dict[str, tuple[dict[str, str], int]] = {
    "bound": ({}, 2),
    "unbound": ({"OMP_PROC_BIND": "false"}, 2),
    "passive": ({"OMP_WAIT_POLICY": "passive"}, 2),
    "1 thread": ({}, 1),
    "1 thread, unbound": ({"OMP_PROC_BIND": "false"}, 1),
}


def worker(prompts: int, threads: int) -> None:
    """Load the scorer, say "ready", wait for a line on stdin, score, print the wall seconds."""
    import torch
    from speed import default_pairs, episodes, load_scorer

    from coral.llm.precision import default_precision
    from coral.llm.prompt import scorer_prompt_builder

    torch.set_num_threads(threads)
    dataset, rows = default_pairs()
    scorer = load_scorer(None, default_precision())
    scorer.kv_reuse, scorer.batch_size = False, 8
    builder = scorer_prompt_builder(dataset, scorer)
    todo = [builder.build(u, i, ev) for u, i, ev in episodes(dataset, rows[:prompts], 5, seed=0)]
    scorer.score(todo[:1])  # warm-up
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for k in range(0, len(todo), 8):
        scorer.score(todo[k : k + 8])
    print(f"{time.perf_counter() - start:.3f}", flush=True)


def run_round(n: int, prompts: int, threads: int, env: dict[str, str]) -> list[float]:
    """``n`` workers loaded, then started together; their wall seconds."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--prompts", str(prompts), "--threads",
               str(threads)]
    procs = [
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, **env},
        )
        for _ in range(n)
    ]
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "ready":
            for q in procs:  # the others would wait for "go" and then score for nothing
                q.kill()
            raise SystemExit(
                f"error: a worker failed to load the scorer (said {line!r}); run it alone to see why: "
                f"{' '.join(command)}"
            )
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    seconds = [float(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=96, help="prompts each worker scores")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.prompts, args.threads)
        return
    print(f"{os.cpu_count()} CPUs; {args.prompts} full prompts per worker; coral's OpenMP setting: "
          f"OMP_PROC_BIND={os.environ['OMP_PROC_BIND']}, OMP_PLACES={os.environ['OMP_PLACES']}")
    alone = [run_round(1, args.prompts, 2, {})[0] for _ in range(2)]
    one_after_other = sum(alone)
    print(f"  alone, 2 threads: {alone[0]:.1f} s and {alone[1]:.1f} s -> {one_after_other:.1f} s one after the other")
    passive = run_round(1, args.prompts, 2, {"OMP_WAIT_POLICY": "passive"})[0]
    print(f"  alone, 2 threads, passive waits: {passive:.1f} s (x{alone[0] / passive:.2f} the first alone run's speed)")
    for name, (env, threads) in ROUNDS.items():
        seconds = run_round(2, args.prompts, threads, env)
        print(
            f"  two at once, {name:8s} ({threads} thread{'s' if threads > 1 else ''} each): workers "
            f"{seconds[0]:.1f} s, {seconds[1]:.1f} s -> x{one_after_other / max(seconds):.2f} the throughput of one "
            "after the other",
            flush=True,
        )


if __name__ == "__main__":
    main()
