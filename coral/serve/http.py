"""The HTTP side of ``coral serve-scorer``: the standard library's threading server, one thread per
connection (HTTP/1.1 keep-alive), handing validated requests to the batching engine.

Routes: ``POST /v1/completions`` (:mod:`coral.serve.protocol`), ``GET /v1/models`` (with coral's
metadata), ``GET /coral/tokenizer`` (the model's tokenizer files, so clients build prompts with
the same chat template), ``GET /health`` and ``GET /metrics.json`` (engine counters, CPU seconds).

What a request can cost is bounded before the engine sees it: the body's size, its JSON, and each
prompt's length in tokens (:mod:`coral.serve.limits`) are checked in the handler thread, and
anything out of bounds gets a 400 (413 for the body). A handler waiting for its result watches
its connection: when the client has gone, the engine drops the request's prompts not scored yet.
:func:`serve` runs until SIGTERM or SIGINT, then stops the engine after the forward chunk in
progress, answers every request still in flight with 503 and returns.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from coral.llm.openai_backend import TOKENIZER_PATH
from coral.serve.limits import release_memory
from coral.serve.protocol import (
    MAX_BODY_BYTES,
    ClientGone,
    RequestError,
    ServerStopping,
    completion_response,
    error_body,
    models_response,
    parse_completion_request,
)

#: How often a waiting handler checks whether its client is still there.
CLIENT_CHECK_S = 0.25
#: Connections the kernel queues before the server accepts them (ThreadingHTTPServer's default is 5:
#: 50 clients connecting at once saw resets). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
#: After a stop, how long in-flight handlers get to write their 503s.
DRAIN_S = 2.0


class ScorerHTTPServer(ThreadingHTTPServer):
    """The HTTP server: holds the engine, the served model's name and metadata, the request timeout.

    The socket is bound on construction (a port in use fails before the model loads); the
    engine and the metadata are attached once the model is loaded (:meth:`attach`).

    :param address: (host, port); port 0 = any free port.
    :param model_name: the name clients put in ``model``.
    :param request_timeout: seconds a request may wait for its result before a 503.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], model_name: str, request_timeout: float = 600.0) -> None:
        super().__init__(address, _Handler)
        self.model_name = model_name
        self.request_timeout = float(request_timeout)
        self.engine: Any = None
        self.limit: Any = None
        self.scorer_info: dict[str, Any] = {}
        self.tokenizer_files: dict[str, Any] = {}
        self.scorer_stats: Any = dict
        self.created = int(time.time())
        self.stopping = threading.Event()
        self.counters = {
            "bad_requests": 0, "too_long": 0, "client_gone": 0, "cancelled": 0, "timed_out": 0, "stopped": 0,
            "handler_errors": 0,
        }
        self._in_flight = 0
        self._in_flight_lock = threading.Condition()

    def attach(
        self, engine: Any, limit: Any, scorer_info: dict[str, Any], tokenizer_files: dict[str, Any],
        scorer_stats: Any = dict,
    ) -> None:
        """Plug in the started engine and what ``/v1/models`` and the tokenizer route report.

        :param engine: a started :class:`~coral.serve.engine.BatchingEngine`.
        :param limit: the prompt length check (:class:`~coral.serve.limits.PromptTokenLimit`).
        :param scorer_info: coral metadata of the scorer (fingerprint, labels, tokenizer digest, ...).
        :param tokenizer_files: the body of the tokenizer route (``{"sha256", "files"}``).
        :param scorer_stats: a function returning the scorer's counters (for ``/metrics.json``).
        """
        self.engine, self.limit, self.scorer_info, self.tokenizer_files, self.scorer_stats = (
            engine, limit, scorer_info, tokenizer_files, scorer_stats,
        )

    @property
    def url(self) -> str:
        """The API root clients use: ``http://HOST:PORT/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def count(self, name: str) -> None:
        """Add one to the counter ``name`` (handler threads share the counters)."""
        with self._in_flight_lock:
            self.counters[name] += 1

    def enter(self) -> None:
        """A completion request starts (counted for :meth:`drain`)."""
        with self._in_flight_lock:
            self._in_flight += 1

    def leave(self) -> None:
        """A completion request has been answered (or its client has gone)."""
        with self._in_flight_lock:
            self._in_flight -= 1
            self._in_flight_lock.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait until no completion request is in flight; returns how many still are after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._in_flight_lock:
            while self._in_flight and time.monotonic() < deadline:
                self._in_flight_lock.wait(max(0.0, deadline - time.monotonic()))
            return self._in_flight

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of the standard library's traceback: an unexpected error in a handler ends
        that connection, never the server."""
        self.count("handler_errors")
        err = sys.exc_info()[1]
        print(
            f"coral serve-scorer: connection from {client_address[0]} closed after an error: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}",
            file=sys.stderr,
            flush=True,
        )


class _Handler(BaseHTTPRequestHandler):
    server: ScorerHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: the openai backend reuses its connections
    timeout = 60  # a client that stops sending mid-request frees its thread after this

    def log_message(self, *args: Any) -> None:  # one line per request would drown the server's log
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(200, {})
        elif path == "/v1/models":
            self._send(200, models_response(self.server.model_name, self.server.created, self.server.scorer_info))
        elif path == "/v1" + TOKENIZER_PATH:
            self._send(200, self.server.tokenizer_files)
        elif path == "/metrics.json":
            scorer = {f"scorer_{k}": v for k, v in self.server.scorer_stats().items()}
            self._send(
                200, {**self.server.engine.stats, **self.server.counters, **scorer, "cpu_seconds": time.process_time()}
            )
        else:
            self._error(RequestError(404, f"no route GET {path}"))

    def do_POST(self) -> None:
        self.server.enter()
        try:
            self._completion()
        finally:
            self.server.leave()

    def _completion(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self.server.count("bad_requests")
            return self._error(
                RequestError(
                    413 if length > 0 else 400,
                    f"request body must have a Content-Length of at most {MAX_BODY_BYTES} bytes",
                )
            )
        body = self.rfile.read(length)
        if len(body) < length:  # the client left half-way through its request
            self.server.count("client_gone")
            self.close_connection = True
            return
        if self.path != "/v1/completions":
            return self._error(RequestError(404, f"no route POST {self.path}; use /v1/completions"))
        if self.server.stopping.is_set():
            return self._error(RequestError(503, "the server is stopping"))
        try:
            request = parse_completion_request(body, self.server.model_name)
        except RequestError as err:
            self.server.count("bad_requests")
            return self._error(err)
        try:
            tokens = self.server.limit.check(request.prompts)
        except RequestError as err:
            self.server.count("too_long")
            del body, request
            release_memory()  # a body of megabytes was parsed and tokenized in this thread's heap: give it back
            return self._error(err)
        work = self.server.engine.submit(request.prompts, tokens)
        deadline = time.monotonic() + self.server.request_timeout
        while True:
            try:
                results = work.future.result(timeout=CLIENT_CHECK_S)
                break
            except FutureTimeout:
                if self._client_gone():  # nobody will read the answer: the engine drops what is not scored yet
                    work.cancel()
                    self.server.count("cancelled")
                    self.close_connection = True
                    return
                if self.server.stopping.is_set() and not self.server.engine.running:  # submitted as the engine stopped
                    return self._error(RequestError(503, "the server is stopping"))
                if time.monotonic() > deadline:
                    work.cancel()
                    self.server.count("timed_out")
                    return self._error(
                        RequestError(
                            503, f"no result within the server's request timeout ({self.server.request_timeout:.0f} s)"
                        )
                    )
            except (ServerStopping, ClientGone) as err:
                self.server.count("stopped")
                self.close_connection = True
                return self._error(RequestError(503, str(err)))
            except Exception as err:  # the chunk holding this request failed
                return self._error(RequestError(500, f"scoring failed: {' '.join(str(err).split())[:300]}"))
        self._send(200, completion_response(request, results, f"cmpl-{uuid.uuid4().hex}", int(time.time())))

    def _client_gone(self) -> bool:
        """Whether the client closed its connection (readable, with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _error(self, err: RequestError) -> None:
        self._send(err.status, error_body(err.status, err.message, err.param))

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection or self.server.stopping.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (broken pipe, reset): nothing to answer
            self.server.count("client_gone")
            self.close_connection = True


def serve(server: ScorerHTTPServer, ready_file: str | None = None) -> dict[str, Any]:
    """Serve until SIGTERM or SIGINT, then stop cleanly; returns the final counters.

    On the signal: no new connection is accepted and new requests get 503; the engine finishes
    the forward chunk it is running and fails every request not answered yet, whose handlers
    answer 503; then the socket is closed. The counters say (``engine_stopped``) whether the
    engine thread ended, so that the caller can leave without waiting for a stuck forward pass.

    :param server: a server with its engine attached.
    :param ready_file: written with ``{"url", "model", "pid"}`` once the server accepts requests.
    """
    from coral.io import atomic_write_json

    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        server.stopping.set()
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        if ready_file:
            atomic_write_json(ready_file, {"url": server.url, "model": server.model_name, "pid": os.getpid()})
        print(
            f"coral serve-scorer: {server.model_name} on {server.url} (stop with Ctrl-C or SIGTERM)",
            file=sys.stderr,
            flush=True,
        )
        while not done.wait(1.0):  # a timed wait: signal handlers run in the main thread between waits
            pass
    finally:
        stop_began = time.monotonic()
        server.stopping.set()
        engine_stopped = server.engine.stop(timeout=5.0)  # after the chunk running: waiting requests fail with 503
        server.shutdown()  # no new connections
        left = server.drain(DRAIN_S)
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = {
        **server.engine.stats, **server.counters, "engine_stopped": engine_stopped, "unanswered_at_exit": left,
        "stop_seconds": round(time.monotonic() - stop_began, 2), "uptime_seconds": round(stop_began - started, 1),
    }
    print(f"coral serve-scorer: stopped ({json.dumps(stats)})", file=sys.stderr, flush=True)
    return stats
