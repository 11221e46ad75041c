"""Stable-Baselines3 algorithms for retrieval: construction with the project's settings, and a policy wrapper."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv
from coral.errors import CoralError
from coral.policies.config import ALGOS

#: Learning rates of ``learning_rate=None``. PPO's Gaussian over 2 x 128 query dimensions sums its
#: KL over all of them: at SB3's 3e-4 one update moved the policy by KL 0.6-1 even with 4 epochs
#: over 4 minibatches; 1e-4 keeps it near 0.03 and the validation return still rises
#: (experiments/notes/env-policies.md, issue 28). DDPG: the paper's 1e-3.
DEFAULT_LEARNING_RATES = {"ppo": 1e-4, "maskable_ppo": 3e-4, "ddpg": 1e-3}


def algo_class(algo: str) -> type:
    """The SB3 class of ``algo`` (ppo, ddpg, maskable_ppo)."""
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "ddpg":
        from stable_baselines3 import DDPG

        return DDPG
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    raise CoralError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")


def build_model(
    algo: str, vec_env: Any, *, seed: int, learning_rate: float | None, n_steps: int, batch_size: int,
    n_epochs: int = 10, log_std_init: float = 0.0, candidate_features: bool = False,
) -> Any:
    """A new SB3 model for ``vec_env``.

    PPO and MaskablePPO: SB3 defaults except rollout length ``n_steps`` per environment,
    ``batch_size``, ``n_epochs``, the learning rate and (PPO) ``log_std_init``. DDPG: the paper's settings (replay
    buffer 1000, batch 16, learning_starts 10, Adam lr 1e-3, Ornstein-Uhlenbeck action noise
    sigma 0.1); ``batch_size``/``n_steps``/``n_epochs`` do not apply. Both start at the zero
    action, greedy retrieval around the target: PPO's action head is initialised with gain 0.01
    by SB3, DDPG's actor output is scaled down here (:func:`start_at_zero_action`).

    :param algo: ppo, ddpg or maskable_ppo.
    :param vec_env: the SB3 VecEnv to train on.
    :param seed: seed of the networks and the sampling.
    :param learning_rate: None = the algorithm's default (:data:`DEFAULT_LEARNING_RATES`).
    :param n_steps: PPO rollout steps per environment.
    :param batch_size: PPO minibatch size.
    :param n_epochs: PPO passes over each rollout.
    :param log_std_init: PPO's initial log standard deviation (query actions).
    :param candidate_features: MaskablePPO on ``CoRAL/CandidateRetrieval-v0`` observations: score
        every candidate with one shared network (:class:`~coral.policies.candidate_policy.CandidatePolicy`).
    """
    cls = algo_class(algo)
    if algo == "ddpg":
        from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise, VectorizedActionNoise

        dim = int(np.prod(vec_env.action_space.shape))
        noise = OrnsteinUhlenbeckActionNoise(mean=np.zeros(dim), sigma=0.1 * np.ones(dim))
        if vec_env.num_envs > 1:
            noise = VectorizedActionNoise(noise, vec_env.num_envs)
        model = cls(
            "MlpPolicy", vec_env, buffer_size=1000, batch_size=16, learning_starts=10,
            learning_rate=DEFAULT_LEARNING_RATES[algo] if learning_rate is None else learning_rate, action_noise=noise,
            seed=seed, verbose=0,
        )
        start_at_zero_action(model)
        return model
    policy_kwargs = {"log_std_init": log_std_init} if algo == "ppo" else {}
    policy: Any = "MlpPolicy"
    if candidate_features:
        from coral.policies.candidate_policy import CandidatePolicy

        policy = CandidatePolicy
    return cls(
        policy, vec_env, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs,
        learning_rate=DEFAULT_LEARNING_RATES[algo] if learning_rate is None else learning_rate,
        policy_kwargs=policy_kwargs, seed=seed, verbose=0,
    )


def start_at_zero_action(model: Any, gain: float = 0.01) -> None:
    """Scale a DDPG actor's output layer (and its target's) by ``gain``, so that its first actions
    are near 0: greedy retrieval around the target, as PPO's start. With PyTorch's default
    initialisation the first deterministic query lies a random |a| ~ 0.1-0.3 per dimension away
    from the target, which in 2 x 128 dimensions is farther than most of its neighbours."""
    import torch

    with torch.no_grad():
        for actor in (model.actor, model.actor_target):
            last = [m for m in actor.mu if isinstance(m, torch.nn.Linear)][-1]
            last.weight.mul_(gain)
            last.bias.mul_(gain)


class SB3Policy:
    """A trained SB3 model as a :class:`~policies.base.RetrievalPolicy` (deterministic by default).

    :param model: a PPO, DDPG or MaskablePPO model.
    :param name: name in result rows.
    :param deterministic: take the mean/argmax action instead of sampling.
    :param obs_normalizer: the VecNormalize the policy was trained behind (its ``normalize_obs``
        is applied to every observation; None: observations as the environment gives them).
    """

    needs_embeddings = True

    def __init__(
        self, model: Any, name: str = "sb3", deterministic: bool = True, obs_normalizer: Any | None = None
    ) -> None:
        self.model = model
        self.name = name
        self.deterministic = deterministic
        self.obs_normalizer = obs_normalizer
        self._masked = type(model).__name__ == "MaskablePPO"

    def act(self, observations: np.ndarray, envs: Sequence[CollabRetrievalEnv]) -> np.ndarray:
        if self.obs_normalizer is not None:
            observations = self.obs_normalizer.normalize_obs(observations)
        if self._masked:
            masks = np.stack([env.action_masks() for env in envs])
            actions, _ = self.model.predict(observations, deterministic=self.deterministic, action_masks=masks)
        else:
            actions, _ = self.model.predict(observations, deterministic=self.deterministic)
        return np.asarray(actions)
