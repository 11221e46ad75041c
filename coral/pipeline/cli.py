"""``coral run`` and ``coral explain``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="the main job: every method, the paper's table and plots (resumes)")
    run.add_argument("--dataset", default=None, help="dataset name or path (default: gift_cards, or the config's datasets)")
    run.add_argument("--out", default=None, help="output directory (default: runs/default, or runs/<config name>)")
    run.add_argument("--config", default=None, help="YAML file of RunConfig fields (see experiments/*.yaml)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds, overriding the config's")
    run.add_argument("--no-align", action="store_true", help="skip the alignment stage and its rows")
    run.set_defaults(func=_run)
    explain = subparsers.add_parser("explain", help="the prompt, the retrieved evidence and p_t per round of one interaction")
    explain.add_argument("--run", required=True, help="a `coral run` output or `coral train` run directory")
    explain.add_argument("--user", required=True, help="user: raw id or index")
    explain.add_argument("--item", required=True, help="item: raw id or index")
    explain.add_argument("--dataset", default="gift_cards", help="the run's dataset (default: gift_cards)")
    explain.add_argument("--no-prompt", action="store_true", help="leave out the final prompt text")
    explain.set_defaults(func=_explain)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown

    from coral.pipeline.config import RunConfig
    from coral.pipeline.run import MainJob

    config = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    if args.dataset:
        config.datasets = [args.dataset]
    if args.seeds:
        config.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.no_align:
        config.align = False
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else "default")
    console = Console()
    outputs = MainJob(config, out, log=lambda msg: console.print(msg, highlight=False, markup=False)).run()
    console.print(Markdown(outputs.table_text))
    console.print(f"table: {outputs.table}  plots: {', '.join(str(p) for p in outputs.plots)}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from coral.data import load_dataset
    from coral.pipeline.explain import explain

    print(explain(Path(args.run), load_dataset(args.dataset), args.user, args.item, show_prompt=not args.no_prompt))
    return 0
