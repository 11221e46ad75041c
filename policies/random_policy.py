"""CoRAL-random: each round retrieves a uniformly random training interaction not yet used."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv


class RandomPolicy:
    """Uniformly random evidence, whatever the action mode.

    In the query mode the action is the (normalised) embedding of a uniformly drawn unused
    training interaction, which the nearest-neighbour match maps back to that interaction; in
    the candidates mode it is a uniformly drawn unused candidate.

    Each draw is seeded by (seed, episode index, round), so an interaction gets the same
    evidence however the evaluation is batched.

    :param seed: seed of the draws.
    """

    name = "random"
    needs_embeddings = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def act(self, observations: np.ndarray, envs: Sequence[CollabRetrievalEnv]) -> np.ndarray:
        return np.stack([self._one(env) for env in envs])

    def _one(self, env: CollabRetrievalEnv) -> np.ndarray:
        rng = np.random.default_rng([self.seed, env.episode_index, env.t])
        if env.config.action_mode == "candidates":
            allowed = np.flatnonzero(env.action_masks()[: env.config.n_candidates])  # never the stop action
            return np.asarray(rng.choice(allowed) if len(allowed) else 0)
        allowed = np.flatnonzero(~env.used_rows)
        row = int(rng.choice(allowed)) if len(allowed) else 0
        return env.action_for_query(env.index.vectors[row])
