"""A ``coral train`` run directory: its config, its model and its training summary.

Layout: ``config.json`` (the :class:`~coral.policies.config.TrainConfig`), ``checkpoints/``
(``model_<t>.zip``, DDPG's ``replay_buffer_<t>.pkl``, ``vecnormalize_<t>.pkl``, ``latest.json``), ``logs/segment<k>/``
(SB3's CSV and TensorBoard output; one segment per start or resume), ``model.zip`` (the final
policy) and ``vecnormalize.pkl`` (its observation statistics, when ``normalize_obs``),
``train_summary.json``, and after ``coral evaluate`` ``eval_<split>.jsonl`` and ``results.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coral.errors import CoralError

from coral.policies.callbacks import latest_checkpoint
from coral.policies.config import TrainConfig

CONFIG_FILE = "config.json"
MODEL_FILE = "model.zip"
SUMMARY_FILE = "train_summary.json"
VECNORM_FILE = "vecnormalize.pkl"


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

    if not (run / CONFIG_FILE).is_file():
        raise CoralError(f"{run}: not a coral train run (no {CONFIG_FILE})")
    config = TrainConfig.load(run / CONFIG_FILE)
    model_file, stats_file = _policy_files(run)
    return config, algo_class(config.algo).load(model_file, device="cpu"), stats_file


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

    config, model, stats_file = _load(Path(run))
    return config, SB3Policy(model, name=config.model_name, obs_normalizer=load_obs_normalizer(stats_file))
