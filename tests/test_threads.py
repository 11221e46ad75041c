"""coral's OpenMP defaults: set where missing, never over a value the user gave."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coral.threads import THREAD_DEFAULTS, set_thread_defaults


def test_defaults_fill_only_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_PROC_BIND", "false")
    set_thread_defaults()
    assert os.environ["OMP_PROC_BIND"] == "false"
    assert os.environ["OMP_PLACES"] == "cores" and os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_the_scorer_module_sets_them_before_torch_starts() -> None:
    """Importing the default backend in a clean process leaves the defaults in its environment
    before torch is imported (the OpenMP runtime reads them once)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_DEFAULTS}
    code = "import sys, os; import coral.llm.hf; print(os.environ.get('OMP_PROC_BIND'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split() == ["true", "True"]
    # importtime lists modules in the order their import finished; coral.threads must come before torch.
    names = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert names.index("coral.threads") < names.index("torch")
