"""SB3 callbacks of ``coral train``: coral/ metrics, periodic validation AUC, atomic checkpoints."""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from coral.io import atomic_write_json


def cache_rates(stats: dict[str, float]) -> dict[str, float]:
    """Hit rates from a scorer's ``stats()``: the persistent score cache and the KV-prefix reuse."""
    rates = {}
    hits, misses = stats.get("cache_hits"), stats.get("cache_misses")
    if hits is not None and misses is not None and hits + misses > 0:
        rates["cache_hit_rate"] = float(hits) / float(hits + misses)
    reused, computed = stats.get("tokens_reused"), stats.get("tokens_computed")
    if reused is not None and computed is not None and reused + computed > 0:
        rates["kv_reuse_rate"] = float(reused) / float(reused + computed)
    return rates


class RetrievalMetricsCallback(BaseCallback):
    """Records ``coral/reward`` (mean step reward), ``coral/abs_error`` (mean final |p_T - y|),
    ``coral/llm_calls`` (prompts scored for training) and the scorer's cache rates.

    Means run over the last ``window`` steps and episodes, like SB3's ``rollout/`` values.

    :param count_prompts: returns the number of prompts the training environments have had scored.
    :param scorer: the scorer, for its cache statistics.
    :param window: steps/episodes in the running means.
    """

    def __init__(self, count_prompts: Callable[[], int], scorer: Any, window: int = 100) -> None:
        super().__init__()
        self.count_prompts = count_prompts
        self.scorer = scorer
        self.step_rewards: deque[float] = deque(maxlen=10 * window)
        self.final_errors: deque[float] = deque(maxlen=window)

    def _on_step(self) -> bool:
        self.step_rewards.extend(float(r) for r in self.locals["rewards"])
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=False):
            if done:
                self.final_errors.append(float(info["abs_error"]))
        return True

    def _on_rollout_end(self) -> None:
        if self.step_rewards:
            self.logger.record("coral/reward", float(np.mean(self.step_rewards)))
        if self.final_errors:
            self.logger.record("coral/abs_error", float(np.mean(self.final_errors)))
        self.logger.record("coral/llm_calls", int(self.count_prompts()))
        for name, value in cache_rates(self.scorer.stats()).items():
            self.logger.record(f"coral/{name}", value)


class PeriodicCallback(BaseCallback):
    """Calls ``action(num_timesteps)`` whenever ``every`` more timesteps have passed.

    :param every: period in timesteps (0 disables).
    :param action: what to do; gets the current timestep count.
    :param at_start: also call it before the first step of a run that starts at timestep 0
        (the untrained policy's point of a curve).
    """

    def __init__(self, every: int, action: Callable[[int], None], at_start: bool = False) -> None:
        super().__init__()
        self.every = int(every)
        self.action = action
        self.at_start = at_start
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps - self.num_timesteps % self.every if self.every > 0 else 0
        if self.at_start and self.every > 0 and self.num_timesteps == 0:
            self.action(0)

    def _on_step(self) -> bool:
        if self.every > 0 and self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps - self.num_timesteps % self.every
            self.action(self.num_timesteps)
        return True


LATEST = "latest.json"


def save_aside(save: Callable[[Path], Any], path: Path) -> Path:
    """``save(tmp)`` into a hidden file beside ``path``, then rename it to ``path`` (a killed save leaves no half file).

    :param save: writes its argument's path (``model.save``, ``model.save_replay_buffer``, ``VecNormalize.save``).
    :param path: the final file.
    """
    tmp = path.with_name(f".tmp-{path.name}")
    save(tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(model: Any, directory: Path, config: dict[str, Any], scorer_fingerprint: str = "") -> Path:
    """Save model (and DDPG's replay buffer, and the VecNormalize statistics) as ``model_<t>.zip``
    (+ ``replay_buffer_<t>.pkl``, ``vecnormalize_<t>.pkl``), then ``latest.json``.

    Files are written aside and renamed, ``latest.json`` last, so a run killed mid-save resumes
    from the previous complete checkpoint.

    :param model: the SB3 model.
    :param directory: the run's checkpoint folder.
    :param config: the run's TrainConfig as a dict (stored with the checkpoint).
    :param scorer_fingerprint: identity of the scorer that produced the rewards so far.
    """
    directory.mkdir(parents=True, exist_ok=True)
    t = int(model.num_timesteps)
    model_path = save_aside(model.save, directory / f"model_{t}.zip")
    state: dict[str, Any] = {"timesteps": t, "model": model_path.name, "config": config, "scorer": scorer_fingerprint}
    if hasattr(model, "save_replay_buffer"):
        state["replay_buffer"] = save_aside(model.save_replay_buffer, directory / f"replay_buffer_{t}.pkl").name
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:  # the observation statistics belong to the policy
        state["vecnormalize"] = save_aside(normalizer.save, directory / f"vecnormalize_{t}.pkl").name
    atomic_write_json(directory / LATEST, state)
    return model_path


def latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The state written by the last complete :func:`save_checkpoint` (None if there is none)."""
    path = directory / LATEST
    return json.loads(path.read_text()) if path.is_file() else None
