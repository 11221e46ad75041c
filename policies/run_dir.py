"""A ``coral train`` run directory: its config, its model and its training summary.

Layout: ``config.json`` (the :class:`~coral.policies.config.TrainConfig`), ``checkpoints/``
(``model_<t>.zip``, DDPG's ``replay_buffer_<t>.pkl``, ``latest.json``), ``logs/segment<k>/``
(SB3's CSV and TensorBoard output; one segment per start or resume), ``model.zip`` (the final
policy), ``train_summary.json``, and after ``coral evaluate`` ``eval_<split>.jsonl`` and
``results.csv``.
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


def read_summary(out: Path) -> dict[str, Any]:
    """``train_summary.json`` of a run ({} before training finished)."""
    path = Path(out) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_policy(run: str | Path) -> tuple[TrainConfig, Any]:
    """The config and SB3 model of a run (the final model, else the last checkpoint).

    :raises CoralError: when the directory holds no run.
    """
    from coral.policies.sb3 import algo_class

    run = Path(run)
    if not (run / CONFIG_FILE).is_file():
        raise CoralError(f"{run}: not a coral train run (no {CONFIG_FILE})")
    config = TrainConfig.load(run / CONFIG_FILE)
    path = run / MODEL_FILE
    if not path.is_file():
        state = latest_checkpoint(run / "checkpoints")
        if state is None:
            raise CoralError(f"{run}: no {MODEL_FILE} and no checkpoint")
        path = run / "checkpoints" / state["model"]
    return config, algo_class(config.algo).load(path, device="cpu")
