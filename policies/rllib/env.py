"""The retrieval environment for RLlib, registered with ``ray.tune.registry.register_env``.

RLlib builds environments on its env runners (separate processes) from a name and an
``EnvContext``: a dict of :class:`~coral.envs.EnvConfig` keys. The names in it (dataset, scorer
spec, warm start) are resolved once per runner process by :mod:`coral.envs.resources`, so
objects never travel to the runners; with ``scorer="openai:URL#MODEL"`` every runner shares one
served scorer instead of loading the LLM itself.
"""

from __future__ import annotations

from typing import Any, Mapping

from coral.config import to_dict
from coral.envs import ENV_ID, CollabRetrievalEnv, EnvConfig, make_env


def rllib_env_creator(env_context: Mapping[str, Any]) -> CollabRetrievalEnv:
    """Build the environment from RLlib's ``EnvContext``.

    :param env_context: :class:`EnvConfig` keys (RLlib's worker_index/vector_index are attributes, not keys).
    """
    return make_env(dict(env_context))


def register_rllib_env() -> str:
    """Register the environment under its Gymnasium id in Tune's registry (idempotent); returns the id.

    The Gymnasium registry is not used: RLlib's runners look names up in Tune's registry, which
    travels with the Algorithm's config to every runner process.
    """
    from ray.tune.registry import register_env

    register_env(ENV_ID, rllib_env_creator)
    return ENV_ID


def env_context(config: EnvConfig) -> dict[str, Any]:
    """``config`` as the dict of plain values RLlib ships to its env runners (names, not objects)."""
    return to_dict(config)
