"""The shared ``results.csv`` format: one row per (method, seed), every row self-describing.

Every method of the project (CTR baselines, LLM-only, CoRAL-*) writes rows with these columns
through :func:`append_rows`; extra keys are kept as extra columns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping

from coral.io import atomic_write_text

#: The columns every row has, in this order. Later methods add columns after these.
COLUMNS = [
    "dataset", "model", "seed", "split", "auc", "auc_ci_low", "auc_ci_high", "f1", "f1_at_05", "logloss", "n_test",
    "positive_rate", "train_seconds", "config_hash", "config", "versions",
]


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def library_versions() -> str:
    """``name=version`` pairs of the libraries that shape results, ';'-separated."""
    from importlib import metadata

    parts = [f"python={platform.python_version()}"]
    for dist in ("coral-rec", "torch", "transformers", "stable-baselines3", "gymnasium", "scikit-learn", "numpy"):
        try:
            parts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ";".join(parts)


def make_row(
    *, dataset: str, model: str, seed: int, metrics: Mapping[str, Any], config: Mapping[str, Any], split: str = "test",
    train_seconds: float = 0.0, **extra: Any,
) -> dict[str, Any]:
    """One results row: identity, metrics from :func:`coral.metrics.binary_metrics`, config and versions."""
    row: dict[str, Any] = {
        "dataset": dataset, "model": model, "seed": seed, "split": split,
        "train_seconds": round(float(train_seconds), 3), "config_hash": config_hash(config),
        "config": json.dumps(config, sort_keys=True, default=str), "versions": library_versions(),
    }
    row.update({k: metrics[k] for k in metrics if k in COLUMNS or k not in row})
    row.update(extra)
    return row


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results.csv ([] if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_rows(
    path: str | Path,
    rows: Iterable[Mapping[str, Any]],
    replace_keys: tuple[str, ...] = ("dataset", "model", "seed", "split"),
) -> None:
    """Add rows to a results.csv atomically; a new row replaces an old one with the same key.

    :param path: the CSV file (created with its header if missing).
    :param rows: rows as produced by :func:`make_row`.
    :param replace_keys: columns identifying a row; re-running a method overwrites its row.
    """
    new = [dict(r) for r in rows]
    old = read_rows(path)
    new_keys = {tuple(str(r.get(k, "")) for k in replace_keys) for r in new}
    kept = [r for r in old if tuple(str(r.get(k, "")) for k in replace_keys) not in new_keys]
    all_rows = kept + new
    columns = list(COLUMNS)
    for r in all_rows:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in all_rows:
        writer.writerow({k: r.get(k, "") for k in columns})
    atomic_write_text(path, buf.getvalue())
