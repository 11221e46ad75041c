"""``coral score``: the LLM-Language baseline (the prompt without a collaborative block)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from coral.data.cli import add_dataset_arguments

    parser = subparsers.add_parser("score", help="score a split with the LLM alone (LLM-Language baseline) and append results.csv rows")
    add_dataset_arguments(parser)
    parser.add_argument("--split", choices=("valid", "test"), default="test", help="split to report (validation is always scored too, for the F1 threshold)")
    parser.add_argument("--out", required=True, help="output directory: results.csv and per-pair predictions")
    parser.add_argument("--scorer", default="hf", help="hf, hf:PATH (HF dir or .gguf), vllm:MODEL or openai:URL#MODEL (default hf: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weights layout for hf/vllm (default: float32; bf16 did not match its validation AUC)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default 8)")
    parser.add_argument("--order", choices=("incremental", "paper"), default="incremental", help="prompt order (default incremental)")
    parser.add_argument("--max-history", type=int, default=10, help="most recent liked and disliked items of the target user shown (default 10 each)")
    parser.add_argument("--no-chat-template", action="store_true", help="plain text prompts even when the model has a chat template")
    parser.add_argument("--cache", default=None, help="score cache file (default: the user cache directory)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N pairs of each split (quick checks)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> int:
    import numpy as np

    from coral.data.cli import dataset_from_args
    from coral.errors import CoralError
    from coral.llm import make_scorer
    from coral.llm.evaluate import score_pairs
    from coral.llm.prompt import PromptBuilder, PromptConfig
    from coral.metrics import binary_metrics
    from coral.results import append_rows, make_row

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    dataset = dataset_from_args(args)
    cache = False if args.no_cache else (args.cache or True)
    scorer = make_scorer(args.scorer, cache=cache, dtype=args.dtype, batch_size=args.batch_size)
    config = PromptConfig(order=args.order, max_history=args.max_history, chat_template=not args.no_chat_template)
    builder = PromptBuilder(dataset, config, scorer.tokenizer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def run(split: str):
        rows = dataset.split(split)
        n = min(len(rows), args.limit) if args.limit else len(rows)
        if n == 0:
            raise CoralError(f"{dataset.name}: the {split} split is empty")
        result = score_pairs(scorer, builder, rows.user[:n], rows.item[:n], progress=True)
        return rows.label[:n], result

    start = time.time()
    valid_y, valid = run("valid")
    y, test = (valid_y, valid) if args.split == "valid" else run(args.split)
    seconds = time.time() - start
    metrics = binary_metrics(y, test.p_yes, valid_y, valid.p_yes)
    _write_predictions(out / f"predictions_{args.split}.csv", dataset.split(args.split), test)
    run_config = {
        "method": "llm-only",
        "scorer": scorer.fingerprint,
        "prompt_version": builder.version,
        "prompt": dataclasses.asdict(config),
        "data_config": dataset.config.to_dict(),
        "dataset_fingerprint": dataset.fingerprint,
        "limit": args.limit,
    }
    row = make_row(
        dataset=dataset.name,
        model="llm-only",
        seed=0,
        metrics=metrics,
        config=run_config,
        split=args.split,
        train_seconds=0.0,
        prompt_version=builder.version,
        scorer=scorer.fingerprint,
        score_seconds=round(seconds, 2),
        yes_no_mass=float(np.mean(test.yes_no_mass)),
    )
    append_rows(out / "results.csv", [row])
    stats = scorer.stats()
    print(f"llm-only {dataset.name} {args.split}: AUC {metrics['auc']:.4f} [{metrics['auc_ci_low']:.3f}, {metrics['auc_ci_high']:.3f}]  "
          f"F1 {metrics['f1']:.4f} (threshold {metrics['f1_threshold']:.3f})  F1@0.5 {metrics['f1_at_05']:.4f}  "
          f"n={metrics['n_test']}  {seconds:.1f}s  cache hits {stats.get('cache_hits', 0)} misses {stats.get('cache_misses', 0)}")
    print(f"wrote {out / 'results.csv'}")
    return 0


def _write_predictions(path: Path, rows, result) -> None:
    import io

    from coral.io import atomic_write_text

    n = len(result.p_yes)
    buf = io.StringIO()
    buf.write("user,item,label,p_yes,yes_no_mass\n")
    for k in range(n):
        buf.write(f"{int(rows.user[k])},{int(rows.item[k])},{int(rows.label[k])},{result.p_yes[k]:.8f},{result.yes_no_mass[k]:.8f}\n")
    atomic_write_text(path, buf.getvalue())
