"""``coral align``: align the LLM scorer to the Yes/No task; ``coral align-diagnostics``: does a scorer use evidence?"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

from coral.align.config import AlignConfig
from coral.config import require, section
from coral.data.dataset import DataConfig
from coral.evidence import ROUNDS
from coral.llm import ScorerConfig
from coral.retrieval import WarmStartConfig

from coral.cli.common import add_command, json_safe, load_data


@dataclass(frozen=True)
class AlignCommand:
    """``coral align``: train an aligned scorer on training-split interactions and save it in OUT."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, its layout and its preprocessing."""
    alignment: AlignConfig = section(AlignConfig, flat=True)
    """How the scorer is aligned."""
    out: Optional[str] = field(default=None, metadata={"required": True})
    """Result directory (config, weights, training log, checkpoints)."""
    validate: bool = True
    """Score the validation split with the aligned scorer afterwards (figures in OUT/metrics.json)."""
    restart: bool = False
    """Discard what OUT holds and start over."""
    progress: bool = True
    """Show progress bars."""


@dataclass(frozen=True)
class DiagnosticsCommand:
    """``coral align-diagnostics``: LLM-only AUC and how one piece of evidence moves a scorer's P(Yes)."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, its layout and its preprocessing."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The scorer examined."""
    split: Literal["valid", "test"] = "valid"
    """Target pairs."""
    rounds: int = ROUNDS
    """K: evidence pieces per trajectory."""
    n_pairs: int = 80
    """Pairs: every negative up to half, then random positives; 0 = all."""
    warm: WarmStartConfig = section(WarmStartConfig, flat=True)
    """The greedy policy's embeddings."""
    seed: int = 0
    """Seed of the sample and of the random policy."""
    json: Optional[str] = None
    """Also write the figures to this JSON file."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        require(self.n_pairs >= 0, "n_pairs", f"must be >= 0, got {self.n_pairs}")


def align(config: AlignCommand) -> int:
    from coral.align.run import run_alignment

    dataset = load_data(config.data, "train", *(("valid",) if config.validate else ()))
    meta = run_alignment(dataset, config.alignment, config.out, validate=config.validate, restart=config.restart, progress=config.progress)
    print(json.dumps(json_safe({"out": config.out, "method": meta["method"], "summary": meta["summary"], "validation": meta.get("validation")}), indent=2, default=str))
    print(f"score with: --scorer aligned:{config.out}")
    return 0


def diagnostics(config: DiagnosticsCommand) -> int:
    import torch

    from coral.align.diagnostics import evidence_diagnostics, summary
    from coral.io import atomic_write_json
    from coral.llm import make_scorer
    from coral.llm.prompt import PromptBuilder

    torch.set_num_threads(2)
    dataset = load_data(config.data, config.split)
    scorer = make_scorer(config.scorer.scorer, dtype=config.scorer.dtype)
    builder = PromptBuilder(dataset, tokenizer=scorer.tokenizer)
    figures = summary(evidence_diagnostics(scorer, dataset, builder, config.split, rounds=config.rounds, warm=config.warm, n_pairs=config.n_pairs, seed=config.seed, progress=config.progress))
    figures["scorer"], figures["fingerprint"] = config.scorer.scorer, scorer.fingerprint
    figures = json_safe(figures)
    if config.json:
        atomic_write_json(config.json, figures)
    print(json.dumps(figures, indent=2, default=str))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers,
        "align",
        AlignCommand,
        align,
        help="align the LLM scorer to the Yes/No task on training interactions (LoRA or a readout head)",
        description="Train on training-split interactions only, in the environment's prompt format, with 0..K pieces of "
        "evidence from the random and greedy policies. Resumable: run the same command again after an interruption. "
        "Score with it through --scorer aligned:OUT.",
    )
    add_command(subparsers, "align-diagnostics", DiagnosticsCommand, diagnostics, help="LLM-only AUC and how one piece of evidence moves a scorer's P(Yes), on validation")
