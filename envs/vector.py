"""Many retrieval episodes at once, with one scorer call per step for all of them.

The LLM dominates the cost of a step, and it scores a batch of prompts in one forward pass, so
:class:`BatchedRetrievalVecEnv` (an SB3 ``VecEnv``, usable by PPO, DDPG and MaskablePPO) steps N
environments in three phases: every environment retrieves its evidence and builds its prompt,
the scorer scores the N prompts in one call, every environment computes its reward. Episodes
that end are reset the same way (their p_0 prompts scored together).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from coral.errors import CoralError

from envs.collab_retrieval import CollabRetrievalEnv, EnvConfig, make_env, score_prompts


class BatchedRetrievalVecEnv(DummyVecEnv):
    """An SB3 VecEnv over :class:`CollabRetrievalEnv` instances sharing one scorer.

    The factories must return bare environments (no wrappers: their steps would be bypassed);
    wrap the vector in ``VecMonitor`` for episode statistics (:func:`make_batched_vec_env` does).

    :param env_fns: one factory per environment.
    """

    def __init__(self, env_fns: list[Callable[[], CollabRetrievalEnv]]) -> None:
        super().__init__(env_fns)
        self.retrieval_envs: list[CollabRetrievalEnv] = [env.unwrapped for env in self.envs]  # type: ignore[misc]
        if not all(isinstance(e, CollabRetrievalEnv) for e in self.retrieval_envs):
            raise CoralError("BatchedRetrievalVecEnv needs CollabRetrievalEnv instances")
        self.scorer = self.retrieval_envs[0].scorer
        if any(e.scorer is not self.scorer for e in self.retrieval_envs):
            raise CoralError("the environments of a BatchedRetrievalVecEnv must share one scorer object")

    def _reset_envs(self, indices: list[int], seeds: list[int | None], options: list[Any]) -> None:
        prompts = [self.retrieval_envs[j].begin_reset(seed=s, options=o or None) for j, s, o in zip(indices, seeds, options)]
        for j, p in zip(indices, score_prompts(self.scorer, prompts)):
            obs, self.reset_infos[j] = self.retrieval_envs[j].end_reset(p)  # type: ignore[arg-type]
            self._save_obs(j, obs)

    def reset(self) -> np.ndarray:
        n = self.num_envs
        self._reset_envs(list(range(n)), [self._seeds[j] for j in range(n)], [self._options[j] for j in range(n)])
        self._reset_seeds()
        self._reset_options()
        return self._obs_from_buf()

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        envs = self.retrieval_envs
        prompts = [env.begin_step(self.actions[j]) for j, env in enumerate(envs)]
        done_idx: list[int] = []
        for j, p in enumerate(score_prompts(self.scorer, prompts)):
            obs, reward, terminated, truncated, info = envs[j].end_step(p)
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


def make_batched_vec_env(config: EnvConfig | Mapping[str, Any], n_envs: int = 1, seed: int | None = None) -> VecMonitor:
    """N environments of one config, batched and monitored (episode return/length in ``info["episode"]``).

    :param config: the environments' config (its named resources are loaded once and shared).
    :param n_envs: number of parallel episodes.
    :param seed: environment j's episodes are drawn with seed + j.
    """
    cfg = EnvConfig.from_any(config)
    first = make_env(cfg)
    shared = EnvConfig.from_any(cfg, dataset=first.dataset, scorer=first.scorer, prompt_builder=first.prompt_builder)
    fns: list[Callable[[], CollabRetrievalEnv]] = [lambda: first] + [lambda: make_env(shared) for _ in range(n_envs - 1)]
    vec = BatchedRetrievalVecEnv(fns)
    if seed is not None:
        vec.seed(seed)
    return VecMonitor(vec)
