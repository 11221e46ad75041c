"""``coral run`` (the main job) and ``coral explain``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from coral.config import CONFIG_FILE_DEST, add_arguments, from_args, section
from coral.data.dataset import DataConfig
from coral.pipeline.config import RunConfig

from coral.cli.common import add_command


@dataclass(frozen=True)
class RunCommand:
    """``coral run``: every method, the paper's table and plots, resuming finished stages."""

    run: RunConfig = section(RunConfig, flat=True)
    """The main job."""
    out: Optional[str] = None
    """Output directory; None: runs/default, or runs/<name of the --config file>."""


@dataclass(frozen=True)
class ExplainCommand:
    """``coral explain``: the prompt, the retrieved evidence and p_t per round of one interaction."""

    run: Optional[str] = field(default=None, metadata={"required": True})
    """A `coral run` output or `coral train` run directory (after `coral evaluate`)."""
    user: Optional[str] = field(default=None, metadata={"required": True})
    """User: the dataset's own id, or an index."""
    item: Optional[str] = field(default=None, metadata={"required": True})
    """Item: the dataset's own id, or an index."""
    data: DataConfig = section(DataConfig, flat=True)
    """The run's dataset, its layout and its preprocessing."""
    prompt: bool = True
    """Show the final prompt's text."""


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from coral.pipeline.run import MainJob

    command = from_args(RunCommand, args)
    config_file = getattr(args, CONFIG_FILE_DEST, None)
    out = Path(command.out) if command.out else Path("runs") / (Path(config_file).stem if config_file else "default")
    console = Console()
    outputs = MainJob(command.run, out, log=lambda msg: console.print(msg, highlight=False, markup=False)).run()
    console.print(Markdown(outputs.summary))
    console.print(f"table: {outputs.table}  plots: {', '.join(str(p) for p in outputs.plots)}")
    return 0


def explain(config: ExplainCommand) -> int:
    from coral.data import load_dataset
    from coral.pipeline.explain import explain as account

    print(account(Path(config.run), load_dataset(config.data), config.user, config.item, show_prompt=config.prompt))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    # Not add_command: the default output directory is named after the --config file.
    parser = subparsers.add_parser("run", help="the main job: every method, the paper's table and plots (resumes)", description="The main job: every method, the paper's table and plots; finished stages are skipped on a re-run.")
    add_arguments(parser, RunCommand)
    parser.set_defaults(func=run, config_class=RunCommand)
    add_command(subparsers, "explain", ExplainCommand, explain, help="the prompt, the retrieved evidence and p_t per round of one interaction")
