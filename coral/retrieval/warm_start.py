"""The warm start of retrieval: the user and item embeddings that evidence is searched by.

A CTR model's embedding tables (``dfm``, ``wdl``, ``afm``, ``dcn``; trained once per dataset and
config, then read from the cache) or random ones (``none``, the paper's "w/o init" ablation).
Loaded tables are kept per process, so that many environments share one copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from coral.baselines.config import BaselineConfig
from coral.config import require
from coral.data.dataset import CoralDataset
from coral.retrieval.index import EmbeddingTables, random_embeddings

WarmStart = Literal["dfm", "wdl", "afm", "dcn", "none"]
#: CTR models whose embeddings can warm-start the retrieval policy; "none" = random ("w/o init").
WARM_START_MODELS: tuple[str, ...] = get_args(WarmStart)


@dataclass(frozen=True)
class WarmStartConfig:
    """Which embeddings retrieval searches by."""

    warm_start: WarmStart = "dfm"
    """Embeddings: dfm, wdl, afm, dcn (a CTR model's, trained once and cached) or none (random, "w/o init")."""
    embedding_dim: int = BaselineConfig.embedding_dim
    """Embedding size d of the warm start (the CTR model's, or the random tables'); observations have 4d + 2 entries."""

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


def resolve_embeddings(dataset: CoralDataset, config: WarmStartConfig = WarmStartConfig(), seed: int = 0) -> EmbeddingTables:
    """The embedding tables of a warm start for ``dataset``, loaded (or trained) once per process.

    :param dataset: the dataset the tables index.
    :param config: which embeddings, and their size.
    :param seed: seed of the CTR training or of the random draw.
    """
    key = (dataset.fingerprint, config, int(seed))
    if key not in _tables:
        baseline = config.baseline(seed)
        if baseline is None:
            _tables[key] = random_embeddings(dataset, dim=config.embedding_dim, seed=seed)
        else:
            from coral.baselines.export import warm_start_embeddings

            _tables[key] = warm_start_embeddings(dataset, baseline)
    return _tables[key]
