"""``coral train --engine rllib``: RLlib PPO (new API stack) with the SB3 path's run directory.

Same environment (:meth:`TrainConfig.env_config`), same PPO hyper-parameters as SB3's defaults
(:func:`ppo_config`), same run directory (:mod:`coral.policies.run_dir`): ``config.json``,
``checkpoints/algo_<t>/`` + ``latest.json``, ``logs/segment<k>/progress.csv`` with SB3's
columns, ``rllib_model/`` (what ``coral evaluate`` loads) and ``train_summary.json``.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from coral.envs import EnvResources
from coral.envs.resources import resolve_dataset
from coral.errors import CoralError
from coral.io import atomic_write_json
from coral.policies.callbacks import save_aside
from coral.policies.config import TrainConfig
from coral.policies.rllib import require_rllib
from coral.policies.run_dir import (
    CONFIG_FILE,
    RLLIB_MODEL_DIR,
    SUMMARY_FILE,
    checkpoint_state,
    log_formats,
    new_log_segment,
    read_summary,
    warn_on_scorer_change,
)
from coral.policies.sb3 import DEFAULT_LEARNING_RATES

#: A resumed run draws fresh episodes (seed + RESUME_SEED_STRIDE x steps done), as the SB3 path.
RESUME_SEED_STRIDE = 7919


def _obs_filter_connector(*_: Any, **__: Any) -> Any:
    """RLlib's MeanStdFilter: running mean/std standardisation of observations, as SB3's VecNormalize
    (a module-level function, not a lambda, so runners and checkpoints can pickle it by name)."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter

    return MeanStdFilter()


def ppo_config(config: TrainConfig, env_config: dict[str, Any], seed: int) -> Any:
    """RLlib's PPOConfig for ``config``, with SB3 PPO's defaults where RLlib's differ.

    One iteration = one SB3 rollout: ``n_steps x n_envs`` env steps, the ``n_envs`` environments
    spread over the env runners (or all in this process with 0 runners), then 10 epochs of
    minibatches of ``batch_size``.

    :param config: the run's settings.
    :param env_config: the environment's keys (names, not objects: runners are other processes).
    :param seed: seed of the networks, the sampling and the environments' episode draws.
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from coral.policies.rllib.env import register_rllib_env
    from coral.policies.rllib.metrics import CoralMetricsCallback

    runners = config.num_env_runners
    envs_per_runner = math.ceil(config.n_envs / max(1, runners))
    return (
        PPOConfig()
        .environment(register_rllib_env(), env_config=env_config)
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=envs_per_runner,
            rollout_fragment_length="auto",  # train batch / (runners x envs): each runner one share
            # Runners mostly wait on the scorer (a served LLM, or the in-process one): two share a core.
            num_cpus_per_env_runner=0.5,
            env_to_module_connector=_obs_filter_connector if config.normalize_obs else None,
        )
        .learners(num_learners=0)  # learn in this process, as SB3
        .training(
            train_batch_size_per_learner=config.n_steps * config.n_envs,
            minibatch_size=config.batch_size,
            num_epochs=config.n_epochs,
            lr=DEFAULT_LEARNING_RATES["ppo"] if config.learning_rate is None else config.learning_rate,
            gamma=0.99,
            lambda_=0.95,
            clip_param=0.2,
            vf_clip_param=float("inf"),  # SB3: no value clipping
            use_kl_loss=False,  # SB3: no KL penalty
            entropy_coeff=0.0, vf_loss_coeff=0.5, grad_clip=0.5, grad_clip_by="global_norm",
        )
        # SB3's MlpPolicy: separate 64-64 tanh networks for policy and value, state-independent log std.
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False, free_log_std=True
            )
        )
        .callbacks(CoralMetricsCallback)
        .debugging(seed=seed)
        .reporting(metrics_num_episodes_for_smoothing=100)  # SB3's ep_info_buffer length
    )


def _replace_dir(save: Any, path: Path) -> Path:
    """:func:`save_aside` for a directory: a stale half-written copy and an old ``path`` are removed first."""
    shutil.rmtree(path.with_name(f".tmp-{path.name}"), ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    return save_aside(save, path)


def save_rllib_checkpoint(
    algo: Any, directory: Path, steps: int, config: dict[str, Any], scorer_fingerprint: str
) -> Path:
    """``algo.save`` as ``algo_<steps>/`` (written aside, renamed), then ``latest.json`` (the SB3 path's contract).

    :param algo: the RLlib Algorithm.
    :param directory: the run's checkpoint folder.
    :param steps: env steps sampled so far.
    :param config: the run's TrainConfig as a dict (stored with the checkpoint).
    :param scorer_fingerprint: identity of the scorer that produced the rewards so far.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = _replace_dir(lambda tmp: algo.save(str(tmp)), directory / f"algo_{steps}")
    atomic_write_json(
        directory / "latest.json",
        {"timesteps": steps, "model": path.name, "config": config, "scorer": scorer_fingerprint, "engine": "rllib"},
    )
    return path


def save_policy(checkpoint: Path, out: Path) -> Path:
    """Copy the module (and observation filter) of an Algorithm checkpoint to ``out/rllib_model/``."""
    from coral.policies.rllib.policy import MODULE, OBS_FILTER, policy_parts

    module, obs_filter = policy_parts(checkpoint)

    def copy(tmp: Path) -> None:
        shutil.copytree(module, tmp / MODULE)
        if obs_filter is not None:
            shutil.copytree(obs_filter, tmp / OBS_FILTER)

    return _replace_dir(copy, out / RLLIB_MODEL_DIR)


def _scorer_fingerprint(algo: Any, runners: int) -> str:
    """The scorer's fingerprint, read where the environments live (the driver does not load an LLM for it)."""
    from coral.policies.rllib.metrics import scorer_fingerprint

    found = algo.env_runner_group.foreach_env_runner(scorer_fingerprint, local_env_runner=runners == 0)
    return next((f for f in found if f is not None), "")


def _start_ray(runners: int) -> bool:
    """Start a local Ray instance unless one runs (``ray.init`` as the caller wishes, e.g. a cluster); True if started
    here."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(include_dashboard=False, num_cpus=None if runners else 1, configure_logging=False)
    return True


def train_rllib(config: TrainConfig, resources: EnvResources | None = None, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) RLlib PPO; returns the run directory.

    :param config: the run's settings (``engine="rllib"``; on resume the saved config, possibly with more timesteps).
    :param resources: must be empty: runners build environments from names, in their own processes.
    :param resume: continue from the last checkpoint: weights, optimiser, observation filter, step counter.
    :raises CoralError: without Ray; with objects in ``resources``; when resuming without a
        checkpoint, or starting over a run that has one; on a dataset with one class.
    """
    require_rllib()
    if resources is not None and any(vars(resources).values()):
        raise CoralError(
            "engine rllib builds its environments from names in every runner process; pass names in the config, not "
            "objects in resources"
        )
    out = Path(config.out)
    state = checkpoint_state(out, resume)
    # Fail before the run directory is written (as the SB3 path).
    resolve_dataset(config.env.data).require_both_classes(
        "train", *(("valid",) if config.val_every and config.val_size else ())
    )
    import torch
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(max(1, config.threads))
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG_FILE)
    done_before = int(state["timesteps"]) if state else 0
    started_ray = _start_ray(config.num_env_runners)
    algo = ppo_config(config, _env_context(config), seed=config.seed + RESUME_SEED_STRIDE * done_before).build_algo()
    segment, log_dir = new_log_segment(out)
    logger = configure(str(log_dir), log_formats())
    try:
        if state:
            algo.restore_from_path(str(out / "checkpoints" / state["model"]))
        fingerprint = _scorer_fingerprint(algo, config.num_env_runners)
        warn_on_scorer_change(out, state, fingerprint)
        steps, row, seconds = _learn(config, algo, logger, out, done_before, fingerprint)
        final = save_rllib_checkpoint(algo, out / "checkpoints", steps, config.to_dict(), fingerprint)
        save_policy(final, out)
    finally:
        algo.stop()
        logger.close()
        if started_ray:
            import ray

            ray.shutdown()
    previous = read_summary(out) if resume else {}
    summary = {
        "engine": "rllib",
        "timesteps": steps,
        "train_seconds": previous.get("train_seconds", 0.0) + seconds,
        # coral/llm_calls is RLlib's lifetime sum, restored with the checkpoint: already the run's total.
        "prompts_scored": int(row.get("coral/llm_calls", previous.get("prompts_scored", 0))),
        "scorer": fingerprint,
        "segments": segment + 1,
        "policy_updates": int(row.get("time/iterations", previous.get("policy_updates", 0))),
        **{
            k.replace("coral/", "scorer_"): v
            for k, v in row.items()
            if k in ("coral/cache_hit_rate", "coral/kv_reuse_rate")
        },
    }
    atomic_write_json(out / SUMMARY_FILE, summary)
    return out


def _env_context(config: TrainConfig) -> dict[str, Any]:
    from coral.policies.rllib.env import env_context

    return env_context(config.env_config("train"))


def live_policy(algo: Any, name: str) -> Any:
    """The Algorithm's current policy as an :class:`~coral.policies.rllib.policy.RLlibPolicy`
    (the local env runner's module and observation filter, synced after every iteration)."""
    from ray.rllib.core import COMPONENT_ENV_TO_MODULE_CONNECTOR

    from coral.policies.rllib.policy import RLlibPolicy, frozen_obs_filter

    connectors = algo.env_runner.get_state(components=COMPONENT_ENV_TO_MODULE_CONNECTOR)[
        COMPONENT_ENV_TO_MODULE_CONNECTOR
    ]
    obs_filter = connectors.get("MeanStdFilter")
    return RLlibPolicy(algo.get_module(), name=name, obs_filter=frozen_obs_filter(obs_filter) if obs_filter else None)


def _validate(config: TrainConfig, algo: Any, logger: Any) -> None:
    """``coral/val_return``, ``coral/val_auc`` (after K rounds) and ``coral/val_auc_round0`` on
    ``val_size`` rows of the validation split's tuning role, as the SB3 path logs them (the scorer
    is loaded in this process for it)."""
    from coral.metrics import binary_metrics
    from coral.policies.evaluate import evaluate_policy, mean_return, tuning_episodes

    rows = tuning_episodes(resolve_dataset(config.env.data), config.val_size)
    res = evaluate_policy(
        live_policy(algo, config.model_name),
        config.env_config("valid"),
        split="valid", batch_size=config.n_envs, episodes=rows, progress=False,
    )
    logger.record("coral/val_return", mean_return(res))
    logger.record("coral/val_auc", binary_metrics(res.labels, res.p[-1], n_boot=0)["auc"])
    logger.record("coral/val_auc_round0", binary_metrics(res.labels, res.p[0], n_boot=0)["auc"])


def _crossed(every: int, before: int, now: int) -> bool:
    """Whether a multiple of ``every`` (> 0) lies in (before, now]: SB3's PeriodicCallback over iterations."""
    return every > 0 and now // every > before // every


def _learn(
    config: TrainConfig, algo: Any, logger: Any, out: Path, done_before: int, fingerprint: str
) -> tuple[int, dict[str, float], float]:
    """``algo.train()`` until ``config.timesteps``: a CSV row per iteration, validation every
    ``val_every`` and checkpoints every ``checkpoint_every`` steps; returns (steps, the last row, seconds)."""
    from coral.policies.rllib.metrics import result_row

    steps, row, start = done_before, {}, time.perf_counter()
    while steps < config.timesteps:
        before = steps
        row = result_row(algo.train(), steps_at_start=done_before)
        steps = int(row.get("time/total_timesteps", steps))
        for key, value in row.items():
            logger.record(key, value)
        if config.val_size > 0 and _crossed(config.val_every, before, steps):
            _validate(config, algo, logger)
        logger.dump(steps)
        if _crossed(config.checkpoint_every, before, steps) and steps < config.timesteps:
            save_rllib_checkpoint(algo, out / "checkpoints", steps, config.to_dict(), fingerprint)
    return steps, row, time.perf_counter() - start
