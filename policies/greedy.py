"""Greedy retrieval without learning: the evidence nearest to the target pair by embedding, nearest first."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv


class GreedyPolicy:
    """Query with the target's own [user, item] embedding (candidates mode: the nearest unused candidate).

    With ``query_match="observed"`` round t retrieves the t-th nearest observed training
    interaction to the target pair. With ``query_match="independent"`` the nearest user and item
    to the target's own are the target's, so every round is "unobserved": greedy is meant for
    the observed and candidates modes.
    """

    name = "greedy"
    needs_embeddings = True

    def act(self, observations: np.ndarray, envs: Sequence[CollabRetrievalEnv]) -> np.ndarray:
        return np.stack([self._one(env) for env in envs])

    @staticmethod
    def _one(env: CollabRetrievalEnv) -> np.ndarray:
        if env.config.action_mode == "candidates":
            allowed = np.flatnonzero(env.action_masks()[: env.config.n_candidates])  # never the stop action
            return np.asarray(allowed[0] if len(allowed) else 0)
        return env.action_for_query(env.index.pair_vector(env.user, env.item))
