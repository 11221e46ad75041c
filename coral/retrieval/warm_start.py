"""The warm start of retrieval: the user and item embeddings that evidence is searched by.

A CTR model's embedding tables (``dfm``, ``wdl``, ``afm``, ``dcn``; trained once per dataset and
config, then read from the cache) or random ones (``none``, the paper's "w/o init"). A CTR warm
start is fitted on the head interactions plus the ``warm_start`` fold of tail-train only
(:mod:`coral.data.folds`): the alignment's targets and the RL training episodes' targets are
pairs it has never seen. By default both tables are then rescaled to unit RMS row norm
(:func:`coral.retrieval.index.unit_rms_tables`), so that nearest-neighbour retrieval weighs users
and items alike. Loaded tables are kept per process, so that many environments share one copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from coral.baselines.config import BaselineConfig
from coral.config import require, section
from coral.data.dataset import CoralDataset
from coral.data.folds import FoldConfig, warm_start_dataset
from coral.retrieval.index import EmbeddingTables, random_embeddings, unit_rms_tables

WarmStart = Literal["dfm", "wdl", "afm", "dcn", "none"]
#: CTR models whose embeddings can warm-start the retrieval policy; "none" = random ("w/o init").
WARM_START_MODELS: tuple[str, ...] = get_args(WarmStart)


@dataclass(frozen=True)
class WarmStartConfig:
    """Which embeddings retrieval searches by, and which tail-train fold each learner sees."""

    warm_start: WarmStart = "dfm"
    """Embeddings: dfm, wdl, afm, dcn (a CTR model's, fitted on head + the warm_start fold, cached) or none (random,
    "w/o init")."""
    embedding_dim: int = BaselineConfig.embedding_dim
    """Embedding size d of the warm start (the CTR model's, or the random tables')."""
    unit_rms: bool = True
    """Scale the user table and the item table each to unit RMS row norm, so that nearest-neighbour retrieval mixes the
    target item's raters and the target user's similar items."""
    folds: FoldConfig = section(FoldConfig, flat=True)
    """The disjoint tail-train folds of warm start, alignment and RL episodes."""

    def __post_init__(self) -> None:
        require(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")

    def baseline(self, seed: int) -> BaselineConfig | None:
        """The CTR model trained for this warm start (None for random embeddings).

        :param seed: its training seed (the run's seed).
        """
        if self.warm_start == "none":
            return None
        return BaselineConfig(model=self.warm_start, seed=seed, embedding_dim=self.embedding_dim)


_tables: dict[tuple[str, WarmStartConfig, int], EmbeddingTables] = {}


def resolve_embeddings(
    dataset: CoralDataset, config: WarmStartConfig = WarmStartConfig(), seed: int = 0
) -> EmbeddingTables:
    """The embedding tables of a warm start for ``dataset``, loaded (or trained) once per process.

    A CTR model is trained on :func:`coral.data.folds.warm_start_dataset` (head interactions and
    the ``warm_start`` fold; validation for early stopping) and cached under that dataset's own
    fingerprint.

    :param dataset: the dataset the tables index.
    :param config: which embeddings, their size, the rescaling and the folds.
    :param seed: seed of the CTR training or of the random draw.
    """
    key = (dataset.fingerprint, config, int(seed))
    if key not in _tables:
        baseline = config.baseline(seed)
        if baseline is None:
            tables: EmbeddingTables = random_embeddings(dataset, dim=config.embedding_dim, seed=seed)
        else:
            from coral.baselines.export import warm_start_embeddings

            tables = warm_start_embeddings(warm_start_dataset(dataset, config.folds), baseline)
        _tables[key] = unit_rms_tables(tables) if config.unit_rms else tables
    return _tables[key]
