"""Load a script of ``experiments/`` as a module: the scripts are run by path, not installed as a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment_script(name: str) -> ModuleType:
    """The module of ``experiments/NAME.py``, executed once per call.

    :param name: the script's file name without ``.py``.
    """
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as importlib's recipe does: dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module
