"""An SB3 vector environment over retrieval episodes, stepped together by :class:`~coral.envs.batch.EpisodeBatch`."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from coral.envs.batch import EpisodeBatch
from coral.envs.collab_retrieval import CollabRetrievalEnv, EnvConfig, make_env
from coral.envs.resources import EnvResources


class BatchedRetrievalVecEnv(DummyVecEnv):
    """An SB3 VecEnv over :class:`CollabRetrievalEnv` instances sharing one scorer: one scorer call per step.

    The factories must return bare environments (no wrappers: their steps would be bypassed);
    wrap the vector in ``VecMonitor`` for episode statistics (:func:`make_batched_vec_env` does).

    :param env_fns: one factory per environment.
    """

    def __init__(self, env_fns: list[Callable[[], CollabRetrievalEnv]]) -> None:
        super().__init__(env_fns)
        self.batch = EpisodeBatch([env.unwrapped for env in self.envs])  # type: ignore[misc]
        self.retrieval_envs: list[CollabRetrievalEnv] = self.batch.envs
        self.scorer = self.batch.scorer

    def _reset_envs(self, indices: list[int], seeds: list[int | None], options: list[Any]) -> None:
        for j, (obs, info) in zip(indices, self.batch.reset(indices, seeds, options), strict=False):
            self.reset_infos[j] = info
            self._save_obs(j, obs)

    def reset(self) -> np.ndarray:
        n = self.num_envs
        self._reset_envs(list(range(n)), [self._seeds[j] for j in range(n)], [self._options[j] for j in range(n)])
        self._reset_seeds()
        self._reset_options()
        return self._obs_from_buf()

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        done_idx: list[int] = []
        results = self.batch.step(range(self.num_envs), self.actions)
        for j, (obs, reward, terminated, truncated, info) in enumerate(results):
            self.buf_rews[j] = reward
            self.buf_dones[j] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            self.buf_infos[j] = info
            if self.buf_dones[j]:
                info["terminal_observation"] = obs
                done_idx.append(j)
            self._save_obs(j, obs)
        if done_idx:
            self._reset_envs(done_idx, [None] * len(done_idx), [None] * len(done_idx))
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), [dict(i) for i in self.buf_infos]


def make_batched_vec_env(
    config: EnvConfig | Mapping[str, Any], n_envs: int = 1, seed: int | None = None,
    resources: EnvResources | None = None,
) -> VecMonitor:
    """N environments of one config, batched and monitored (episode return/length in ``info["episode"]``).

    :param config: the environments' config (its named resources are loaded once and shared).
    :param n_envs: number of parallel episodes.
    :param seed: environment j's episodes are drawn with seed + j.
    :param resources: objects replacing the config's names.
    """
    cfg = EnvConfig.from_any(config)
    first = make_env(cfg, resources=resources)
    shared = EnvResources(
        dataset=first.dataset, scorer=first.scorer, embeddings=first.embeddings, prompt_builder=first.prompt_builder
    )
    fns: list[Callable[[], CollabRetrievalEnv]] = [lambda: first] + [
        lambda: make_env(cfg, resources=shared) for _ in range(n_envs - 1)
    ]
    vec = BatchedRetrievalVecEnv(fns)
    if seed is not None:
        vec.seed(seed)
    return VecMonitor(vec)
