"""``coral train``: fit a retrieval policy with Stable-Baselines3, with logging, checkpoints and resume.

A run directory holds ``config.json`` (the :class:`~policies.config.TrainConfig`),
``checkpoints/`` (``model_<t>.zip``, DDPG's ``replay_buffer_<t>.pkl``, ``latest.json``),
``logs/segment<k>/`` (SB3's CSV and TensorBoard output; one segment per start or resume),
``model.zip`` (the final policy) and ``train_summary.json``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.io import atomic_write_json
from coral.metrics import binary_metrics
from envs.collab_retrieval import EnvConfig
from envs.resources import resolve_dataset, resolve_embeddings, resolve_scorer

from policies.callbacks import PeriodicCallback, RetrievalMetricsCallback, cache_rates, latest_checkpoint, save_checkpoint
from policies.config import TrainConfig
from policies.sb3 import ALGOS, SB3Policy, algo_class, build_model


@dataclass
class Resources:
    """Objects that replace the names in a :class:`TrainConfig` (for tests and notebooks)."""

    dataset: CoralDataset | None = None
    """Used instead of loading ``config.dataset``."""
    scorer: Any = None
    """A Scorer used instead of ``config.scorer``."""
    embeddings: Any = None
    """An object with user and item arrays used instead of ``config.warm_start``."""
    prompt_builder: Any = None
    """Used instead of coral.llm.prompt.PromptBuilder."""


def env_config(config: TrainConfig, split: str = "train", resources: Resources = Resources()) -> EnvConfig:
    """The environment settings of a run, for episodes drawn from ``split``.

    :param config: the run's config.
    :param split: train (training episodes), valid or test (evaluation episodes).
    :param resources: objects overriding the config's names.
    """
    dataset = resources.dataset if resources.dataset is not None else resolve_dataset(config.dataset)
    return EnvConfig(
        dataset=dataset,
        split=split,
        action_mode=ALGOS[config.algo],
        query_match=config.query_match,
        n_candidates=config.n_candidates,
        embeddings=resources.embeddings if resources.embeddings is not None else resolve_embeddings(dataset, config.warm_start, config.seed, config.embedding_dim),
        embedding_dim=config.embedding_dim,
        embedding_seed=config.seed,
        scorer=resources.scorer if resources.scorer is not None else resolve_scorer(config.scorer),
        max_train_steps=config.max_train_steps,
        stop_error=config.stop_error,
        eval_rounds=config.eval_rounds,
        prompt_builder=resources.prompt_builder,
    )


def log_formats() -> list[str]:
    """SB3 logger outputs: stdout and CSV always; TensorBoard only where the optional
    ``tensorboard`` package is installed (SB3 raises on a missing one)."""
    import importlib.util

    formats = ["stdout", "csv"]
    if importlib.util.find_spec("tensorboard") is not None:
        formats.append("tensorboard")
    return formats


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def train(config: TrainConfig, resources: Resources = Resources(), resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) a retrieval policy; returns the run directory.

    :param config: the run's settings (on resume: the run's saved config, possibly with more timesteps).
    :param resources: objects overriding the config's names.
    :param resume: continue from the run directory's last checkpoint: model, DDPG replay buffer
        and timestep count.
    :raises CoralError: when resuming without a checkpoint, or starting over a run that has one.
    """
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.utils import set_random_seed

    from envs.vector import make_batched_vec_env
    from policies.evaluate import evaluate_policy

    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    state = latest_checkpoint(ckpt_dir)
    if resume and state is None:
        raise CoralError(f"{out}: no checkpoint to resume from (expected {ckpt_dir / 'latest.json'})")
    if not resume and state is not None:
        raise CoralError(f"{out} already holds a run with checkpoints; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    _set_threads(config.torch_threads)
    set_random_seed(config.seed)

    train_env_cfg = env_config(config, "train", resources)
    done_before = int(state["timesteps"]) if state else 0
    # A resumed run draws fresh episodes rather than replaying the first ones.
    vec = make_batched_vec_env(train_env_cfg, n_envs=config.n_envs, seed=config.seed + 7919 * done_before)
    if state:
        model = algo_class(config.algo).load(ckpt_dir / state["model"], env=vec, seed=config.seed)
        if "replay_buffer" in state:
            model.load_replay_buffer(ckpt_dir / state["replay_buffer"])
    else:
        model = build_model(config.algo, vec, seed=config.seed, learning_rate=config.learning_rate, n_steps=config.n_steps, batch_size=config.batch_size)
    segment = sum(1 for _ in (out / "logs").glob("segment*")) if (out / "logs").is_dir() else 0
    model.set_logger(configure(str(out / "logs" / f"segment{segment}"), log_formats()))

    scorer = train_env_cfg.scorer
    fingerprint = getattr(scorer, "fingerprint", "")
    if state and state.get("scorer", fingerprint) != fingerprint:
        # A spec such as "hf" does not pin everything (the default dtype can change): say so,
        # since the reward function changes mid-run.
        import warnings

        warnings.warn(f"{out}: resuming with scorer {fingerprint!r}, but the checkpoint was trained with {state['scorer']!r}", stacklevel=2)
    retrieval_envs = vec.venv.retrieval_envs  # type: ignore[attr-defined]
    config_dict = config.to_dict()

    def validate(_: int) -> None:
        if config.val_size <= 0:
            return
        valid_cfg = EnvConfig.from_any(train_env_cfg, prompt_builder=retrieval_envs[0].prompt_builder)
        res = evaluate_policy(SB3Policy(model), valid_cfg.dataset, scorer, "valid", config.eval_rounds, config=valid_cfg, batch_size=config.n_envs, limit=config.val_size)
        model.logger.record("coral/val_auc", binary_metrics(res.labels, res.p[-1], n_boot=0)["auc"])
        model.logger.record("coral/val_auc_round0", binary_metrics(res.labels, res.p[0], n_boot=0)["auc"])

    callbacks = [
        RetrievalMetricsCallback(lambda: sum(e.prompts_scored for e in retrieval_envs), scorer),
        PeriodicCallback(config.val_every, validate),
        PeriodicCallback(config.checkpoint_every, lambda _: save_checkpoint(model, ckpt_dir, config_dict, fingerprint)),
    ]
    remaining = config.timesteps - int(model.num_timesteps)
    start = time.perf_counter()
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=callbacks,
            # PPO: a log line per rollout; DDPG: per 4 episodes (SB3's off-policy default), not per episode.
            log_interval=4 if config.algo == "ddpg" else 1,
            reset_num_timesteps=not resume,
            progress_bar=config.progress_bar,
        )
    seconds = time.perf_counter() - start
    save_checkpoint(model, ckpt_dir, config_dict, fingerprint)
    tmp = out / ".tmp-model.zip"
    model.save(tmp)
    os.replace(tmp, out / "model.zip")
    previous = read_summary(out)
    summary = {
        "timesteps": int(model.num_timesteps),
        "train_seconds": previous.get("train_seconds", 0.0) + seconds if resume else seconds,
        "prompts_scored": previous.get("prompts_scored", 0) + sum(e.prompts_scored for e in retrieval_envs),
        "scorer": getattr(scorer, "fingerprint", ""),
        "segments": segment + 1,
        **{f"scorer_{k}": v for k, v in cache_rates(scorer.stats()).items()},
    }
    atomic_write_json(out / "train_summary.json", summary)
    vec.close()
    return out


def read_summary(out: Path) -> dict[str, Any]:
    import json

    path = out / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_policy(run: str | Path) -> tuple[TrainConfig, Any]:
    """The config and SB3 model of a run (the final model, else the last checkpoint).

    :raises CoralError: when the directory holds no run.
    """
    run = Path(run)
    if not (run / "config.json").is_file():
        raise CoralError(f"{run}: not a coral train run (no config.json)")
    config = TrainConfig.load(run / "config.json")
    path = run / "model.zip"
    if not path.is_file():
        state = latest_checkpoint(run / "checkpoints")
        if state is None:
            raise CoralError(f"{run}: no model.zip and no checkpoint")
        path = run / "checkpoints" / state["model"]
    return config, algo_class(config.algo).load(path, device="cpu")


__all__ = ["Resources", "TrainConfig", "env_config", "load_policy", "train"]
