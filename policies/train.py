"""``coral train``: fit a retrieval policy with Stable-Baselines3, with logging, checkpoints and resume.

(``engine="rllib"`` runs are handed to :mod:`coral.policies.rllib.train`.)

The run directory's layout is described in :mod:`coral.policies.run_dir`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from coral.envs import EnvResources
from coral.envs.resources import resolve_dataset
from coral.errors import CoralError
from coral.io import atomic_write_json
from coral.policies.callbacks import (
    PeriodicCallback,
    RetrievalMetricsCallback,
    cache_rates,
    save_aside,
    save_checkpoint,
)
from coral.policies.config import TrainConfig
from coral.policies.run_dir import (
    CONFIG_FILE,
    MODEL_FILE,
    SUMMARY_FILE,
    VECNORM_FILE,
    checkpoint_state,
    log_formats,
    new_log_segment,
    read_totals,
    warn_on_scorer_change,
    write_totals,
)
from coral.policies.sb3 import SB3Policy, algo_class, build_model
from coral.policies.validation import VALIDATION_FILE, ValidationLog


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def _resources(config: TrainConfig, resources: EnvResources) -> EnvResources:
    """The run's dataset loaded (and refused if a split it learns or validates on has one class)."""
    dataset = resources.dataset if resources.dataset is not None else resolve_dataset(config.env.data)
    dataset.require_both_classes("train", *(("valid",) if config.val_every and config.val_size else ()))
    return dataclasses.replace(resources, dataset=dataset)


def _model(config: TrainConfig, vec: Any, state: dict[str, Any] | None, out: Path) -> Any:
    """A new SB3 model, or the checkpointed one (with DDPG's replay buffer) when resuming."""
    ckpt_dir = out / "checkpoints"
    if not state:
        return build_model(
            config.algo, vec, seed=config.seed, learning_rate=config.learning_rate, n_steps=config.n_steps,
            batch_size=config.batch_size, n_epochs=config.n_epochs, log_std_init=config.log_std_init,
            candidate_features=config.env.observe == "candidates",
        )
    model = algo_class(config.algo).load(ckpt_dir / state["model"], env=vec, seed=config.seed)
    if "replay_buffer" in state:
        model.load_replay_buffer(ckpt_dir / state["replay_buffer"])
    return model


def _normalized(config: TrainConfig, vec: Any, state: dict[str, Any] | None, out: Path) -> Any:
    """``vec`` behind SB3's VecNormalize (observations only; rewards are the drop in |p - y| as they
    are), with the checkpoint's statistics when resuming; ``vec`` itself without ``normalize_obs``."""
    if not config.normalize_obs:
        return vec
    from stable_baselines3.common.vec_env import VecNormalize

    if state and state.get("vecnormalize"):
        normalized = VecNormalize.load(str(out / "checkpoints" / state["vecnormalize"]), vec)
        normalized.training = True
        return normalized
    return VecNormalize(vec, norm_obs=True, norm_reward=False)


def _callbacks(config: TrainConfig, model: Any, vec: Any, out: Path, totals: "_Totals") -> list[Any]:
    """coral/ metrics, the periodic validation on tuning rows and the periodic checkpoints (with the totals so far)."""
    retrieval_envs = vec.venv.retrieval_envs
    first = retrieval_envs[0]
    scorer = first.scorer
    fingerprint = getattr(scorer, "fingerprint", "")
    shared = EnvResources(
        dataset=first.dataset, scorer=scorer, embeddings=first.embeddings, prompt_builder=first.prompt_builder
    )
    config_dict = config.to_dict()
    validation = ValidationLog(config, shared, out / VALIDATION_FILE)

    def validate(timesteps: int) -> None:
        for key, value in validation.run(
            SB3Policy(model, obs_normalizer=model.get_vec_normalize_env()), timesteps
        ).items():
            model.logger.record(f"coral/{key}", value)

    def checkpoint(_: int) -> None:
        totals.write(out, int(model.num_timesteps))
        save_checkpoint(model, out / "checkpoints", config_dict, fingerprint)

    return [
        RetrievalMetricsCallback(lambda: sum(e.prompts_scored for e in retrieval_envs), scorer),
        PeriodicCallback(config.val_every if config.val_size > 0 else 0, validate, at_start=True),
        PeriodicCallback(config.checkpoint_every, checkpoint),
    ]


class _Totals:
    """Training seconds and prompts scored over every segment of a run: those of the segments before
    this one (from the checkpoint resumed) plus this segment's so far.

    :param previous: the totals at the checkpoint resumed ({} for a fresh run).
    :param retrieval_envs: this segment's environments (they count the prompts they scored).
    """

    def __init__(self, previous: dict[str, Any], retrieval_envs: list[Any]) -> None:
        self.seconds = float(previous.get("train_seconds", 0.0))
        self.prompts = int(previous.get("prompts_scored", 0))
        self.retrieval_envs = retrieval_envs
        self.started = time.perf_counter()

    def now(self) -> tuple[float, int]:
        """(train seconds, prompts scored) of all segments up to now."""
        return self.seconds + time.perf_counter() - self.started, self.prompts + sum(
            e.prompts_scored for e in self.retrieval_envs
        )

    def write(self, out: Path, timesteps: int) -> None:
        write_totals(out, timesteps, *self.now())


def _learn(config: TrainConfig, model: Any, callbacks: list[Any], resume: bool) -> None:
    """Train up to ``config.timesteps`` in all."""
    remaining = config.timesteps - int(model.num_timesteps)
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=callbacks,
            # PPO: a log line per rollout; DDPG: per 4 episodes (SB3's off-policy default), not per episode.
            log_interval=4 if config.algo == "ddpg" else 1,
            reset_num_timesteps=not resume,
            progress_bar=config.progress,
        )


def _finish(config: TrainConfig, model: Any, vec: Any, out: Path, totals: _Totals, segment: int) -> None:
    """The final checkpoint, ``model.zip`` and ``train_summary.json`` (totals over every segment)."""
    retrieval_envs = vec.venv.retrieval_envs
    scorer = retrieval_envs[0].scorer
    seconds, prompts = totals.now()
    totals.write(out, int(model.num_timesteps))
    save_checkpoint(model, out / "checkpoints", config.to_dict(), getattr(scorer, "fingerprint", ""))
    save_aside(model.save, out / MODEL_FILE)
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        save_aside(normalizer.save, out / VECNORM_FILE)
    summary = {
        "timesteps": int(model.num_timesteps), "train_seconds": seconds, "prompts_scored": prompts,
        "scorer": getattr(scorer, "fingerprint", ""), "segments": segment + 1, **_update_count(model),
        **{f"scorer_{k}": v for k, v in cache_rates(scorer.stats()).items()},
    }
    atomic_write_json(out / SUMMARY_FILE, summary)


def _update_count(model: Any) -> dict[str, int]:
    """PPO's policy updates (rollouts collected and optimised: ``n_epochs`` passes each), or DDPG's gradient steps."""
    if hasattr(model, "n_steps"):  # PPO, MaskablePPO: one update per rollout of n_steps x n_envs
        return {"policy_updates": int(model.num_timesteps // (model.n_steps * model.n_envs))}
    return {"gradient_steps": int(getattr(model, "_n_updates", 0))}


def _require_more_timesteps(out: Path, config: TrainConfig, state: dict[str, Any] | None) -> None:
    """On resume, refuse a total that leaves nothing to train (before anything in the run is rewritten).

    A run killed after its last checkpoint but before ``model.zip`` resumes with the same total
    (it only has to finish).

    :raises CoralError: when ``--timesteps`` is below the checkpoint's count, or equal to that of a finished run.
    """
    if not state:
        return
    done = int(state["timesteps"])
    if config.timesteps < done or (config.timesteps == done and (out / MODEL_FILE).is_file()):
        raise CoralError(
            f"{out}: the run has trained {done} timesteps; --timesteps is the total, so give more than {done} to train "
            f"further (got {config.timesteps})"
        )


def train(config: TrainConfig, resources: EnvResources | None = None, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) a retrieval policy; returns the run directory.

    Everything that can fail on bad input (the dataset, the scorer, the warm start) is loaded
    before the run directory is written to.

    :param config: the run's settings (on resume: the run's saved config, possibly with more timesteps).
    :param resources: objects replacing the config's names (a loaded dataset, a scorer, ...).
    :param resume: continue from the run directory's last checkpoint: model, DDPG replay buffer
        and timestep count.
    :raises CoralError: when resuming without a checkpoint, or starting over a run that has one.
    """
    if config.engine == "rllib":
        from coral.policies.rllib.train import train_rllib

        return train_rllib(config, resources, resume=resume)
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed

    from coral.envs.vector import make_batched_vec_env

    out = Path(config.out)
    state = checkpoint_state(out, resume)
    _require_more_timesteps(out, config, state)
    resources = _resources(config, resources or EnvResources())
    _set_threads(config.threads)
    set_random_seed(config.seed)
    done_before = int(state["timesteps"]) if state else 0
    # A resumed run draws fresh episodes rather than replaying the first ones.
    vec = make_batched_vec_env(
        config.env_config("train"), n_envs=config.n_envs, seed=config.seed + 7919 * done_before, resources=resources
    )
    vec = _normalized(config, vec, state, out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_FILE)
    model = _model(config, vec, state, out)
    segment, log_dir = new_log_segment(out)
    model.set_logger(configure(str(log_dir), log_formats()))
    warn_on_scorer_change(out, state, getattr(vec.venv.scorer, "fingerprint", ""))
    totals = _Totals(read_totals(out, state), vec.venv.retrieval_envs)
    _learn(config, model, _callbacks(config, model, vec, out, totals), resume)
    _finish(config, model, vec, out, totals, segment)
    vec.close()
    return out


__all__ = ["TrainConfig", "train"]
