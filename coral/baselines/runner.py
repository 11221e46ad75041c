"""Train and evaluate several baselines over several seeds into a shared results.csv, resumably;
fit one model (a CTR baseline or the mean-rating reference) and score the validation and test splits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coral.baselines.config import BaselineConfig
from coral.baselines.export import save_embeddings
from coral.baselines.reference import REFERENCE_NAME, MeanRatingReference, ReferenceConfig
from coral.baselines.train import EpochCallback, TrainedBaseline, evaluate_baseline, train_baseline
from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.results import append_rows, config_hash, make_row, read_rows

RESULTS_FILE = "results.csv"


def row_config(dataset: CoralDataset, config: BaselineConfig) -> dict:
    """What a result row records as its config: the baseline's learned settings and the data's."""
    return {
        "baseline": config.learned_dict(),
        "data": dataset.config.to_dict(),
        "dataset_fingerprint": dataset.fingerprint,
    }


def reference_row_config(dataset: CoralDataset, config: ReferenceConfig) -> dict:
    """The config a row of the mean-rating reference records."""
    return {
        "reference": dataclasses.asdict(config),
        "data": dataset.config.to_dict(),
        "dataset_fingerprint": dataset.fingerprint,
    }


@dataclass
class FittedScores:
    """One fitted model's P(like) on the whole validation and test splits, and how it was fitted."""

    model: str
    """Baseline name (dfm, ..., cause) or ``mean`` (the reference)."""
    seed: int | None
    """Training seed; None for the reference, which has none."""
    valid: np.ndarray
    """(n_valid,) P(like) of every validation interaction, in split order."""
    test: np.ndarray
    """(n_test,) P(like) of every test interaction, in split order."""
    train_seconds: float
    """Wall-clock seconds of fitting."""
    config: dict[str, Any]
    """What a result row records as the model's config."""
    details: dict[str, Any] = field(default_factory=dict)
    """Training figures for result rows (best epoch, epochs run, validation log loss and AUC)."""
    trained: TrainedBaseline | None = None
    """The trained CTR model (None for the reference)."""


def fit_and_score(
    dataset: CoralDataset, model: str, seed: int, template: BaselineConfig = BaselineConfig(),
    reference: ReferenceConfig = ReferenceConfig(), on_epoch: EpochCallback | None = None,
) -> FittedScores:
    """Fit ``model`` on the training split and score every validation and test interaction.

    :param dataset: the processed dataset.
    :param model: a CTR baseline name or ``mean`` (:data:`~coral.baselines.reference.REFERENCE_NAME`).
    :param seed: the CTR baseline's seed (ignored by the reference).
    :param template: the CTR baselines' settings; ``model`` and ``seed`` are replaced.
    :param reference: the reference's settings.
    :param on_epoch: progress callback of CTR training.
    """
    valid, test = dataset.valid, dataset.test
    if model == REFERENCE_NAME:
        fitted = MeanRatingReference.fit(dataset, reference)
        return FittedScores(
            model, None, fitted.predict(valid.user, valid.item), fitted.predict(test.user, test.item),
            fitted.train_seconds, reference_row_config(dataset, reference),
        )
    try:
        config = dataclasses.replace(template, model=model, seed=seed)
    except CoralError as err:
        raise CoralError(f"unknown model {model!r}: {err}") from None
    trained = train_baseline(dataset, config, on_epoch=on_epoch)
    details = {
        "best_epoch": trained.best_epoch, "epochs_run": len(trained.history),
        "best_valid_logloss": min(trained.history), "valid_auc": trained.valid_auc,
    }
    return FittedScores(
        model, seed, trained.predict(valid.user, valid.item), trained.predict(test.user, test.item),
        trained.train_seconds, row_config(dataset, config), details, trained,
    )


def run_baselines(
    dataset: CoralDataset, models: Sequence[str], seeds: Sequence[int], out: str | Path,
    template: BaselineConfig = BaselineConfig(), export_embeddings: bool = False, force: bool = False,
    show_progress: bool = True, n_boot: int = 1000,
) -> list[dict]:
    """Train every (model, seed), evaluate it on the test split and append its row to ``out/results.csv``.

    A (model, seed) whose row already exists with the same config hash is skipped (resume),
    unless ``force``.

    :param dataset: the processed dataset.
    :param models: baseline names.
    :param seeds: training seeds.
    :param out: output directory.
    :param template: settings shared by every run; ``model`` and ``seed`` are replaced.
    :param export_embeddings: also write ``out/embeddings/<model>-seed<seed>/``.
    :param force: retrain runs that already have a row.
    :param show_progress: draw a progress bar per model.
    :param n_boot: bootstrap resamples of the test AUC interval.
    :returns: the rows of this dataset and these models and seeds (new and resumed).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out)
    results = out / RESULTS_FILE
    configs = {(m, s): dataclasses.replace(template, model=m, seed=s) for m in models for s in seeds}
    done = {
        (r["model"], r["seed"], r["config_hash"]): r for r in read_rows(results) if r.get("dataset") == dataset.name
    }
    rows: list[dict] = []
    with Progress(
        TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), disable=not show_progress,
    ) as progress:
        for model in models:
            task = progress.add_task(model, total=len(seeds) * template.epochs, status="")
            for k, seed in enumerate(seeds):
                config = configs[(model, seed)]
                key = (model, str(seed), config_hash(row_config(dataset, config)))
                if key in done and not force:
                    rows.append(done[key])
                    progress.update(task, completed=(k + 1) * template.epochs, status=f"seed {seed}: resumed")
                    continue

                def on_epoch(epoch: int, loss: float, k: int = k, seed: int = seed, task: Any = task) -> None:
                    progress.update(
                        task,
                        completed=k * template.epochs + epoch,
                        status=f"seed {seed} epoch {epoch} val log loss {loss:.4f}",
                    )

                trained = train_baseline(dataset, config, on_epoch=on_epoch)
                metrics = evaluate_baseline(trained, dataset, "test", n_boot=n_boot, seed=seed)
                row = make_row(
                    dataset=dataset.name, model=model, seed=seed, metrics=metrics, config=row_config(dataset, config),
                    train_seconds=trained.train_seconds, best_epoch=trained.best_epoch, epochs_run=len(trained.history),
                    best_valid_logloss=min(trained.history), valid_auc=trained.valid_auc,
                    dataset_fingerprint=dataset.fingerprint,
                )
                append_rows(results, [row])
                if export_embeddings:
                    save_embeddings(out / "embeddings" / f"{model}-seed{seed}", trained, dataset)
                rows.append(row)
                progress.update(
                    task, completed=(k + 1) * template.epochs, status=f"seed {seed}: test AUC {metrics['auc']:.4f}"
                )
    return rows


def summary_table(rows: Sequence[dict], title: str = ""):
    """A rich table with one line per model: test metrics as mean ± sample std over seeds (ddof=1)
    and a real 95% interval of the AUC: the seed's bootstrap interval for one seed, the
    t-interval over seeds for several (:func:`coral.stats.t_interval`)."""
    from rich.table import Table

    from coral.stats import mean_std, t_interval

    table = Table("model", "seeds", "AUC", "AUC 95% CI", "F1", "MCC", "logloss", "train s", title=title)
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(str(row["model"]), []).append(row)

    def values(group: list[dict], key: str) -> np.ndarray:
        return np.array([float(r.get(key, "nan") or "nan") for r in group], dtype=np.float64)

    for model, group in by_model.items():
        auc = values(group, "auc")
        low, high = (
            (values(group, "auc_ci_low")[0], values(group, "auc_ci_high")[0]) if len(group) == 1 else t_interval(auc)
        )
        table.add_row(
            model, str(len(group)), mean_std(auc).format(3), f"[{low:.3f}, {high:.3f}]",
            mean_std(values(group, "f1")).format(3), mean_std(values(group, "mcc")).format(3),
            mean_std(values(group, "logloss")).format(3), f"{np.mean(values(group, 'train_seconds')):.1f}",
        )
    return table
