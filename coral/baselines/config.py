"""The baselines' configuration and the feature fields they read from a dataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from coral.config import require
from coral.data.dataset import CoralDataset
from coral.errors import CoralError

#: Bumped whenever training changes meaning, so that cached warm-start embeddings are retrained.
BASELINES_VERSION = "3"

#: Positions of the id fields in every feature matrix; item side features follow.
USER_FIELD, ITEM_FIELD = 0, 1

#: Config fields that do not change what is learned (left out of the hash).
_NOT_HASHED = ("threads", "eval_batch_size")

BaselineName = Literal["dfm", "dcn", "wdl", "afm", "ips", "cause"]
#: The baselines of the paper's Table 1 (lower-case), in its order; ``coral.baselines.models.MODELS`` has their classes.
MODEL_NAMES: tuple[str, ...] = get_args(BaselineName)


@dataclass(frozen=True)
class BaselineConfig:
    """Everything that decides what a CTR baseline learns. Its hash keys caches and result rows."""

    model: BaselineName = "dfm"
    """Which baseline: dfm, dcn, wdl, afm, ips or cause."""
    embedding_dim: int = 128
    """Size of every field embedding (the paper's d)."""
    epochs: int = 30
    """Maximum training epochs."""
    batch_size: int = 256
    """Training batch size (small batches suit the 2-core CPU machines)."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-6
    """Adam L2 penalty on the dense layers (embedding tables are left alone; early stopping regularises them)."""
    patience: int = 3
    """Stop after this many epochs without a lower validation log loss; the epoch with the lowest is kept."""
    seed: int = 0
    """Seeds initialisation, shuffling and dropout."""
    head_only: bool = False
    """Train on head-item interactions only (the paper's literal reading)."""
    use_side_features: bool = False
    """Add the dataset's categorical item features (brand, category, ...) as fields."""
    hidden_units: tuple[int, ...] = (256, 128)
    """Widths of the deep part's hidden layers (DFM, DCN, WDL)."""
    dropout: float = 0.2
    """Dropout in the deep part and AFM's pooling."""
    cross_layers: int = 3
    """DCN's cross layers."""
    attention_dim: int = 64
    """AFM's attention network width."""
    propensity_power: float = 0.5
    """IPS: propensity of item i is (train count_i / max count) ** power."""
    propensity_clip: float = 0.05
    """IPS: propensities below this are raised to it, bounding weights by 1 / clip."""
    cause_treatment_fraction: float = 0.1
    """CausE: share of training rows drawn (inverse to item popularity) as the near-uniform treatment sample."""
    cause_lambda: float = 1.0
    """CausE: weight of the squared distance between each item's treatment and control embeddings."""
    eval_batch_size: int = 8192
    """Rows per forward pass when predicting (does not change results)."""
    threads: int | None = 1
    """torch threads while training (restored afterwards; None leaves torch's setting). One: on shared 2-core
    machines a second pinned thread slowed small models ~10x whenever the other core was busy (same results)."""

    def __post_init__(self) -> None:
        require(self.model in MODEL_NAMES, "model", f"must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        object.__setattr__(self, "hidden_units", tuple(int(h) for h in self.hidden_units))
        for name in ("embedding_dim", "epochs", "batch_size", "patience"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(0.0 < self.propensity_clip <= 1.0, "propensity_clip", f"must be in (0, 1], got {self.propensity_clip}")
        require(
            0.0 < self.cause_treatment_fraction < 1.0,
            "cause_treatment_fraction",
            f"must be in (0, 1), got {self.cause_treatment_fraction}",
        )
        require(self.threads is None or self.threads >= 1, "threads", f"must be >= 1 (or none), got {self.threads}")

    def to_dict(self) -> dict:
        from coral.config import to_dict

        return to_dict(self)

    def learned_dict(self) -> dict:
        """The fields that change what is learned, with the code version: what result rows record."""
        return {
            "baselines_version": BASELINES_VERSION,
            **{k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED},
        }

    @property
    def hash(self) -> str:
        """A short stable hash of :meth:`learned_dict`."""
        blob = json.dumps(self.learned_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class FeatureFields:
    """The categorical fields of one dataset: user id, item id, then item side features."""

    names: tuple[str, ...]
    """Field names in column order ("user", "item", side features sorted by name)."""
    vocab_sizes: tuple[int, ...]
    """Rows of each field's embedding table."""
    side_codes: tuple[np.ndarray, ...]
    """Per side feature, the (n_items,) code of every item (0 = unknown)."""

    @classmethod
    def from_dataset(cls, dataset: CoralDataset, use_side_features: bool) -> "FeatureFields":
        """The fields of ``dataset``; side features only when asked for and present."""
        names, sizes, codes = ["user", "item"], [dataset.n_users, dataset.n_items], []
        if use_side_features:
            if not dataset.item_features:
                raise CoralError(f"dataset {dataset.name!r} has no item side features (use_side_features=True)")
            for name in sorted(dataset.item_features):
                column = np.asarray(dataset.item_features[name], dtype=np.int64)
                if column.shape != (dataset.n_items,) or column.min(initial=0) < 0:
                    raise CoralError(
                        f"dataset {dataset.name!r}: item feature {name!r} must be (n_items,) non-negative codes"
                    )
                names.append(name)
                sizes.append(int(column.max(initial=0)) + 1)
                codes.append(column)
        return cls(tuple(names), tuple(sizes), tuple(codes))

    def encode(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The (N, fields) int64 feature matrix of (user, item) pairs."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise CoralError(f"{len(users)} users but {len(items)} items to score")
        for what, ids, n in (
            ("user", users, self.vocab_sizes[USER_FIELD]),
            ("item", items, self.vocab_sizes[ITEM_FIELD]),
        ):
            if len(ids) and (ids.min() < 0 or ids.max() >= n):
                raise CoralError(f"{what} index out of range [0, {n}): {int(ids.min())}..{int(ids.max())}")
        return np.stack([users, items, *(codes[items] for codes in self.side_codes)], axis=1)
