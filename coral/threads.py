"""The thread settings coral runs under; they must be in the environment before torch is imported
(the OpenMP runtime reads them once, when it starts).

Measured on the 2-core machines this project targets (``experiments/notes/speed.md``):

- threads are **not** pinned to cores. GNU OpenMP, loaded with ``OMP_PROC_BIND`` set, binds the
  loading thread to the first place at once, and scikit-learn ships a libgomp of its own: imported
  before torch (as ``coral run`` imports them), it pinned the main thread to core 0, and torch's
  runtime, building its places from that mask, then put every one of its threads on core 0. The
  default run's alignment and LLM stages ran on one core (trunk CPU-seconds equal to its wall
  seconds; unpinned, the same trunk 2x faster). Pinning had helped only two jobs sharing the cores.
- the wait policy is left to the runtime (GNU OpenMP: an idle thread spins a while, then
  sleeps): for a lone job every LLM stage ran fastest that way, ``OMP_WAIT_POLICY=active`` at
  x0.71-0.94 and ``passive`` at x0.64-0.78 of its speed (``experiments/bench/wait_policy.py``).
  Passive waits are what lets two jobs share a 2-core machine (``experiments/bench/two_jobs.py``).

A value already in the environment wins, so ``OMP_WAIT_POLICY=passive coral run`` sets it for a run
that shares the machine (and ``OMP_PROC_BIND=true OMP_PLACES=cores`` pins threads where nothing
loads another OpenMP runtime before torch).
"""

from __future__ import annotations

import os

#: Each variable and the value coral gives it unless the environment already has one.
THREAD_DEFAULTS: dict[str, str] = {
    "TOKENIZERS_PARALLELISM": "false",
}


def set_thread_defaults() -> None:
    """Put :data:`THREAD_DEFAULTS` into ``os.environ`` where a variable is not set yet."""
    for name, value in THREAD_DEFAULTS.items():
        os.environ.setdefault(name, value)
