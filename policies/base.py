"""What a retrieval policy is: observations (and the environments, for non-learned policies) in, actions out."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv


class RetrievalPolicy(Protocol):
    """Chooses one action per environment.

    Learned policies read only the observations; the non-learned ones (random, greedy) read the
    environments' state (evidence pool, target, used evidence) instead.
    """

    name: str
    """Short name used in result rows, e.g. "random", "greedy", "ppo"."""
    needs_embeddings: bool
    """False when the choice does not depend on the embeddings (random evidence)."""

    def act(self, observations: np.ndarray, envs: Sequence[CollabRetrievalEnv]) -> np.ndarray:
        """Actions for a batch of environments (one row of ``observations`` each)."""
        ...
