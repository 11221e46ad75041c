"""A ``coral train`` run directory: its config, its model and its training summary.

Layout: ``config.json`` (the :class:`~coral.policies.config.TrainConfig`), ``checkpoints/``
(``model_<t>.zip``, DDPG's ``replay_buffer_<t>.pkl``, ``vecnormalize_<t>.pkl``, ``totals_<t>.json``, ``latest.json``),
``logs/segment<k>/``
(SB3's CSV and TensorBoard output; one segment per start or resume), ``model.zip`` (the final
policy) and ``vecnormalize.pkl`` (its observation statistics, when ``normalize_obs``),
``train_summary.json``, and after ``coral evaluate`` ``eval_<split>.jsonl`` and ``results.csv``.

A run of ``--engine rllib`` has the same files except the policy: ``checkpoints/algo_<t>/``
(RLlib Algorithm checkpoints) instead of ``model_<t>.zip``, and ``rllib_model/`` (the RLModule
and its observation filter, :mod:`coral.policies.rllib.policy`) instead of ``model.zip`` and
``vecnormalize.pkl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coral.errors import CoralError
from coral.io import atomic_write_json
from coral.policies.callbacks import latest_checkpoint
from coral.policies.config import TrainConfig

CONFIG_FILE = "config.json"
MODEL_FILE = "model.zip"
SUMMARY_FILE = "train_summary.json"
VECNORM_FILE = "vecnormalize.pkl"
RLLIB_MODEL_DIR = "rllib_model"


def log_formats() -> list[str]:
    """SB3 logger outputs: stdout and CSV always; TensorBoard only where the optional
    ``tensorboard`` package is installed (SB3 raises on a missing one)."""
    import importlib.util

    formats = ["stdout", "csv"]
    if importlib.util.find_spec("tensorboard") is not None:
        formats.append("tensorboard")
    return formats


def new_log_segment(out: Path) -> tuple[int, Path]:
    """(k, ``logs/segment<k>``): the log folder of this start or resume (the first one not used yet)."""
    logs = Path(out) / "logs"
    k = sum(1 for _ in logs.glob("segment*")) if logs.is_dir() else 0
    return k, logs / f"segment{k}"


def checkpoint_state(out: Path, resume: bool) -> dict[str, Any] | None:
    """The run's last checkpoint, checked against ``resume``.

    :raises CoralError: when resuming without a checkpoint, or starting over a run that has one.
    """
    ckpt_dir = out / "checkpoints"
    state = latest_checkpoint(ckpt_dir)
    if resume and state is None:
        raise CoralError(f"{out}: no checkpoint to resume from (expected {ckpt_dir / 'latest.json'})")
    if not resume and state is not None:
        raise CoralError(
            f"{out} already holds a run with checkpoints; pass --resume to continue it or choose another --out"
        )
    return state


def warn_on_scorer_change(out: Path, state: dict[str, Any] | None, fingerprint: str) -> None:
    """Warn when a resumed run's scorer differs from the one its checkpoint was trained with."""
    if state and state.get("scorer", fingerprint) != fingerprint:
        # A spec such as "hf" does not pin everything (the default dtype can change): say so,
        # since the reward function changes mid-run.
        import warnings

        warnings.warn(
            f"{out}: resuming with scorer {fingerprint!r}, but the checkpoint was trained with {state['scorer']!r}",
            stacklevel=3,
        )


def totals_path(out: Path, timesteps: int) -> Path:
    """Where the training totals at checkpoint ``timesteps`` are kept."""
    return Path(out) / "checkpoints" / f"totals_{int(timesteps)}.json"


def write_totals(out: Path, timesteps: int, train_seconds: float, prompts_scored: int) -> None:
    """Keep the totals of every segment so far at a checkpoint, written before the checkpoint's
    ``latest.json`` so that the checkpoint a resume starts from always has them.

    :param out: the run directory.
    :param timesteps: the checkpoint's timestep count.
    :param train_seconds: training seconds of all segments up to it.
    :param prompts_scored: prompts scored by all segments up to it.
    """
    atomic_write_json(
        totals_path(out, timesteps),
        {"timesteps": int(timesteps), "train_seconds": float(train_seconds), "prompts_scored": int(prompts_scored)},
    )


def read_totals(out: Path, state: dict[str, Any] | None) -> dict[str, Any]:
    """The training totals (``train_seconds``, ``prompts_scored``) at the checkpoint ``state`` that a
    resume starts from: {} for a fresh run. A run checkpointed before totals were kept falls back
    to its ``train_summary.json`` when that describes the same timestep."""
    if not state:
        return {}
    path = totals_path(out, state["timesteps"])
    if path.is_file():
        return json.loads(path.read_text())
    summary = read_summary(out)
    return summary if summary.get("timesteps") == state["timesteps"] else {}


def read_summary(out: Path) -> dict[str, Any]:
    """``train_summary.json`` of a run ({} before training finished)."""
    path = Path(out) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _policy_files(run: Path) -> tuple[Path, Path | None]:
    """(model file, its VecNormalize statistics or None): the final model, else the last checkpoint."""
    if (run / MODEL_FILE).is_file():
        stats = run / VECNORM_FILE
        return run / MODEL_FILE, stats if stats.is_file() else None
    state = latest_checkpoint(run / "checkpoints")
    if state is None:
        raise CoralError(f"{run}: no {MODEL_FILE} and no checkpoint")
    stats = state.get("vecnormalize")
    return run / "checkpoints" / state["model"], run / "checkpoints" / stats if stats else None


def load_policy(run: str | Path) -> tuple[TrainConfig, Any]:
    """The config and SB3 model of a run (the final model, else the last checkpoint).

    :raises CoralError: when the directory holds no run.
    """
    config, model, _ = _load(Path(run))
    return config, model


def _load(run: Path) -> tuple[TrainConfig, Any, Path | None]:
    """Config, SB3 model and the path of its VecNormalize statistics (or None), all from one
    resolution of the run's files (the final model, else the last checkpoint)."""
    from coral.policies.sb3 import algo_class

    config = _config(run)
    if config.engine != "sb3":
        raise CoralError(f"{run}: a run of engine {config.engine} holds no SB3 model (load it with load_run_policy)")
    model_file, stats_file = _policy_files(run)
    return config, algo_class(config.algo).load(model_file, device="cpu"), stats_file


def _config(run: Path) -> TrainConfig:
    if not (run / CONFIG_FILE).is_file():
        raise CoralError(f"{run}: not a coral train run (no {CONFIG_FILE})")
    return TrainConfig.load(run / CONFIG_FILE)


def _rllib_policy(run: Path, config: TrainConfig) -> Any:
    """The RLlib policy of a run: its final ``rllib_model/``, else its last Algorithm checkpoint."""
    from coral.policies.rllib import require_rllib

    require_rllib()
    from coral.policies.rllib.policy import load_rllib_policy

    if (run / RLLIB_MODEL_DIR).is_dir():
        return load_rllib_policy(run / RLLIB_MODEL_DIR, name=config.model_name)
    state = latest_checkpoint(run / "checkpoints")
    if state is None:
        raise CoralError(f"{run}: no {RLLIB_MODEL_DIR} and no checkpoint")
    return load_rllib_policy(run / "checkpoints" / state["model"], name=config.model_name)


def load_obs_normalizer(path: Path | None) -> Any | None:
    """Saved VecNormalize statistics (without their environment, not updated any more), or None."""
    if path is None:
        return None
    import pickle

    with open(path, "rb") as f:
        normalizer = pickle.load(f)
    normalizer.training = False
    return normalizer


def load_run_policy(run: str | Path) -> tuple[TrainConfig, Any]:
    """The config of a run and its policy, ready to act: an :class:`~coral.policies.sb3.SB3Policy`
    that standardises observations as in training.

    :raises CoralError: when the directory holds no run.
    """
    from coral.policies.sb3 import SB3Policy

    run = Path(run)
    config = _config(run)
    if config.engine == "rllib":
        return config, _rllib_policy(run, config)
    config, model, stats_file = _load(run)
    return config, SB3Policy(model, name=config.model_name, obs_normalizer=load_obs_normalizer(stats_file))
