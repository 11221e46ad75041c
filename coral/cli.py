"""The ``coral`` console command. Each sub-command lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Thread pinning must be set before torch is imported: on these shared 2-core machines the
# throughput of unpinned OpenMP threads swung by an order of magnitude between runs.
os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("OMP_PLACES", "cores")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: Modules that add sub-commands; each defines ``register(subparsers) -> None`` and sets
#: ``func`` on its parsers. Heavy imports (torch, transformers) belong inside the handlers.
COMMAND_MODULES = [
    "coral.data.cli",
    "coral.llm.cli",
    "coral.baselines.cli",
    "policies.cli",
    "coral.align.cli",
    "coral.pipeline.cli",
]


def build_parser() -> argparse.ArgumentParser:
    from coral import __version__

    parser = argparse.ArgumentParser(prog="coral", description="Collaborative retrieval-augmented LLMs for long-tail recommendation.")
    parser.add_argument("--version", action="version", version=f"coral {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; a :class:`~coral.errors.CoralError` becomes one line and exit 2."""
    from coral.errors import CoralError

    import warnings

    # Warnings about the user's data are one line each, like errors.
    warnings.formatwarning = lambda message, category, *_args, **_kw: f"warning: {message}\n"
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except CoralError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
