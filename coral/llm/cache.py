"""A persistent score cache: a :class:`Scorer` wrapper backed by SQLite in WAL mode.

The key of a prompt is a hash of the inner scorer's fingerprint (backend, model, dtype, label
tokens, adapter), the prompt's template version and its full text. Several processes may read
and write the same file at once: SQLite serialises the writers (WAL mode lets readers proceed),
rows are only ever inserted (``INSERT OR IGNORE``: two processes that score the same prompt
write the same value), and every process opens its own connection.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from coral.errors import CoralError
from coral.llm.base import Prompt, Scorer, ScoreResult

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scores "
    "(key TEXT PRIMARY KEY, p_yes REAL NOT NULL, mass REAL NOT NULL, created REAL NOT NULL)"
)
#: SQLite caps the number of bound parameters per statement.
_LOOKUP_CHUNK = 500


def prompt_key(fingerprint: str, prompt: Prompt) -> str:
    """The cache key of ``prompt`` scored by a scorer with ``fingerprint``."""
    h = hashlib.sha256()
    for part in (fingerprint, prompt.version, prompt.text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class CachedScorer(Scorer):
    """Scores from ``path`` when present; otherwise from ``inner``, then stored.

    :param inner: the scorer that computes misses.
    :param path: the SQLite file (created with its directory).
    :param timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, inner: Scorer, path: str | os.PathLike, timeout: float = 60.0) -> None:
        self.inner = inner
        self.path = Path(path)
        self.timeout = timeout
        self.fingerprint = inner.fingerprint
        self.tokenizer = inner.tokenizer
        self.prompt_config = inner.prompt_config
        self.prompt_version = inner.prompt_version
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute("PRAGMA synchronous=NORMAL")
                self._retry(lambda: conn.execute(_SCHEMA))
            except sqlite3.DatabaseError as err:
                raise CoralError(f"score cache {self.path}: {err}") from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _retry(self, action, attempts: int = 20):
        # The busy timeout covers most contention; switching to WAL can still report "locked".
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def lookup(self, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
        """Stored (p_yes, mass) for those of ``keys`` that are cached."""
        conn = self._connect()
        found: dict[str, tuple[float, float]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, p_yes, mass FROM scores WHERE key IN ({marks})"
            rows = self._retry(lambda query=query, chunk=chunk: conn.execute(query, chunk).fetchall())
            found.update({k: (p, m) for k, p, m in rows})
        return found

    def _insert(self, rows: list[tuple[str, float, float]]) -> None:
        conn = self._connect()
        now = time.time()

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?)", [(k, p, m, now) for k, p, m in rows]
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._retry(write)

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        keys = [prompt_key(self.fingerprint, p) for p in prompts]
        found = self.lookup(keys)
        missing: dict[str, Prompt] = {}
        for key, prompt in zip(keys, prompts, strict=False):
            if key not in found and key not in missing:
                missing[key] = prompt
        # A miss is a prompt the inner scorer computes; repeats within the call count as hits.
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        if missing:
            result = self.inner.score_details(list(missing.values()))
            new = [(k, float(p), float(m)) for k, p, m in zip(missing, result.p_yes, result.yes_no_mass, strict=False)]
            self._insert(new)
            found.update({k: (p, m) for k, p, m in new})
        p_yes = np.array([found[k][0] for k in keys], dtype=np.float64)
        mass = np.array([found[k][1] for k in keys], dtype=np.float64)
        return ScoreResult(p_yes, mass)

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def stats(self) -> dict[str, float]:
        return {**self.inner.stats(), "cache_hits": self.hits, "cache_misses": self.misses}

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
