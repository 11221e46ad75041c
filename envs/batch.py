"""Many retrieval episodes stepped together, with one scorer call per step for all of them.

The LLM dominates the cost of a step, and it scores a batch of prompts in one forward pass, so
an :class:`EpisodeBatch` steps N environments in three phases: every environment retrieves its
evidence and builds its prompt, the scorer scores the N prompts in one call, every environment
computes its reward. Resets go the same way (their p_0 prompts scored together). The SB3 vector
environment (:mod:`coral.envs.vector`) and policy evaluation (``coral.policies.evaluate``) both
step their episodes through this class.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv, score_prompts
from coral.errors import CoralError

#: What a step returns for one environment: (observation, reward, terminated, truncated, info).
StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


class EpisodeBatch:
    """N :class:`CollabRetrievalEnv` instances that share one scorer, reset and stepped together.

    :param envs: the environments (bare ones: wrappers' own steps would be bypassed).
    """

    #: Compute all environments' query distances in one product (True), or let each environment's
    #: step compute its own (False: the path before, which experiments/bench/speed.py measures).
    batched_distances: bool = True

    def __init__(self, envs: Sequence[CollabRetrievalEnv]) -> None:
        self.envs = list(envs)
        if not self.envs or not all(isinstance(e, CollabRetrievalEnv) for e in self.envs):
            raise CoralError("an episode batch needs one or more CollabRetrievalEnv instances")
        self.scorer = self.envs[0].scorer
        if any(e.scorer is not self.scorer for e in self.envs):
            raise CoralError("the environments of an episode batch must share one scorer object")
        # A step's N prompts in one forward pass (a scorer's own token cap still splits long ones):
        # per prompt, 16-32 in a pass cost 25-30% less than 8 (experiments/notes/speed.md).
        if isinstance(getattr(self.scorer, "batch_size", None), int):
            self.scorer.batch_size = max(self.scorer.batch_size, len(self.envs))

    def __len__(self) -> int:
        return len(self.envs)

    def reset(
        self, indices: Sequence[int], seeds: Sequence[int | None] | None = None,
        options: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Reset the environments at ``indices``, scoring their p_0 prompts in one call.

        :param indices: which environments.
        :param seeds: a seed per environment (None: continue its generator).
        :param options: reset options per environment, e.g. ``{"index": j}`` for split row j.
        :returns: (observation, info) per environment, in the order of ``indices``.
        """
        seeds = list(seeds) if seeds is not None else [None] * len(indices)
        options = list(options) if options is not None else [None] * len(indices)
        prompts = [
            self.envs[j].begin_reset(seed=s, options=o or None)
            for j, s, o in zip(indices, seeds, options, strict=False)
        ]
        return [self.envs[j].end_reset(p) for j, p in zip(indices, score_prompts(self.scorer, prompts), strict=False)]  # type: ignore[arg-type]

    def step(self, indices: Sequence[int], actions: Sequence[Any]) -> list[StepResult]:
        """One retrieval step of the environments at ``indices``, their new prompts scored in one call.

        :param indices: which environments (each must be in an episode).
        :param actions: one action per environment, aligned with ``indices``.
        :returns: the step results, in the order of ``indices``.
        """
        distances = self._query_distances(indices, actions)
        prompts = [
            self.envs[j].begin_step(a, distances=d) for j, a, d in zip(indices, actions, distances, strict=False)
        ]
        return [self.envs[j].end_step(p) for j, p in zip(indices, score_prompts(self.scorer, prompts), strict=False)]

    def _query_distances(self, indices: Sequence[int], actions: Sequence[Any]) -> list[np.ndarray | None]:
        """Each environment's query-to-index distances, from one matrix product for all of them.

        One environment's distances read the whole index (tens of MB) for one query; with many
        environments that pass over memory was ~10% of a step. None for an environment that does
        not match queries to observed interactions (its step computes what it needs).
        """
        envs = [self.envs[j] for j in indices]
        use = [env.active and env.matches_observed_queries and env.index is envs[0].index for env in envs]
        if not self.batched_distances or sum(use) < 2:
            return [None] * len(envs)
        queries = np.stack([env.query_vector(a) for env, a, u in zip(envs, actions, use, strict=False) if u])
        rows = iter(envs[0].index.distances_batch(queries))
        return [next(rows) if u else None for u in use]

    def active(self) -> list[int]:
        """Indices of the environments whose episode has not ended."""
        return [j for j, env in enumerate(self.envs) if env.active]
