"""Turn the names in an environment config into objects, loading each one once per process.

Several environments (a vector of them, or gymnasium.make called repeatedly) share one dataset,
one set of embeddings and one scorer: loading the LLM per environment would cost seconds and
memory each time, so named resources are cached here by their configs. :class:`EnvResources`
carries objects that replace the names (tests, notebooks, a pipeline that loaded them already).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coral.data.dataset import CoralDataset, DataConfig
from coral.llm import ScorerConfig
from coral.retrieval import EmbeddingTables, EvidenceIndex, resolve_embeddings

if TYPE_CHECKING:
    from coral.llm.base import Scorer

__all__ = ["EnvResources", "resolve_dataset", "resolve_embeddings", "resolve_index", "resolve_scorer"]


@dataclass(frozen=True)
class EnvResources:
    """Objects that replace the names of an :class:`~coral.envs.EnvConfig` (each None: load from the config)."""

    dataset: CoralDataset | None = None
    """Used instead of loading the config's data section."""
    scorer: Any = None
    """A Scorer used instead of building the config's scorer spec."""
    embeddings: Any = None
    """An object with user and item arrays used instead of the config's warm start."""
    prompt_builder: Any = None
    """An object with build(user, item, evidence) -> Prompt, used instead of coral.llm.prompt.PromptBuilder."""


_datasets: dict[DataConfig, CoralDataset] = {}
_scorers: dict[ScorerConfig, "Scorer"] = {}
# Keyed by the embeddings object's id; the value keeps the object alive so the id stays unique.
_indexes: dict[tuple[str, int], tuple[EmbeddingTables, EvidenceIndex]] = {}


def resolve_dataset(config: DataConfig) -> CoralDataset:
    """The dataset of a data section, loaded through ``coral.data.load_dataset`` once per process."""
    if config not in _datasets:
        from coral.data import load_dataset

        _datasets[config] = load_dataset(config)
    return _datasets[config]


def resolve_scorer(config: ScorerConfig) -> "Scorer":
    """The scorer of a scorer section (``coral.llm.make_scorer``), built once per process."""
    if config not in _scorers:
        from coral.llm import make_scorer

        _scorers[config] = make_scorer(config.scorer, precision=config.precision)
    return _scorers[config]


def resolve_index(dataset: CoralDataset, embeddings: EmbeddingTables) -> EvidenceIndex:
    """The evidence index of (dataset, embeddings), built once and shared by every environment using them."""
    key = (dataset.fingerprint, id(embeddings))
    if key not in _indexes:
        _indexes[key] = (embeddings, EvidenceIndex(dataset, embeddings))
    return _indexes[key][1]
