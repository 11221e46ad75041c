"""Retrieval of collaborative evidence: the evidence index, the leakage guard and the warm-start embeddings.

Used by the environment (:mod:`coral.envs`) and by alignment (:mod:`coral.align`); needs neither
gymnasium nor torch (a CTR warm start imports torch when it is first trained or loaded).
"""

from coral.retrieval.index import (
    EmbeddingTables,
    EvidenceIndex,
    LeakageError,
    LeakageGuard,
    RandomEmbeddings,
    random_embeddings,
    tables_fingerprint,
    unit_rms_tables,
)
from coral.retrieval.warm_start import WARM_START_MODELS, WarmStart, WarmStartConfig, resolve_embeddings

__all__ = [
    "EmbeddingTables", "EvidenceIndex", "LeakageError", "LeakageGuard", "RandomEmbeddings", "random_embeddings",
    "tables_fingerprint", "unit_rms_tables", "WARM_START_MODELS", "WarmStart", "WarmStartConfig", "resolve_embeddings",
]
