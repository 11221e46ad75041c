"""``coral baselines``: train and evaluate the CTR baselines into DIR/results.csv."""

from __future__ import annotations

import argparse

from coral.errors import CoralError

MODEL_NAMES = ("dfm", "dcn", "wdl", "afm", "ips", "cause")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _model_list(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown) or text!r}; expected some of {','.join(MODEL_NAMES)}")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    from coral.data.cli import add_dataset_arguments

    parser = subparsers.add_parser("baselines", help="train and evaluate the CTR baselines (DFM, DCN, WDL, AFM, IPS, CausE)")
    add_dataset_arguments(parser)
    parser.add_argument("--models", type=_model_list, default=list(MODEL_NAMES), help=f"comma-separated (default {','.join(MODEL_NAMES)})")
    parser.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="comma-separated training seeds (default 0,1,2)")
    parser.add_argument("--out", required=True, help="output directory; results go to OUT/results.csv")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (default 128, the paper's d)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs (default 3)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default 256)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=1e-6, help="Adam L2 penalty on dense layers (default 1e-6)")
    parser.add_argument("--head-only", action="store_true", help="train on head-item interactions only (the paper's literal reading)")
    parser.add_argument("--side-features", action="store_true", help="add the items' categorical side features (brand, category)")
    parser.add_argument("--export-embeddings", action="store_true", help="also save each run's user/item embeddings under OUT/embeddings/")
    parser.add_argument("--force", action="store_true", help="retrain runs that already have a row in results.csv")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test AUC's 95%% interval (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on shared 2-core machines a second pinned thread slowed small models ~10x whenever the other core was busy)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from rich.console import Console

    from coral.baselines.config import BaselineConfig
    from coral.baselines.runner import RESULTS_FILE, run_baselines, summary_table
    from coral.data.cli import dataset_from_args

    if not args.seeds:
        raise CoralError("--seeds is empty")
    template = BaselineConfig(
        embedding_dim=args.dim,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        head_only=args.head_only,
        use_side_features=args.side_features,
        num_threads=args.threads,
    )
    dataset = dataset_from_args(args)
    rows = run_baselines(dataset, args.models, args.seeds, args.out, template, args.export_embeddings, args.force, not args.no_progress, args.bootstrap)
    console = Console()
    console.print(summary_table(rows, title=f"{dataset.name}: long-tail test split ({rows[0]['n_test']} pairs)"))
    console.print(f"rows written to {args.out}/{RESULTS_FILE}")
    return 0
