"""The one exception type that the CLI turns into a one-line message and exit status 2."""

from __future__ import annotations


class CoralError(Exception):
    """A user-facing error: bad input, an unknown name, an empty split.

    The message must be a single line that names what went wrong and where
    (file, and line where it applies). The CLI prints ``error: <message>`` and
    exits with status 2, without a traceback.
    """


class DataError(CoralError):
    """A dataset file or directory that cannot be read or yields no usable data."""
