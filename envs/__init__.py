"""Gymnasium environments of coral (installed as ``coral.envs``). Importing this package registers them.

- ``CoRAL/CollabRetrieval-v1``: the retrieval MDP with the embedded LLM (scorer "hf") and a
  DFM warm start, as the paper; ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-v1", dataset="gift_cards")``.
- ``CoRAL/CollabRetrieval-Scripted-v1``: the same MDP with the scripted scorer and random
  embeddings: thousands of steps per second, numpy and gymnasium only (no torch).

(v0, before the leakage-free folds, target-relative queries and the v1 observation, is not
registered any more; the Version History of :class:`CollabRetrievalEnv` lists the changes.)

Both take the keys of :class:`EnvConfig` as keywords and ``render_mode="ansi"``. Their episodes
are at most ``max_train_steps`` (10) steps long; pass ``max_episode_steps=`` to ``gymnasium.make``
when you raise it.
"""

import gymnasium

from coral.envs.batch import EpisodeBatch
from coral.envs.collab_retrieval import CollabRetrievalEnv, make_env, make_scripted_env
from coral.envs.config import EnvConfig
from coral.envs.resources import EnvResources
from coral.retrieval import EvidenceIndex, LeakageError, LeakageGuard, random_embeddings

ENV_ID = "CoRAL/CollabRetrieval-v1"
SCRIPTED_ENV_ID = "CoRAL/CollabRetrieval-Scripted-v1"

for _id, _entry in ((ENV_ID, "coral.envs.collab_retrieval:make_env"), (SCRIPTED_ENV_ID, "coral.envs.collab_retrieval:make_scripted_env")):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry, max_episode_steps=EnvConfig.max_train_steps)

__all__ = [
    "ENV_ID",
    "SCRIPTED_ENV_ID",
    "CollabRetrievalEnv",
    "EnvConfig",
    "EnvResources",
    "EpisodeBatch",
    "EvidenceIndex",
    "LeakageError",
    "LeakageGuard",
    "make_env",
    "make_scripted_env",
    "random_embeddings",
]
