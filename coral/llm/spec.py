"""Scorer spec strings (``hf``, ``hf:PATH``, ``aligned:DIR``, ``vllm:MODEL``, ``openai:URL#MODEL``,
``scripted[:k=v,...]``): parsed and checked in one place, before anything is loaded or written.

Every command that takes ``--scorer`` reads the spec through :func:`parse_scorer_spec`, so that a
misspelt backend or a missing argument is one line naming the spec, whatever the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from coral.errors import CoralError

Backend = Literal["hf", "aligned", "vllm", "openai", "scripted"]
BACKENDS: tuple[str, ...] = get_args(Backend)
#: Backends that run a model from local files in this process (the ones that can be served or aligned).
LOCAL_BACKENDS = ("hf", "aligned")


@dataclass(frozen=True)
class ScorerSpec:
    """A parsed scorer spec."""

    text: str
    """The spec as given."""
    backend: Backend
    """Which backend scores."""
    argument: str
    """What follows ``backend:`` (empty for ``hf`` and ``scripted``)."""

    @property
    def local(self) -> bool:
        """Whether the model runs in this process from local files (``hf``, ``hf:PATH``, ``aligned:DIR``)."""
        return self.backend in LOCAL_BACKENDS

    @property
    def path(self) -> Path | None:
        """The model's directory or file for ``hf:PATH`` and ``aligned:DIR``; None otherwise (``hf``: the embedded
        model)."""
        return Path(self.argument).expanduser() if self.local and self.argument else None

    def require_files(self) -> None:
        """Check that the files of ``hf:PATH`` or ``aligned:DIR`` exist (the other backends have none here).

        :raises CoralError: naming the spec and the missing path.
        """
        if self.path is not None and not self.path.exists():
            raise CoralError(f"scorer spec {self.text!r}: {self.path}: no such file or directory")


def parse_scorer_spec(spec: str) -> ScorerSpec:
    """Split and check a scorer spec (see :mod:`coral.llm`); nothing is loaded.

    :param spec: the spec string, e.g. ``hf:models/qwen`` or ``openai:http://127.0.0.1:8000/v1#MODEL``.
    :raises CoralError: for an unknown backend, a missing argument, or bad options (openai, scripted).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise CoralError(f"scorer spec must not be empty; expected one of {_EXPECTED}")
    backend, _, argument = spec.strip().partition(":")
    if backend not in BACKENDS:
        raise CoralError(f"unknown scorer spec {spec!r}; expected {_EXPECTED}")
    if backend in ("aligned", "vllm") and not argument:
        needs = "a directory: aligned:DIR (written by `coral align`)" if backend == "aligned" else "a model: vllm:MODEL"
        raise CoralError(f"the {backend} spec needs {needs}")
    if backend == "openai":
        from coral.llm.openai_backend import parse_openai_spec

        parse_openai_spec(argument)
    elif backend == "scripted":
        from coral.llm.scripted import ScriptedScorer

        ScriptedScorer.from_spec(spec.strip())
    return ScorerSpec(spec, backend, argument)  # type: ignore[arg-type]


_EXPECTED = "hf, hf:PATH, aligned:DIR, vllm:MODEL, openai:URL#MODEL or scripted[:k=v,...]"
