"""OpenMP's wait policy for a lone job: each LLM stage's work with spinning and with sleeping threads.

``python experiments/bench/wait_policy.py [--repeats 2] [--align-trees 24]`` runs section [7] of
``speed.py`` (each LLM stage's same work on 1 and on 2 torch threads: the alignment's trunk pass
and training steps, the evaluation episodes, PPO's rollouts) in three fresh processes, one after
the other and nothing else running: ``OMP_WAIT_POLICY`` unset (GNU OpenMP's default: an idle
thread spins for a while, then sleeps), ``active`` (idle threads keep spinning) and ``passive``
(idle threads sleep at once). The policy is read once, when the OpenMP runtime starts, so only a
fresh process can change it. It prints the three tables and, per stage, each policy's speed
against the unset one on 2 threads and each policy's 2-thread scaling.

Why it matters on a 2-core machine: a spinning thread keeps its core busy between parallel
regions, which other work then waits for (``two_jobs.py``: two jobs at once x0.70 the throughput
of one after the other with spinning threads, x1.06 with passive waits); a sleeping thread has to
be woken for every parallel region, which costs the stages made of many small ones (incremental
scoring with reused prefixes, PPO's rollouts, the alignment's training steps).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

#: One line of section [7]: the stage, then its seconds on 1 and on 2 threads.
LINE = re.compile(r"^\s+(?P<name>.+?)\s+1 thread\s+(?P<one>[\d.]+) s\s+2 threads\s+(?P<two>[\d.]+) s")


#: The wait policies compared; "unset" leaves the variable out of the environment (the runtime's default).
POLICIES = ("unset", "active", "passive")


def stage_seconds(policy: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Run section [7] under one wait policy; return {stage: (1-thread s, 2-thread s)}."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    command = [
        sys.executable, str(Path(__file__).with_name("speed.py")), "--sections", "7",
        "--repeats", str(args.repeats), "--align-trees", str(args.align_trees), "--env-steps", str(args.env_steps),
    ]
    print(f"\n== OMP_WAIT_POLICY={policy}: {' '.join(command[1:])}", flush=True)
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    print(out.stdout, end="", flush=True)
    if out.returncode:
        sys.exit(f"error: speed.py under OMP_WAIT_POLICY={policy} exited {out.returncode}: {out.stderr.strip()[-500:]}")
    found = {m["name"]: (float(m["one"]), float(m["two"])) for m in map(LINE.match, out.stdout.splitlines()) if m}
    if not found:
        sys.exit(f"error: no stage lines in speed.py's output under OMP_WAIT_POLICY={policy}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting (speed.py prints the minimum)")
    parser.add_argument("--align-trees", type=int, default=24, help="training trees of the alignment's work")
    parser.add_argument("--env-steps", type=int, default=40, help="PPO rollouts: vector steps of 8 environments")
    args = parser.parse_args()
    seconds = {policy: stage_seconds(policy, args) for policy in POLICIES}
    print("\nper stage, wall seconds on 2 threads (x: speed vs unset); 1->2 thread scaling of each policy")
    base = seconds["unset"]
    for name in base:
        cells, scaling = [], []
        for policy in POLICIES:
            one, two = seconds[policy].get(name, (float("nan"), float("nan")))
            cells.append(f"{policy} {two:6.2f} s x{base[name][1] / two:.2f}")
            scaling.append(f"{policy} x{one / two:.2f}")
        print(f"  {name:66s} {'  '.join(cells)}   1->2 threads: {', '.join(scaling)}")


if __name__ == "__main__":
    main()
