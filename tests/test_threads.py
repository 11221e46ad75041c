"""coral's thread defaults: set where missing, never over a value the user gave; torch's threads on every core."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coral.threads import THREAD_DEFAULTS, set_thread_defaults


def test_defaults_fill_only_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    set_thread_defaults()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    set_thread_defaults()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_the_scorer_module_sets_them_before_torch_starts() -> None:
    """Importing the default backend in a clean process leaves the defaults in its environment
    before torch is imported (the OpenMP runtime reads them once)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_DEFAULTS}
    code = (
        "import sys, os; import coral.llm.hf; print(os.environ.get('TOKENIZERS_PARALLELISM'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split() == ["false", "True"]
    # importtime lists modules in the order their import finished; coral.threads must come before torch.
    names = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line]
    assert names.index("coral.threads") < names.index("torch")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 or more CPUs")
def test_torch_threads_may_use_every_core_in_coral_runs_import_order() -> None:
    """`coral run` imports scikit-learn (its own libgomp) before torch. With the OpenMP binding coral used to set,
    that libgomp pinned the main thread to the first core on loading, and torch's runtime put all its threads there:
    the whole run on one core. After a 2-thread torch region, no thread of the process is confined to fewer CPUs than
    the process started with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    code = (
        "import glob, os\n"
        "cpus = os.sched_getaffinity(0)\n"
        "from coral.cli import main  # the console script's entry point: coral.threads' defaults\n"
        "import coral.pipeline.run, sklearn.utils._openmp_helpers  # coral run's modules, scikit-learn first\n"
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "x = torch.randn(512, 512)\n"
        "for _ in range(20): x @ x\n"
        "for task in glob.glob('/proc/self/task/*'):\n"
        "    assert os.sched_getaffinity(int(os.path.basename(task))) == cpus, (task, cpus)\n"
        "print('ok', torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.split() == ["ok", "2"]
