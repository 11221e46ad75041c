"""The one rule for the environment a fixed (untrained) policy is evaluated in, shared by
``coral evaluate --policy`` and ``coral run``'s fixed-policy stages."""

from __future__ import annotations

import dataclasses

from coral.envs import EnvConfig
from coral.policies.base import RetrievalPolicy


def fixed_policy_env(env: EnvConfig, policy: RetrievalPolicy, seed: int) -> EnvConfig:
    """``env`` as a fixed policy is evaluated in: its warm start if the policy searches embeddings
    (greedy, label-aware), else ``none`` (random tables: random retrieval ignores them), and its
    embeddings seeded by ``seed``, so that a fixed policy searches the same warm-start tables as
    a policy trained with that seed.

    :param env: the environment (data, scorer, warm start, K).
    :param policy: the fixed policy evaluated.
    :param seed: the run's (or the command's) seed.
    """
    warm = env.warm.warm_start if policy.needs_embeddings else "none"
    return dataclasses.replace(env, warm=dataclasses.replace(env.warm, warm_start=warm), embedding_seed=seed)
