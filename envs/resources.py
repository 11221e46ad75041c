"""Turn the names in an environment config into objects, loading each one once per process.

Several environments (a vector of them, or gymnasium.make called repeatedly) share one dataset,
one set of embeddings and one scorer: loading the LLM per environment would cost seconds and
memory each time, so named resources are cached here by their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.data.dataset import CoralDataset
from coral.errors import CoralError

from envs.retrieval import EmbeddingTables, EvidenceIndex, random_embeddings

if TYPE_CHECKING:
    from coral.llm.base import Scorer

#: CTR models whose embeddings can warm-start the retrieval policy; "none" = random ("w/o init").
WARM_START_MODELS = ("dfm", "wdl", "afm", "dcn", "none")

_datasets: dict[str, CoralDataset] = {}
_scorers: dict[str, "Scorer"] = {}
_embeddings: dict[tuple[str, str, int, int], EmbeddingTables] = {}
# Keyed by the embeddings object's id; the value keeps the object alive so the id stays unique.
_indexes: dict[tuple[str, int], tuple[EmbeddingTables, EvidenceIndex]] = {}


def resolve_dataset(dataset: str | CoralDataset) -> CoralDataset:
    """A dataset object, loading a name or path through ``coral.data.load_dataset`` once."""
    if isinstance(dataset, CoralDataset):
        return dataset
    if dataset not in _datasets:
        from coral.data import load_dataset

        _datasets[dataset] = load_dataset(dataset)
    return _datasets[dataset]


def resolve_scorer(scorer: "str | Scorer") -> "Scorer":
    """A scorer object for a spec (``coral.llm.make_scorer``), built once per process."""
    if not isinstance(scorer, str):
        return scorer
    if scorer not in _scorers:
        from coral.llm import make_scorer

        _scorers[scorer] = make_scorer(scorer)
    return _scorers[scorer]


def resolve_embeddings(dataset: CoralDataset, embeddings: str | EmbeddingTables, seed: int = 0, dim: int = 128) -> EmbeddingTables:
    """Embedding tables for ``dataset``: a warm start from a CTR model, random ("none"), or the object given.

    :param dataset: the dataset the tables index.
    :param embeddings: one of :data:`WARM_START_MODELS` or an object with ``user`` and ``item`` arrays.
    :param seed: seed of the CTR training or of the random draw.
    :param dim: embedding size.
    :raises CoralError: on an unknown model name.
    """
    if not isinstance(embeddings, str):
        return embeddings
    name = embeddings.lower()
    if name not in WARM_START_MODELS:
        raise CoralError(f"unknown warm start {embeddings!r}; expected one of {', '.join(WARM_START_MODELS)}")
    key = (dataset.fingerprint, name, int(seed), int(dim))
    if key not in _embeddings:
        if name == "none":
            _embeddings[key] = random_embeddings(dataset, dim=dim, seed=seed)
        else:
            from coral.baselines import warm_start_embeddings

            _embeddings[key] = warm_start_embeddings(dataset, model=name, seed=seed, dim=dim)
    return _embeddings[key]


def resolve_index(dataset: CoralDataset, embeddings: EmbeddingTables) -> EvidenceIndex:
    """The evidence index of (dataset, embeddings), built once and shared by every environment using them."""
    key = (dataset.fingerprint, id(embeddings))
    if key not in _indexes:
        _indexes[key] = (embeddings, EvidenceIndex(dataset, embeddings))
    return _indexes[key][1]
