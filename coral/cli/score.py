"""``coral score``: the LLM-Language baseline (the prompt without a collaborative block)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from coral.cli.common import add_command, load_data, require_output_dir
from coral.config import config_hash, require, section, to_dict
from coral.data.dataset import DataConfig
from coral.llm import ScorerConfig
from coral.llm.prompt import PromptConfig


@dataclass(frozen=True)
class ScoreCommand:
    """``coral score``: P(Yes) of every pair of a split from the LLM alone, and its metrics."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, how its files are read and its preprocessing."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The LLM."""
    prompt: PromptConfig = section(PromptConfig, flat=True)
    """How the prompts are written."""
    split: Literal["valid", "test"] = "test"
    """Split to report (validation is always scored too, for the F1 threshold)."""
    out: Optional[str] = field(default=None, metadata={"required": True})
    """Output directory: results.csv and the per-pair predictions."""
    batch_size: int = 8
    """Prompts per forward pass (hf)."""
    cache: bool = True
    """Read and write the persistent score cache."""
    cache_file: Optional[str] = None
    """Score cache file; None: scores.sqlite in the coral cache directory."""
    limit: int = 0
    """Score only N >= 2 pairs of each split, a seeded sample keeping both classes (quick checks); 0 = all."""
    seed: int = 0
    """Seed of the --limit sample."""
    threads: int = 0
    """torch threads; 0: torch's choice."""

    def __post_init__(self) -> None:
        require(
            self.limit == 0 or self.limit >= 2,
            "limit",
            f"must be 0 (all pairs) or >= 2 (a sample that keeps both classes), got {self.limit}",
        )
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")


def score(config: ScoreCommand) -> int:
    import numpy as np

    from coral.data.sample import stratified_subset
    from coral.llm import make_scorer
    from coral.llm.evaluate import score_pairs
    from coral.llm.prompt import scorer_prompt_builder
    from coral.metrics import binary_metrics
    from coral.results import append_rows, make_row

    out = require_output_dir(config.out)
    dataset = load_data(config.data, "valid", config.split)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    cache = (config.cache_file or True) if config.cache else False
    scorer = make_scorer(
        config.scorer.scorer, cache=cache, precision=config.scorer.precision, batch_size=config.batch_size
    )
    builder = scorer_prompt_builder(dataset, scorer, config.prompt)  # an aligned scorer's own settings win

    def run(split: str):
        rows = dataset.split(split)
        picked = stratified_subset(rows.label, config.limit, [config.seed, ("valid", "test").index(split)])
        result = score_pairs(scorer, builder, rows.user[picked], rows.item[picked], progress=True)
        return rows.take(picked), result

    start = time.time()
    valid_rows, valid = run("valid")
    rows, test = (valid_rows, valid) if config.split == "valid" else run(config.split)
    seconds = time.time() - start
    metrics = binary_metrics(rows.label, test.p_yes, valid_rows.label, valid.p_yes)
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(out / f"predictions_{config.split}.csv", dataset, rows, test)
    run_config = {
        "method": "llm-only", "command": to_dict(config), "scorer_fingerprint": scorer.fingerprint,
        "prompt_version": builder.version, "dataset_fingerprint": dataset.fingerprint,
    }
    row = make_row(
        dataset=dataset.name, model="llm-only", seed=0, metrics=metrics, config=run_config, split=config.split,
        train_seconds=0.0, prompt_version=builder.version, scorer=scorer.fingerprint, score_seconds=round(seconds, 2),
        yes_no_mass=float(np.mean(test.yes_no_mass)), command_hash=config_hash(config),
    )
    append_rows(out / "results.csv", [row])
    stats = scorer.stats()
    print(
        f"llm-only {dataset.name} {config.split}: AUC {metrics['auc']:.4f} [{metrics['auc_ci_low']:.3f}, "
        f"{metrics['auc_ci_high']:.3f}]  "
        f"F1 {metrics['f1']:.4f} (threshold {metrics['f1_threshold']:.3f})  F1@0.5 {metrics['f1_at_05']:.4f}  "
        f"n={metrics['n_test']}  {seconds:.1f}s  cache hits {stats.get('cache_hits', 0)} misses "
        f"{stats.get('cache_misses', 0)}"
    )
    print(f"wrote {out / 'results.csv'}")
    return 0


def _write_predictions(path: Path, dataset, rows, result) -> None:
    """One line per scored pair: the dataset's own user and item ids, their indices, label, P(Yes), Yes/No mass."""
    import csv
    import io

    from coral.io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["user", "item", "user_index", "item_index", "label", "p_yes", "yes_no_mass"])
    for k in range(len(result.p_yes)):
        u, i = int(rows.user[k]), int(rows.item[k])
        writer.writerow(
            [
                dataset.user_ids[u], dataset.item_ids[i], u, i, int(rows.label[k]), f"{result.p_yes[k]:.8f}",
                f"{result.yes_no_mass[k]:.8f}",
            ]
        )
    atomic_write_text(path, buf.getvalue())


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers, "score", ScoreCommand, score,
        help="score a split with the LLM alone (LLM-Language baseline) and append results.csv rows",
    )
