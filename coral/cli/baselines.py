"""``coral baselines``: train and evaluate the CTR baselines into OUT/results.csv."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Optional

from coral.baselines.config import MODEL_NAMES, BaselineConfig, BaselineName
from coral.cli.common import add_command, load_data, require_output_dir
from coral.config import require, section
from coral.data.dataset import DataConfig


@dataclass(frozen=True)
class BaselinesCommand:
    """``coral baselines``: every (model, seed) trained on the training split and evaluated on the test split."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, how its files are read and its preprocessing."""
    models: tuple[BaselineName, ...] = MODEL_NAMES
    """Baselines to train (comma-separated)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (comma-separated)."""
    out: Optional[str] = field(default=None, metadata={"required": True})
    """Output directory; results go to OUT/results.csv."""
    baseline: BaselineConfig = section(BaselineConfig, flat=True, skip=("model", "seed"))
    """The settings shared by every (model, seed)."""
    export_embeddings: bool = False
    """Also save each run's user/item embeddings under OUT/embeddings/."""
    force: bool = False
    """Retrain runs that already have a row in results.csv."""
    n_boot: int = 1000
    """Bootstrap resamples of the test AUC's 95% interval."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require(bool(self.models), "models", "must name at least one baseline")
        require(bool(self.seeds), "seeds", "must hold at least one seed")
        require(self.n_boot >= 0, "n_boot", f"must be >= 0, got {self.n_boot}")


def baselines(config: BaselinesCommand) -> int:
    from rich.console import Console

    from coral.baselines.runner import RESULTS_FILE, run_baselines, summary_table

    require_output_dir(config.out)
    dataset = load_data(config.data, "train", "valid", "test")
    rows = run_baselines(
        dataset, config.models, config.seeds, config.out, config.baseline, config.export_embeddings, config.force,
        config.progress, config.n_boot,
    )
    console = Console()
    console.print(summary_table(rows, title=f"{dataset.name}: long-tail test split ({rows[0]['n_test']} pairs)"))
    console.print(f"rows written to {config.out}/{RESULTS_FILE}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers, "baselines", BaselinesCommand, baselines,
        help="train and evaluate the CTR baselines (DFM, DCN, WDL, AFM, IPS, CausE)",
    )
