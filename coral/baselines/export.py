"""Export of trained user/item embedding tables, and the cached warm start of the retrieval policy."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coral.baselines.config import BaselineConfig
from coral.baselines.train import TrainedBaseline, train_baseline
from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.io import atomic_write_bytes, atomic_write_json, cache_dir

ARRAYS_FILE = "embeddings.npz"
META_FILE = "embeddings.json"


@dataclass
class Embeddings:
    """User and item embedding tables with the raw ids of their rows."""

    user: np.ndarray
    """(n_users, d) float32."""
    item: np.ndarray
    """(n_items, d) float32."""
    user_ids: list[str]
    """Row -> raw user id."""
    item_ids: list[str]
    """Row -> raw item id."""
    meta: dict = field(default_factory=dict)
    """dataset name and fingerprint, model config and its hash, training summary."""


def save_embeddings(directory: str | Path, trained: TrainedBaseline, dataset: CoralDataset) -> Path:
    """Write ``embeddings.npz`` (user, item) and ``embeddings.json`` (id maps, fingerprint, config).

    The JSON is written last, so a directory with it holds a complete export.

    :param directory: destination (created if missing).
    :param trained: a model trained on ``dataset``.
    :param dataset: the dataset whose id maps label the rows.
    :returns: the directory.
    """
    if trained.dataset_fingerprint != dataset.fingerprint:
        raise CoralError(
            f"baseline was trained on dataset {trained.dataset_fingerprint}, not on {dataset.name!r} "
            f"({dataset.fingerprint})"
        )
    directory = Path(directory)
    buf = io.BytesIO()
    np.savez(buf, user=trained.user_embeddings(), item=trained.item_embeddings())
    atomic_write_bytes(directory / ARRAYS_FILE, buf.getvalue())
    atomic_write_json(
        directory / META_FILE,
        {
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint, "model": trained.config.model,
            "config": trained.config.to_dict(), "config_hash": trained.config.hash, "best_epoch": trained.best_epoch,
            "valid_history": trained.history, "train_seconds": trained.train_seconds, "user_ids": dataset.user_ids,
            "item_ids": dataset.item_ids,
        },
    )
    return directory


def load_embeddings(directory: str | Path, dataset: CoralDataset | None = None) -> Embeddings:
    """Read an export of :func:`save_embeddings`.

    :param directory: the export directory.
    :param dataset: when given, the export must have been made from this very dataset (same id
        maps and same fingerprint: embeddings trained on another split may have seen its test rows).
    :raises CoralError: when files are missing or do not match ``dataset``.
    """
    directory = Path(directory)
    meta_path, arrays_path = directory / META_FILE, directory / ARRAYS_FILE
    if not meta_path.is_file() or not arrays_path.is_file():
        raise CoralError(f"{directory}: no embedding export ({META_FILE} and {ARRAYS_FILE} expected)")
    meta = json.loads(meta_path.read_text())
    with np.load(arrays_path) as z:
        user, item = z["user"], z["item"]
    user_ids, item_ids = meta.pop("user_ids"), meta.pop("item_ids")
    if user.shape[0] != len(user_ids) or item.shape[0] != len(item_ids):
        raise CoralError(
            f"{directory}: {user.shape[0]}x{item.shape[0]} embedding rows but {len(user_ids)}x{len(item_ids)} ids"
        )
    if dataset is not None:
        if user_ids != dataset.user_ids or item_ids != dataset.item_ids:
            raise CoralError(f"{directory}: embedding id maps do not match dataset {dataset.name!r}")
        if meta.get("dataset_fingerprint") != dataset.fingerprint:
            raise CoralError(
                f"{directory}: embeddings were trained on dataset {meta.get('dataset_fingerprint')}, "
                f"not {dataset.name!r} ({dataset.fingerprint}); another split could leak its test rows"
            )
    return Embeddings(user=user, item=item, user_ids=user_ids, item_ids=item_ids, meta=meta)


def warm_start_embeddings(dataset: CoralDataset, config: BaselineConfig) -> Embeddings:
    """A CTR model's user/item embeddings for the retrieval policy's warm start: trained once, then read from the cache.

    Cached under ``cache_dir("embeddings", "<dataset fingerprint>-<config hash>")`` (the hash
    leaves out settings that do not change what is learned, such as the number of threads).

    :param dataset: the dataset the policy runs on.
    :param config: the CTR model (``coral.retrieval.WarmStartConfig.baseline`` builds it).
    """
    directory = cache_dir("embeddings", f"{dataset.fingerprint}-{config.hash}")
    if (directory / META_FILE).is_file():
        return load_embeddings(directory, dataset)
    save_embeddings(directory, train_baseline(dataset, config), dataset)
    return load_embeddings(directory, dataset)
