"""coral's training metrics under RLlib, under the SB3 path's CSV column names.

Env runners log raw counts with :class:`CoralMetricsCallback`; the driver turns each
``algo.train()`` result into one row of SB3-named values (:func:`result_row`) and writes it with
SB3's own logger, so ``progress.csv`` (and TensorBoard, where installed) read like those of
``coral train --engine sb3``. Semantics that differ are listed in experiments/notes/rllib.md.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from coral.policies.callbacks import cache_rates

#: Scorer counters (``Scorer.stats()``), summed over runners as deltas per sample call.
SCORER_COUNTERS = ("cache_hits", "cache_misses", "tokens_reused", "tokens_computed")

#: RLlib result keys (flattened with "/") -> SB3 column names. No train/approx_kl: RLlib computes
#: its KL only with use_kl_loss, which SB3's PPO (and so ppo_config) does not use.
RESULT_COLUMNS = {
    "env_runners/episode_return_mean": "rollout/ep_rew_mean", "env_runners/episode_len_mean": "rollout/ep_len_mean",
    "num_env_steps_sampled_lifetime": "time/total_timesteps", "training_iteration": "time/iterations",
    "time_since_restore": "time/time_elapsed", "learners/default_policy/total_loss": "train/loss",
    "learners/default_policy/policy_loss": "train/policy_gradient_loss",
    "learners/default_policy/vf_loss": "train/value_loss",
    "learners/default_policy/vf_explained_var": "train/explained_variance",
    "learners/default_policy/default_optimizer_learning_rate": "train/learning_rate",
}


def _retrieval_envs(env_runner: Any) -> list[Any]:
    """The CollabRetrievalEnv objects inside an env runner's vector environment."""
    vector = getattr(env_runner, "env", None)
    sub = getattr(getattr(vector, "unwrapped", vector), "envs", None) or []
    return [e.unwrapped for e in sub]


def scorer_fingerprint(env_runner: Any) -> str | None:
    """The fingerprint of the scorer an env runner's environments use (None: the runner has none)."""
    envs = _retrieval_envs(env_runner)
    return getattr(envs[0].scorer, "fingerprint", "") if envs else None


class CoralMetricsCallback(RLlibCallback):
    """Logs, per env runner, under ``coral/``: the final |p_T - y| of each episode, its step
    rewards, the prompts scored and the scorer's cache counters."""

    def __init__(self) -> None:
        super().__init__()
        self._last_prompts = 0
        self._last_counters: dict[str, float] = {}

    def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **_: Any) -> None:
        infos = episode.get_infos()
        rewards = np.asarray(episode.get_rewards(), dtype=np.float64)
        if infos and "abs_error" in infos[-1]:
            metrics_logger.log_value("coral/abs_error", float(infos[-1]["abs_error"]), reduce="mean", window=100)
        metrics_logger.log_value("coral/reward_sum", float(rewards.sum()), reduce="sum")
        metrics_logger.log_value("coral/reward_steps", float(len(rewards)), reduce="sum")

    def on_sample_end(self, *, env_runner: Any = None, metrics_logger: Any = None, **_: Any) -> None:
        envs = _retrieval_envs(env_runner)
        # Counters only grow: log what this sample call added, and let RLlib sum over runners.
        prompts = sum(int(getattr(e, "prompts_scored", 0)) for e in envs)
        metrics_logger.log_value("coral/llm_calls", float(prompts - self._last_prompts), reduce="lifetime_sum")
        self._last_prompts = prompts
        if envs:
            stats = envs[0].scorer.stats()  # one scorer object per runner process (coral.envs.resources)
            for name in SCORER_COUNTERS:
                if name in stats:
                    delta = float(stats[name]) - self._last_counters.get(name, 0.0)
                    self._last_counters[name] = float(stats[name])
                    metrics_logger.log_value(f"coral/scorer_{name}", delta, reduce="lifetime_sum")


def flatten(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested RLlib result dict as ``{"a/b/c": value}``."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def result_row(result: Mapping[str, Any], steps_at_start: int = 0) -> dict[str, float]:
    """One CSV row with SB3's column names from an ``algo.train()`` result.

    :param result: the result dict.
    :param steps_at_start: env steps already done when this segment (start or resume) began,
        so that ``time/fps`` counts this segment's steps over its time, as SB3 does.
    """
    flat = flatten(result)
    row = {column: float(flat[key]) for key, column in RESULT_COLUMNS.items() if _finite(flat.get(key))}
    if _finite(flat.get("learners/default_policy/entropy")):
        row["train/entropy_loss"] = -float(flat["learners/default_policy/entropy"])  # SB3 logs -entropy
    elapsed = row.get("time/time_elapsed", 0.0)
    if elapsed > 0 and "time/total_timesteps" in row:
        row["time/fps"] = float(int((row["time/total_timesteps"] - steps_at_start) / elapsed))
    coral = {k.removeprefix("env_runners/coral/"): v for k, v in flat.items() if k.startswith("env_runners/coral/")}
    if coral.get("reward_steps"):
        row["coral/reward"] = float(coral["reward_sum"]) / float(coral["reward_steps"])
    if _finite(coral.get("abs_error")):
        row["coral/abs_error"] = float(coral["abs_error"])
    if _finite(coral.get("llm_calls")):
        row["coral/llm_calls"] = float(coral["llm_calls"])
    counters = {
        name: float(coral[f"scorer_{name}"]) for name in SCORER_COUNTERS if _finite(coral.get(f"scorer_{name}"))
    }
    row.update({f"coral/{k}": v for k, v in cache_rates(counters).items()})
    return row
