"""A planted retrieval problem in which greedy nearest-neighbour retrieval is wrong by construction.

Items come in twins: a long-tail item ``t<k>`` and a popular item ``h<k>`` of the opposite
quality (liked by everyone who rates it, or disliked; a few labels flipped), whose embeddings
differ by a tiny offset while twin pairs lie far apart. The observed interactions nearest to a
target (u, t<k>) are then ratings of t<k> and of its twin by the users nearest to u, in the
order of the users alone, and the twin has several times the raters: most of the K nearest
pieces carry the label opposite to the target's. Ratings of the target item itself carry the
right one. The scorer is the scripted one (every liked piece raises the logit, every disliked
one lowers it), so greedy retrieval pushes P(Yes) the wrong way, while a policy that reads a
candidate's side (``CoRAL/CandidateRetrieval-Planted-v0``) can learn to take ratings of the
target item. No files, no torch: a few thousand interactions built in milliseconds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from coral.data.dataset import CoralDataset, DataConfig, RawData, build_dataset
from coral.envs.candidates import CANDIDATE_KEYS
from coral.envs.collab_retrieval import CollabRetrievalEnv, EnvConfig, make_env, with_defaults
from coral.envs.resources import EnvResources
from coral.llm.scripted import MetadataPromptBuilder, ScriptedConfig, ScriptedScorer
from coral.retrieval import RandomEmbeddings

#: Embedding size of the planted tables.
PLANTED_DIM = 8


def planted_dataset(
    n_pairs: int = 40, n_users: int = 300, tail_raters: int = 16, twin_raters: int = 24, flip: float = 0.05,
    seed: int = 0,
) -> CoralDataset:
    """Twin items of opposite quality: ``t<k>`` (long tail) and ``h<k>`` (popular); ``t<k>`` is liked for even k.

    :param n_pairs: twin pairs (items: 2 x n_pairs; half of them head items).
    :param n_users: users; each rating is by a uniformly drawn user.
    :param tail_raters: raters of each tail item.
    :param twin_raters: raters of each popular twin (more than ``tail_raters``: they are the head).
    :param flip: share of labels flipped.
    :param seed: seed of the raters and the flips.
    """
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for k in range(n_pairs):
        tail_liked = k % 2 == 0
        for name, liked, raters in ((f"t{k:03d}", tail_liked, tail_raters), (f"h{k:03d}", not tail_liked, twin_raters)):
            for u in rng.choice(n_users, raters, replace=False):
                label = liked != (rng.random() < flip)
                users.append(f"u{u:04d}")
                items.append(name)
                ratings.append(5.0 if label else 1.0)
    raw = RawData(
        users=np.array(users), items=np.array(items), ratings=np.array(ratings), timestamps=np.arange(len(users)),
        item_text={name: f"item {name}" for name in set(items)}, source="planted",
    )
    return build_dataset(raw, DataConfig(dataset="planted", k_core=1, head_fraction=0.5), name="planted")


def planted_embeddings(
    dataset: CoralDataset, user_scale: float = 0.3, pair_scale: float = 3.0, twin_offset: float = 0.02, seed: int = 0
) -> RandomEmbeddings:
    """User tables N(0, user_scale^2); twins at the pair's centre (N(0, pair_scale^2)) +- a tiny offset.

    :param dataset: a :func:`planted_dataset`.
    :param user_scale: spread of the users (the order of the nearest pieces).
    :param pair_scale: spread of the pairs' centres (far apart compared with the users).
    :param twin_offset: half the distance between twins.
    :param seed: seed of the tables.
    """
    rng = np.random.default_rng([seed, 0x91A7])
    user = (user_scale * rng.standard_normal((dataset.n_users, PLANTED_DIM))).astype(np.float32)
    pairs = sorted({name[1:] for name in dataset.item_ids})
    centre = {k: pair_scale * rng.standard_normal(PLANTED_DIM) for k in pairs}
    offset = {k: twin_offset * v / np.linalg.norm(v) for k, v in ((k, rng.standard_normal(PLANTED_DIM)) for k in pairs)}
    item = np.stack(
        [centre[name[1:]] + (offset[name[1:]] if name[0] == "t" else -offset[name[1:]]) for name in dataset.item_ids]
    ).astype(np.float32)
    return RandomEmbeddings(user=user, item=item)


@lru_cache(maxsize=4)
def planted_resources(seed: int = 0) -> EnvResources:
    """The planted dataset, its tables, the scripted scorer (weight 1, noise 0.5, every piece counts)
    and the metadata prompt builder: everything a planted environment needs, built once per seed."""
    dataset = planted_dataset(seed=seed)
    scorer = ScriptedScorer(ScriptedConfig(bias=0.0, weight=1.0, noise=0.5, seed=seed))
    return EnvResources(
        dataset=dataset, scorer=scorer, embeddings=planted_embeddings(dataset, seed=seed),
        prompt_builder=MetadataPromptBuilder(),
    )


def planted_config(**keys: Any) -> EnvConfig:
    """An environment config for the planted resources (their dataset's name and table size)."""
    return EnvConfig.from_any(
        {"dataset": "planted", "scorer": "scripted", "warm_start": "none", "embedding_dim": PLANTED_DIM, **keys}
    )


def make_planted_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, seed: int = 0, **keys: Any,
) -> CollabRetrievalEnv:
    """``CoRAL/CollabRetrieval-Planted-v1``: the planted problem with query actions by default.

    :param seed: the planted problem's seed (dataset, tables, scorer); ``resources`` replace them.
    """
    cfg = config if isinstance(config, EnvConfig) else planted_config(**dict(config or {}))
    return make_env(cfg, render_mode=render_mode, resources=resources or planted_resources(seed), **keys)


def make_planted_candidate_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, seed: int = 0, **keys: Any,
) -> CollabRetrievalEnv:
    """``CoRAL/CandidateRetrieval-Planted-v0``: the planted problem with candidate features by default."""
    return make_planted_env(
        with_defaults(config, CANDIDATE_KEYS), render_mode=render_mode, resources=resources, seed=seed, **keys
    )


__all__ = [
    "PLANTED_DIM", "make_planted_candidate_env", "make_planted_env", "planted_config", "planted_dataset",
    "planted_embeddings", "planted_resources",
]
