"""Config-keyed stages: a finished stage is skipped on re-run, a killed one is redone.

A stage's directory is ``<run>/stages/<name>-<config hash>``; it is finished when its
``done.json`` exists, written atomically after everything else. A changed config gives a new
directory, so stale outputs are never reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from coral.io import atomic_write_json
from coral.results import config_hash


@dataclass(frozen=True)
class Stage:
    """One unit of the main job."""

    name: str
    """Stage name, e.g. ``baseline-dfm-seed0``."""
    config: Mapping[str, Any]
    """Everything that changes the stage's outputs; its hash names the stage directory."""
    run: Callable[[Path], None]
    """Does the work, writing its outputs into the directory it is given."""

    def directory(self, root: Path) -> Path:
        return root / "stages" / f"{self.name}-{config_hash(dict(self.config))}"


def run_stage(stage: Stage, root: Path, log: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Run ``stage`` under ``root`` unless it already finished.

    :returns: (the stage directory, whether it was skipped as already done).
    """
    directory = stage.directory(root)
    done = directory / "done.json"
    if done.exists():
        log(f"[skip] {stage.name}: done in an earlier run")
        return directory, True
    # A partial directory from a killed run keeps its checkpoints (stages that can resume use
    # them); everything else in it is overwritten.
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "config.json", dict(stage.config))
    log(f"[run ] {stage.name}")
    start = time.perf_counter()
    stage.run(directory)
    atomic_write_json(
        done, {"seconds": round(time.perf_counter() - start, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )
    return directory, False
