"""Shared builders for the environment and policy tests: a tiny synthetic dataset, embeddings, configs.

Items 0..13 are liked by everyone who rates them and items 14..19 disliked (with a little label
noise), and the item embeddings carry that in their first coordinate, so a policy can learn to
retrieve liked or disliked evidence from the target item's embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coral.data.dataset import CoralDataset, DataConfig, RawData, build_dataset
from coral.envs import CollabRetrievalEnv, EnvConfig, EnvResources, make_env
from coral.llm.scripted import MetadataPromptBuilder, ScriptedConfig, ScriptedScorer
from coral.retrieval import RandomEmbeddings

N_USERS, N_ITEMS, PER_USER, DIM = 60, 20, 9, 4
GOOD_ITEMS = 14


def tiny_dataset(seed: int = 0) -> CoralDataset:
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, PER_USER, replace=False):
            liked = (i < GOOD_ITEMS) != (rng.random() < 0.05)
            users.append(f"u{u:03d}")
            items.append(f"i{i:03d}")
            ratings.append(5.0 if liked else 1.0)
    n = len(users)
    raw = RawData(
        users=np.array(users), items=np.array(items), ratings=np.array(ratings), timestamps=np.arange(n),
        item_text={f"i{i:03d}": f"gift card {i}" for i in range(N_ITEMS)},
        source="tiny",
    )
    return build_dataset(raw, DataConfig(k_core=2), name="tiny")


def label_embeddings(dataset: CoralDataset, seed: int = 0) -> RandomEmbeddings:
    """Item embeddings whose first coordinate says whether the item is mostly liked."""
    rng = np.random.default_rng(seed)
    user = (0.1 * rng.standard_normal((dataset.n_users, DIM))).astype(np.float32)
    item = (0.1 * rng.standard_normal((dataset.n_items, DIM))).astype(np.float32)
    good = np.array([int(raw[1:]) < GOOD_ITEMS for raw in dataset.item_ids])
    item[:, 0] += np.where(good, 1.0, -1.0)
    return RandomEmbeddings(user=user, item=item)


def scripted_scorer() -> ScriptedScorer:
    return ScriptedScorer(ScriptedConfig(bias=0.0, weight=0.6, noise=0.3, seed=0))


def env_config(**keys) -> EnvConfig:
    """The tiny environment's settings: embedding size DIM, 8 candidates, and ``keys``."""
    return EnvConfig.from_any({"embedding_dim": DIM, "n_candidates": 8, **keys})


def resources(dataset: CoralDataset | None = None, **objects) -> EnvResources:
    """The tiny dataset, the scripted scorer, the label embeddings and the metadata prompt builder (or ``objects``)."""
    dataset = dataset if dataset is not None else tiny_dataset()
    base = dict(
        dataset=dataset, scorer=scripted_scorer(), embeddings=label_embeddings(dataset),
        prompt_builder=MetadataPromptBuilder(),
    )
    return EnvResources(**(base | objects))


def tiny_env(
    dataset: CoralDataset | None = None, scorer=None, prompt_builder: object = "metadata", **keys
) -> CollabRetrievalEnv:
    """An environment on the tiny dataset (``prompt_builder=None``: coral.llm.prompt.PromptBuilder)."""
    objects = {} if scorer is None else {"scorer": scorer}
    if prompt_builder != "metadata":
        objects["prompt_builder"] = prompt_builder
    return make_env(env_config(**keys), resources=resources(dataset, **objects))


def write_dataset_csv(dataset: CoralDataset, directory: Path) -> Path:
    """``dataset`` as interactions.csv + items.csv in ``directory``: a dataset a subprocess or a CLI loads by its
    path."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "interactions.csv", "w") as f:
        f.write("user,item,rating,timestamp\n")
        for split in (dataset.train, dataset.valid, dataset.test):
            for u, i, r, t in zip(split.user, split.item, split.rating, split.timestamp, strict=False):
                f.write(f"{dataset.user_ids[u]},{dataset.item_ids[i]},{r},{t}\n")
    with open(directory / "items.csv", "w") as f:
        f.write(
            "item,title\n"
            + "".join(f"{raw},{text}\n" for raw, text in zip(dataset.item_ids, dataset.item_text, strict=False))
        )
    return directory
