"""Atomic writes and the user cache directory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The coral cache's root: ``$CORAL_CACHE_DIR``, or ``~/.cache/coral``."""
    return Path(os.environ.get("CORAL_CACHE_DIR") or Path.home() / ".cache" / "coral")


def cache_dir(*parts: str) -> Path:
    """The coral cache directory (``$CORAL_CACHE_DIR`` or ``~/.cache/coral``), created on demand.

    :param parts: sub-directories below the cache root.
    :raises CoralError: when it cannot be created (a read-only file system, no permission, a file in the way).
    """
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from coral.errors import CoralError

        raise CoralError(
            f"cannot create the coral cache directory {path}: {err.strerror or err}; set CORAL_CACHE_DIR to a writable "
            "directory"
        ) from None
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    :param path: destination file; its directory is created if missing.
    :param data: the bytes to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON to ``path``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write numpy arrays as a compressed .npz file, atomically."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
