"""``coral run`` (the main job) and ``coral explain``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from coral.cli.common import require_output_dir
from coral.config import CONFIG_FILE_DEST, add_arguments, from_args, leaves, section
from coral.data.dataset import DataConfig
from coral.pipeline.config import RunConfig


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
    """The dataset the ids are resolved in: by default the run's own (as its config records it); flags given here change
    it."""
    prompt: bool = True
    """Show the final prompt's text."""


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from coral.pipeline.run import MainJob

    command = from_args(RunCommand, args)
    config_file = getattr(args, CONFIG_FILE_DEST, None)
    out = require_output_dir(
        Path(command.out) if command.out else Path("runs") / (Path(config_file).stem if config_file else "default")
    )
    console = Console()
    outputs = MainJob(command.run, out, log=lambda msg: console.print(msg, highlight=False, markup=False)).run()
    console.print(Markdown(outputs.summary))
    console.print(f"table: {outputs.table}  plots: {', '.join(str(p) for p in outputs.plots)}")
    return 0


def run_data_config(run: Path) -> DataConfig | None:
    """The data section that a run was made with, or None when it records none.

    A ``coral train`` run has it in ``config.json``; a ``coral run`` output in the identity
    (``config.json``) of the stage that wrote its first evaluation file.

    :param run: a ``coral train`` run directory or a ``coral run`` output directory.
    """
    from coral.config import from_dict
    from coral.pipeline.explain import episode_files
    from coral.policies.config import TrainConfig

    if (run / "config.json").is_file() and not (run / "stages").is_dir():
        return TrainConfig.load(run / "config.json").env.data
    first = episode_files(run)[0]
    stage = next((p for p in first.parents if p.parent.name == "stages"), None)
    if stage is None or not (stage / "config.json").is_file():
        return None
    identity = json.loads((stage / "config.json").read_text())
    env = identity.get("env") or identity.get("train") or {}  # the data keys sit flat in both
    keys = {leaf.name for leaf in leaves(DataConfig)}
    return from_dict(DataConfig, {k: v for k, v in env.items() if k in keys}, where=str(stage / "config.json"))


def explain(args: argparse.Namespace) -> int:
    from coral.data import load_dataset
    from coral.pipeline.explain import explain as account

    run = getattr(args, "run", None)
    recorded = run_data_config(Path(run)) if run else None
    base = ExplainCommand(data=recorded) if recorded is not None else None
    config = from_args(ExplainCommand, args, base=base)  # flags given override what the run recorded
    print(account(Path(config.run), load_dataset(config.data), config.user, config.item, show_prompt=config.prompt))
    return 0


#: What ``--scorer`` changes in ``coral run`` (the flag's own help is shared by every command).
RUN_SCORER_HELP = (
    "In coral run: the LLM of the zero-shot stages (--methods with --no-align, --zero-shot-methods with alignment on); "
    "with alignment on also the model the alignment fine-tunes, so it must be hf or hf:PATH there "
    "(vllm:, openai:, aligned: and scripted need --no-align). Checked before anything runs."
)


def _scorer_help(parser: argparse.ArgumentParser) -> None:
    """Say in ``coral run --help`` which stages ``--scorer`` changes."""
    for action in parser._actions:
        if "--scorer" in action.option_strings:
            action.help = f"{action.help} {RUN_SCORER_HELP}"


def register(subparsers: argparse._SubParsersAction) -> None:
    # Not add_command: the default output directory is named after the --config file.
    parser = subparsers.add_parser(
        "run",
        help="the main job: every method, the paper's table and plots (resumes)",
        description="The main job: every method, the paper's table and plots; finished stages are skipped on a re-run.",
    )
    add_arguments(parser, RunCommand)
    _scorer_help(parser)
    parser.set_defaults(func=run, config_class=RunCommand)
    # Not add_command: the run's own data section is the base that the flags change.
    help_text = "the prompt, the retrieved evidence and p_t per round of one interaction"
    parser = subparsers.add_parser(
        "explain", help=help_text, description=help_text + " (ids are resolved in the run's own dataset)"
    )
    add_arguments(parser, ExplainCommand)
    parser.set_defaults(func=explain, config_class=ExplainCommand)
