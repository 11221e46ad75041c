"""Start and stop ``coral serve-scorer`` as a subprocess (tests, benchmarks, scripts that own their server).

Workers need nothing from here: they use the scorer spec ``openai:URL#MODEL``
(:attr:`ServedScorer.spec`) like any other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Sequence


@dataclass
class ServedScorer:
    """A running ``coral serve-scorer`` subprocess."""

    process: subprocess.Popen
    """The server process."""
    url: str
    """Its API root, e.g. ``http://127.0.0.1:PORT/v1``."""
    model: str
    """The served model name."""
    startup_seconds: float
    """From spawning the process to accepting requests (model loaded)."""

    @property
    def spec(self) -> str:
        """The scorer spec of a client: ``openai:URL#MODEL``."""
        return f"openai:{self.url}#{self.model}"

    @property
    def root(self) -> str:
        """The server's root URL (``/health``, ``/metrics.json``)."""
        return self.url.removesuffix("/v1")

    def metrics(self) -> dict[str, Any]:
        """The server's counters (``GET /metrics.json``)."""
        import requests

        return requests.get(self.root + "/metrics.json", timeout=30).json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig``, wait, and return the exit code (SIGKILL after ``timeout`` seconds).

        :param sig: SIGTERM or SIGINT: both stop the server cleanly.
        :param timeout: seconds to wait before killing it.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_server(
    args: Sequence[str] = (), *, timeout: float = 300.0, log: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> ServedScorer:
    """Start ``coral serve-scorer --port 0 ARGS`` and wait until it accepts requests.

    :param args: further command-line options (``--scorer``, ``--threads``, ...).
    :param timeout: seconds to wait for it (it loads the model first).
    :param log: file receiving the server's output (default: inherited).
    :param env: environment of the server (default: this process's).
    :raises RuntimeError: when the server exits or does not come up in time.
    """
    ready = Path(tempfile.mkdtemp(prefix="serve-scorer-")) / "ready.json"
    out: IO[Any] | None = open(log, "w") if log else None
    command = [sys.executable, "-m", "coral.cli", "serve-scorer", "--port", "0", "--ready-file", str(ready), *args]
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT if out else None,
            env=env if env is not None else dict(os.environ),
        )
    finally:
        if out:
            out.close()  # the child holds its own descriptor
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(
                f"coral serve-scorer exited with {process.returncode} before accepting requests"
                + (f" (see {log})" if log else "")
            )
        if time.perf_counter() - start > timeout:
            process.kill()
            process.wait()
            raise RuntimeError(f"coral serve-scorer did not come up within {timeout:.0f} s")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return ServedScorer(process, info["url"], info["model"], time.perf_counter() - start)


def stop_under_load(
    served: ServedScorer, send: Callable[[int], tuple[bool, Any]], clients: int = 16, load_seconds: float = 2.0,
    timeout: float = 60.0,
) -> tuple[int, float, list[Any]]:
    """SIGTERM ``served`` while ``clients`` threads keep sending requests (tests, benchmarks).

    :param served: the server.
    :param send: ``send(k)`` sends client ``k``'s next request and returns (answered normally, what it
        got); a client stops at its first abnormal answer (the server stopping or gone).
    :param clients: client threads.
    :param load_seconds: how long the clients send before the signal.
    :param timeout: seconds to wait for the server's exit.
    :returns: the server's exit code, seconds from the signal to its exit, and every client's outcomes.
    """
    outcomes: list[Any] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        while True:
            normal, outcome = send(k)
            with lock:
                outcomes.append(outcome)
            if not normal:
                return

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(load_seconds)
    start = time.perf_counter()
    code = served.stop(signal.SIGTERM, timeout=timeout)
    seconds = time.perf_counter() - start
    for t in threads:
        t.join(timeout)
    return code, seconds, outcomes
