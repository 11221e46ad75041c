"""``coral align``: align the LLM scorer to the Yes/No task; ``coral align-diagnostics``: does a scorer use evidence?"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from coral.align.config import AlignConfig
from coral.cli.common import add_command, json_safe, load_data, require_output_dir, require_output_file
from coral.config import require, section
from coral.data.dataset import DataConfig
from coral.errors import CoralError
from coral.evidence import ROUNDS
from coral.llm import ScorerConfig
from coral.retrieval import WarmStartConfig


@dataclass(frozen=True)
class AlignCommand:
    """``coral align``: train an aligned scorer on training-split interactions and save it in OUT."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, how its files are read and its preprocessing."""
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
    """The dataset, how its files are read and its preprocessing."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The scorer examined."""
    split: Literal["valid", "test"] = "valid"
    """Target pairs."""
    rounds: int = ROUNDS
    """K: evidence pieces per trajectory."""
    n_pairs: int = 80
    """Pairs: every negative up to half, then random positives; 0 = all."""
    warm: WarmStartConfig = section(WarmStartConfig, flat=True)
    """The greedy policy's and the controls' embeddings (a CTR warm start is fitted on head + its fold of tail-train, as
    for align method topk)."""
    seed: int = 0
    """Seed of the sample and of the random policy."""
    controls: bool = False
    """Instead: the evidence controls (no evidence / K nearest / K random / K nearest of another target) with paired AUC
    differences vs no evidence."""
    json: Optional[str] = None
    """Also write the figures to this JSON file."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        require(self.n_pairs >= 0, "n_pairs", f"must be >= 0, got {self.n_pairs}")


def align(config: AlignCommand) -> int:
    from coral.align.run import run_alignment

    require_output_dir(config.out)
    dataset = load_data(config.data, "train", *(("valid",) if config.validate else ()))
    meta = run_alignment(
        dataset, config.alignment, config.out, validate=config.validate, restart=config.restart,
        progress=config.progress,
    )
    print(
        json.dumps(
            json_safe(
                {
                    "out": config.out, "method": meta["method"], "summary": meta["summary"],
                    "validation": meta.get("validation"),
                }
            ),
            indent=2,
            default=str,
        )
    )
    print(f"score with: --scorer aligned:{config.out}")
    return 0


def diagnostics(config: DiagnosticsCommand) -> int:
    import torch

    from coral.align.diagnostics import evidence_diagnostics, summary
    from coral.io import atomic_write_json
    from coral.llm import make_scorer
    from coral.llm.prompt import scorer_prompt_builder

    if config.json:
        require_output_file(config.json, "--json")
    torch.set_num_threads(2)
    dataset = load_data(config.data, config.split)
    scorer = make_scorer(config.scorer.scorer, precision=config.scorer.precision)
    builder = scorer_prompt_builder(dataset, scorer)
    trained_for = getattr(scorer, "prompt_version", None)
    if trained_for is not None and trained_for != builder.version:
        raise CoralError(
            f"{config.scorer.scorer} was trained on prompt template {trained_for}, not today's {builder.version}: "
            "align it again"
        )
    if config.controls:
        return _controls(config, dataset, scorer, builder)
    figures = summary(
        evidence_diagnostics(
            scorer, dataset, builder, config.split, rounds=config.rounds, warm=config.warm, n_pairs=config.n_pairs,
            seed=config.seed, progress=config.progress,
        )
    )
    figures["scorer"], figures["fingerprint"] = config.scorer.scorer, scorer.fingerprint
    figures = json_safe(figures)
    if config.json:
        atomic_write_json(config.json, figures)
    print(json.dumps(figures, indent=2, default=str))
    return 0


def _controls(config: DiagnosticsCommand, dataset: Any, scorer: Any, builder: Any) -> int:
    from coral.align.controls import controls_table, evidence_controls
    from coral.align.topk import evidence_index
    from coral.data.sample import stratified_subset
    from coral.io import atomic_write_json, atomic_write_npz
    from coral.retrieval import resolve_embeddings

    index = evidence_index(dataset, resolve_embeddings(dataset, config.warm, seed=config.seed))
    rows = stratified_subset(getattr(dataset, config.split).label, config.n_pairs, config.seed)
    figures = evidence_controls(
        scorer, dataset, builder, config.split, rows, index, k=config.rounds, seed=config.seed, progress=config.progress
    )
    report = {k: v for k, v in figures.items() if k not in ("p", "labels")}
    report.update(
        {"scorer": config.scorer.scorer, "fingerprint": scorer.fingerprint, "split": config.split, "seed": config.seed}
    )
    if config.json:
        atomic_write_json(config.json, json_safe(report))
        # The per-pair scores beside it, so that scorers run on the same pairs can be compared pair by pair.
        atomic_write_npz(
            Path(config.json).with_suffix(".npz"), rows=rows, labels=figures["labels"],
            **{f"p_{k}": v for k, v in figures["p"].items()},
        )
    print(json.dumps(json_safe(report), indent=2, default=str))
    print(controls_table(figures))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers, "align", AlignCommand, align,
        help="align the LLM scorer to the Yes/No task on training interactions (LoRA or a readout head)",
        description="Train on training-split interactions only, in the environment's prompt format, with 0..K pieces "
                    "of "
        "evidence from the random and greedy policies. Resumable: run the same command again after an interruption. "
        "Score with it through --scorer aligned:OUT.",
    )
    add_command(
        subparsers, "align-diagnostics", DiagnosticsCommand, diagnostics,
        help="LLM-only AUC and how one piece of evidence moves a scorer's P(Yes), on validation",
    )
