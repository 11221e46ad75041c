"""The OpenMP and tokenizer settings coral runs under; they must be in the environment before torch
is imported (the OpenMP runtime reads them once, when it starts).

Measured on the 2-core machines this project targets (``experiments/notes/speed.md``):

- threads pinned to cores (``OMP_PROC_BIND``, ``OMP_PLACES``): unpinned threads on a shared
  machine swung throughput by an order of magnitude between runs;
- the wait policy is left to the runtime (GNU OpenMP: an idle thread spins a while, then
  sleeps): for a lone job every LLM stage ran fastest that way, ``OMP_WAIT_POLICY=active`` at
  x0.71-0.94 and ``passive`` at x0.64-0.78 of its speed (``experiments/bench/wait_policy.py``).
  Passive waits are what lets two jobs share a 2-core machine (``experiments/bench/two_jobs.py``:
  x1.06 the throughput of one after the other, x0.70 without).

A value already in the environment wins, so ``OMP_WAIT_POLICY=passive coral run`` sets it for a run
that shares the machine.
"""

from __future__ import annotations

import os

#: Each variable and the value coral gives it unless the environment already has one.
THREAD_DEFAULTS: dict[str, str] = {
    "OMP_PROC_BIND": "true",
    "OMP_PLACES": "cores",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_thread_defaults() -> None:
    """Put :data:`THREAD_DEFAULTS` into ``os.environ`` where a variable is not set yet."""
    for name, value in THREAD_DEFAULTS.items():
        os.environ.setdefault(name, value)
