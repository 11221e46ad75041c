"""Training with early stopping on validation log loss, prediction, and evaluation through binary_metrics."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from coral.baselines.config import BaselineConfig, FeatureFields
from coral.baselines.models import MODELS, CTRModel
from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.metrics import binary_metrics

#: Called after every epoch with (epoch number from 1, validation log loss).
EpochCallback = Callable[[int, float], None]


@dataclass
class TrainedBaseline:
    """A trained CTR model with what it was trained on and how training went."""

    model: CTRModel
    config: BaselineConfig
    fields: FeatureFields
    dataset_fingerprint: str
    """Fingerprint of the dataset it was trained on."""
    train_seconds: float
    """Wall-clock seconds of training (validation passes included)."""
    history: list[float] = field(default_factory=list)
    """Validation log loss after each epoch."""
    best_epoch: int = 0
    """Epoch (from 1) whose weights were kept: the lowest validation log loss."""
    valid_auc: float = float("nan")
    """Validation AUC of the kept weights (nan when the validation split has one class)."""

    @torch.no_grad()
    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(like) for each (user, item) pair, float64.

        :param users: user indices.
        :param items: item indices, aligned with ``users``.
        """
        x = torch.from_numpy(self.fields.encode(users, items))
        self.model.eval()
        step = self.config.eval_batch_size
        logits = [self.model(x[start : start + step]) for start in range(0, len(x), step)]
        return torch.sigmoid(torch.cat(logits)).double().numpy() if logits else np.zeros(0)

    def user_embeddings(self) -> np.ndarray:
        """(n_users, d) float32 copy of the user-id field's embedding table."""
        return self.model.user_table().detach().numpy().astype(np.float32, copy=True)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, d) float32 copy of the item-id field's embedding table."""
        return self.model.item_table().detach().numpy().astype(np.float32, copy=True)


def _validation_logloss(labels: np.ndarray, scores: np.ndarray) -> float:
    """The early-stopping criterion: validation log loss. Not the AUC: on long-tail splits with
    few negatives the validation AUC jumps by whole points from one epoch to the next (and is
    often 1.0 after the first epoch), while the log loss uses every pair's probability."""
    return float(binary_metrics(labels, scores, n_boot=0)["logloss"])


def _parameter_groups(model: CTRModel, weight_decay: float) -> list[dict]:
    """Weight decay on dense layers only: Adam's decay would also shrink embedding rows that no
    batch touched (e.g. tail items under head_only) by about lr per step, whatever their size."""
    sparse = [p for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    return [{"params": sparse, "weight_decay": 0.0}, {"params": dense, "weight_decay": weight_decay}]


def train_baseline(
    dataset: CoralDataset, config: BaselineConfig, on_epoch: EpochCallback | None = None
) -> TrainedBaseline:
    """Train one baseline on the training split, keeping the epoch with the lowest validation log loss.

    :param dataset: the processed dataset.
    :param config: model and training settings.
    :param on_epoch: optional progress callback, called after each epoch.
    :raises CoralError: when the training rows are empty (e.g. head_only on a dataset without head rows).
    """
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(dataset, config, on_epoch)
    finally:
        torch.set_num_threads(threads_before)


def _train(dataset: CoralDataset, config: BaselineConfig, on_epoch: EpochCallback | None) -> TrainedBaseline:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    rows = dataset.train.take(dataset.is_head[dataset.train.item]) if config.head_only else dataset.train
    if len(rows) == 0:
        raise CoralError(f"dataset {dataset.name!r}: no training rows{' on head items' if config.head_only else ''}")
    fields = FeatureFields.from_dataset(dataset, config.use_side_features)
    model_cls = MODELS[config.model]
    model = model_cls(fields, config)
    data = model_cls.training_set(fields, rows, config, rng)
    model.init_bias(float(rows.label.mean()))
    shuffle = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(_parameter_groups(model, config.weight_decay), lr=config.lr)
    trained = TrainedBaseline(model, config, fields, dataset.fingerprint, 0.0)

    start = time.perf_counter()
    best, best_state, stale = np.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(data), generator=shuffle)
        for begin in range(0, len(data), config.batch_size):
            loss = model.loss(data.take(order[begin : begin + config.batch_size]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        valid_loss = _validation_logloss(dataset.valid.label, trained.predict(dataset.valid.user, dataset.valid.item))
        trained.history.append(valid_loss)
        if on_epoch is not None:
            on_epoch(epoch, valid_loss)
        if valid_loss < best:
            best, best_state, stale, trained.best_epoch = valid_loss, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    trained.train_seconds = time.perf_counter() - start
    trained.valid_auc = binary_metrics(
        dataset.valid.label, trained.predict(dataset.valid.user, dataset.valid.item), n_boot=0
    )["auc"]
    return trained


def evaluate_baseline(
    trained: TrainedBaseline, dataset: CoralDataset, split: str = "test", n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Metrics of a trained baseline on ``split``, F1 threshold tuned on the validation split.

    :param trained: the output of :func:`train_baseline`.
    :param dataset: the dataset it was trained on.
    :param split: test (default), valid, train or tail_train.
    :param n_boot: bootstrap resamples for the AUC interval.
    :param seed: bootstrap seed.
    """
    if trained.dataset_fingerprint != dataset.fingerprint:
        raise CoralError(
            f"baseline was trained on dataset {trained.dataset_fingerprint}, not on {dataset.name!r} "
            f"({dataset.fingerprint})"
        )
    rows, valid = dataset.split(split), dataset.valid
    return binary_metrics(
        rows.label, trained.predict(rows.user, rows.item), valid.label, trained.predict(valid.user, valid.item),
        n_boot=n_boot, seed=seed,
    )
