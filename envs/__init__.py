"""Gymnasium environments of coral. Importing this package registers them.

``gymnasium.make("CoRAL/CollabRetrieval-v0", dataset="gift_cards")`` builds a
:class:`~envs.collab_retrieval.CollabRetrievalEnv` through :func:`~envs.collab_retrieval.make_env`.
"""

import gymnasium

from envs.collab_retrieval import CollabRetrievalEnv, EnvConfig, make_env
from envs.retrieval import EvidenceIndex, LeakageError, LeakageGuard, random_embeddings

ENV_ID = "CoRAL/CollabRetrieval-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.collab_retrieval:make_env")

__all__ = ["ENV_ID", "CollabRetrievalEnv", "EnvConfig", "EvidenceIndex", "LeakageError", "LeakageGuard", "make_env", "random_embeddings"]
