"""``coral align``: align the LLM scorer to the Yes/No task; ``coral align-diagnostics``: does a scorer use evidence?"""

from __future__ import annotations

import argparse
import json

from coral.align.config import METHODS, AlignConfig

_DEFAULTS = AlignConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    from coral.data.cli import add_dataset_arguments

    parser = subparsers.add_parser(
        "align",
        help="align the LLM scorer to the Yes/No task on training interactions (LoRA or a readout head)",
        description="Train on training-split interactions only, in the environment's prompt format, with 0..K pieces of "
        "evidence from the random and greedy policies. Resumable: run the same command again after an interruption. "
        "Score with it through --scorer aligned:OUT.",
    )
    add_dataset_arguments(parser)
    parser.add_argument("--out", required=True, help="result directory (config, weights, training log, checkpoints)")
    parser.add_argument("--method", choices=METHODS, default=_DEFAULTS.method, help=f"lora (TALLRec) or head (logistic readout on the frozen LLM) (default {_DEFAULTS.method})")
    parser.add_argument("--base-model", default=None, help="HF model directory or .gguf file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=_DEFAULTS.dtype, help=f"weights' dtype (default {_DEFAULTS.dtype})")
    parser.add_argument("--n-train", type=int, default=_DEFAULTS.n_train, help=f"training prompts (default {_DEFAULTS.n_train})")
    parser.add_argument("--balance", choices=("sample", "weight", "none"), default=_DEFAULTS.balance, help=f"class balancing (default {_DEFAULTS.balance})")
    parser.add_argument("--max-evidence", type=int, default=_DEFAULTS.max_evidence, help=f"K: 0..K evidence pieces per prompt (default {_DEFAULTS.max_evidence})")
    parser.add_argument("--embeddings", default=_DEFAULTS.embeddings, help=f"warm start of the greedy policy: dfm, wdl, afm, dcn, none (default {_DEFAULTS.embeddings})")
    parser.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help=f"LoRA epochs (default {_DEFAULTS.epochs})")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help=f"LoRA peak learning rate (default {_DEFAULTS.lr})")
    parser.add_argument("--lora-r", type=int, default=_DEFAULTS.lora_r, help=f"LoRA rank (default {_DEFAULTS.lora_r})")
    parser.add_argument("--lora-layers", type=int, default=_DEFAULTS.lora_layers, help=f"adapt the top N decoder layers, 0 = all (default {_DEFAULTS.lora_layers})")
    parser.add_argument("--head-c", type=float, default=_DEFAULTS.head_c, help=f"inverse L2 strength of the readout head (default {_DEFAULTS.head_c})")
    parser.add_argument("--n-valid", type=int, default=_DEFAULTS.n_valid, help=f"validation pairs scored afterwards, 0 = all (default {_DEFAULTS.n_valid})")
    parser.add_argument("--no-validate", action="store_true", help="skip the validation diagnostics")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help=f"seed (default {_DEFAULTS.seed})")
    parser.add_argument("--threads", type=int, default=_DEFAULTS.threads, help=f"torch threads (default {_DEFAULTS.threads})")
    parser.add_argument("--restart", action="store_true", help="discard what OUT holds and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=handler)

    diag = subparsers.add_parser(
        "align-diagnostics",
        help="LLM-only AUC and how one piece of evidence moves a scorer's P(Yes), on validation",
    )
    add_dataset_arguments(diag)
    diag.add_argument("--scorer", default="hf", help="scorer spec, e.g. hf or aligned:DIR (default hf)")
    diag.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="scorer dtype (default: the backend's; an aligned scorer's training dtype)")
    diag.add_argument("--split", choices=("valid", "test"), default="valid", help="target pairs (default valid)")
    diag.add_argument("--k", type=int, default=5, help="evidence pieces per trajectory (default 5)")
    diag.add_argument("--n-pairs", type=int, default=80, help="pairs: every negative up to half, then random positives; 0 = all (default 80)")
    diag.add_argument("--embeddings", default="dfm", help="warm start of the greedy policy (default dfm)")
    diag.add_argument("--seed", type=int, default=0, help="seed of the sample and the random policy (default 0)")
    diag.add_argument("--json", default=None, help="also write the figures to this JSON file")
    diag.add_argument("--no-progress", action="store_true", help="no progress bars")
    diag.set_defaults(func=diagnostics_handler)


def handler(args: argparse.Namespace) -> int:
    from coral.align.run import run_alignment
    from coral.data.cli import dataset_from_args

    config = AlignConfig(
        method=args.method,
        base_model=args.base_model,
        dtype=args.dtype,
        seed=args.seed,
        n_train=args.n_train,
        balance=args.balance,
        max_evidence=args.max_evidence,
        embeddings=args.embeddings,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_layers=args.lora_layers,
        lr=args.lr,
        epochs=args.epochs,
        head_c=args.head_c,
        n_valid=args.n_valid,
        threads=args.threads,
    )
    dataset = dataset_from_args(args)
    meta = run_alignment(dataset, config, args.out, validate=not args.no_validate, restart=args.restart, progress=not args.no_progress)
    print(json.dumps({"out": args.out, "method": meta["method"], "summary": meta["summary"], "validation": meta.get("validation")}, indent=2, default=str))
    print(f"score with: --scorer aligned:{args.out}")
    return 0


def diagnostics_handler(args: argparse.Namespace) -> int:
    import torch

    from coral.align.diagnostics import evidence_diagnostics, summary
    from coral.data.cli import dataset_from_args
    from coral.io import atomic_write_json
    from coral.llm import make_scorer
    from coral.llm.prompt import PromptBuilder

    torch.set_num_threads(2)
    dataset = dataset_from_args(args)
    scorer = make_scorer(args.scorer, dtype=args.dtype)
    builder = PromptBuilder(dataset, tokenizer=scorer.tokenizer)
    figures = summary(evidence_diagnostics(scorer, dataset, builder, args.split, k=args.k, embeddings=args.embeddings, n_pairs=args.n_pairs, seed=args.seed, progress=not args.no_progress))
    figures["scorer"], figures["fingerprint"] = args.scorer, scorer.fingerprint
    if args.json:
        atomic_write_json(args.json, figures)
    print(json.dumps(figures, indent=2, default=str))
    return 0
