"""``coral train --engine rllib``: RLlib PPO trains, checkpoints, resumes and evaluates through
``coral evaluate`` (marked ``rllib``: needs ``pip install -e .[rllib]``); the CLI's one-line
errors and the default path's independence from Ray (no Ray needed)."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_env_fixtures import tiny_dataset, write_dataset_csv

from coral.cli import main
from coral.policies.config import TrainConfig

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray RLlib is not installed (pip install -e .[rllib])")


def write_dataset(directory: Path) -> Path:
    """The tiny synthetic dataset as CSV files, a dataset every runner process loads by its path."""
    return write_dataset_csv(tiny_dataset(), directory)


def tiny_train_args(data: Path, run: Path, *extra: str) -> list[str]:
    """``coral train`` on the tiny dataset with the scripted scorer: 2 x 64 steps per PPO iteration."""
    return [
        "train", "--dataset", str(data), "--warm-start", "none", "--scorer", "scripted:weight=0.6", "--embedding-dim",
        "4", "--n-candidates", "8", "--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--val-every", "0",
        "--threads", "1", "--no-progress", "--out", str(run), *extra,
    ]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (ray.init costs 10-30 s here); train_rllib leaves it running."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init {time.perf_counter() - start:.1f}s")
    yield
    ray.shutdown()


@pytest.mark.parametrize("algo,why", [("ddpg", "RLlib 2.60 has no DDPG"), ("maskable_ppo", "MaskablePPO")])
def test_cli_refuses_algorithms_rllib_lacks_in_one_line(tmp_path, capsys, algo, why):
    assert main(["train", "--engine", "rllib", "--algo", algo, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --algo ") and err.count("\n") == 1 and why in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_both_engines_rows_can_share_one_results_file():
    assert TrainConfig(engine="rllib").model_name == "coral-rllib-ppo-dfm" != TrainConfig().model_name


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).parent
    )


def test_without_ray_engine_rllib_is_one_line_telling_how_to_install(tmp_path):
    code = textwrap.dedent(f"""
        import sys

        class Block:  # as if ray were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "ray":
                    raise ImportError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, Block())
        from coral.cli import main
        sys.exit(main(["train", "--engine", "rllib", "--out", {str(tmp_path / "run")!r}]))
    """)
    proc = run_python(code, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --engine rllib needs Ray RLlib") and proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install -e .[rllib]" in proc.stderr and "Traceback" not in proc.stderr


def test_the_default_engine_never_imports_ray(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from coral.cli import main

        with contextlib.redirect_stdout(io.StringIO()):
            assert main({tiny_train_args(data, run, "--timesteps", "64")!r}) == 0
            assert main(["evaluate", "--run", {str(run)!r}, "--limit", "8", "--n-boot", "0"]) == 0
        print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
    """)
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.rllib
@needs_ray
@pytest.mark.usefixtures("ray_local")
def test_rllib_ppo_trains_checkpoints_resumes_and_evaluates(tmp_path):
    from coral.policies.callbacks import latest_checkpoint
    from coral.policies.rllib.policy import load_rllib_policy

    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    t0 = time.perf_counter()
    # One remote env runner: the environment is built from names in another process.
    assert (
        quiet(
            tiny_train_args(
                data, run, "--engine", "rllib", "--num-env-runners", "1", "--timesteps", "256", "--checkpoint-every",
                "128", "--val-every", "256",
            )
        )
        == 0
    )
    t1 = time.perf_counter()
    config = json.loads((run / "config.json").read_text())
    assert config["engine"] == "rllib" and config["num_env_runners"] == 1
    state = latest_checkpoint(run / "checkpoints")
    assert state["timesteps"] >= 256 and state["model"] == f"algo_{state['timesteps']}"
    assert len(list((run / "checkpoints").glob("algo_*"))) == 2  # the periodic one and the final one
    first = rows(run / "logs" / "segment0" / "progress.csv")
    assert len(first) == 2  # one row per PPO iteration of 2 x 64 steps
    for column in (
        "rollout/ep_rew_mean", "rollout/ep_len_mean", "time/total_timesteps", "time/iterations", "time/fps",
        "train/loss", "train/value_loss", "train/entropy_loss", "train/learning_rate", "coral/reward",
        "coral/abs_error", "coral/llm_calls",
    ):
        assert first[-1][column] != "", column
    assert float(first[-1]["coral/llm_calls"]) >= 256  # at least one prompt per step
    assert first[0]["coral/val_auc"] == "" and 0.0 <= float(first[-1]["coral/val_auc"]) <= 1.0  # --val-every 256: once
    before = load_rllib_policy(run / "rllib_model")
    assert before.obs_filter is not None  # --normalize-obs (the default): RLlib's MeanStdFilter, saved with the module

    # Resume on 0 runners (a checkpoint does not depend on the runner count; saves an actor start).
    assert quiet(["train", "--out", str(run), "--resume", "--timesteps", "384", "--num-env-runners", "0"]) == 0
    t2 = time.perf_counter()
    second = rows(run / "logs" / "segment1" / "progress.csv")
    assert float(second[0]["time/total_timesteps"]) > float(
        first[-1]["time/total_timesteps"]
    )  # the step counter carried over
    assert float(second[0]["time/iterations"]) == float(first[-1]["time/iterations"]) + 1
    assert latest_checkpoint(run / "checkpoints")["timesteps"] >= 384
    summary = json.loads((run / "train_summary.json").read_text())
    assert (
        summary["engine"] == "rllib"
        and summary["segments"] == 2
        and summary["timesteps"] >= 384
        and summary["scorer"].startswith("scripted")
    )
    assert summary["prompts_scored"] >= 384 and summary["policy_updates"] == 3  # counted over both segments

    after = load_rllib_policy(run / "rllib_model")
    obs = np.random.default_rng(0).standard_normal((3, *after.module.observation_space.shape)).astype(np.float32)
    a1, a2 = after.act(obs), after.act(obs)
    assert np.array_equal(a1, a2) and a1.shape == (3, 8) and np.all(np.abs(a1) <= 1.0)  # deterministic, in the Box
    assert not np.allclose(before.act(obs), a1)  # resuming trained further

    # coral evaluate --run: the same evaluation path and results.csv as an SB3 run.
    assert quiet(["evaluate", "--run", str(run), "--split", "test", "--limit", "12", "--n-boot", "0"]) == 0
    t3 = time.perf_counter()
    results = rows(run / "results.csv")
    assert [r["round"] for r in results] == [str(k) for k in range(6)] and {r["model"] for r in results} == {
        "coral-rllib-ppo-none"
    }
    assert float(results[0]["train_seconds"]) > 0
    assert len((run / "eval_test.jsonl").read_text().splitlines()) == 12
    print(f"train {t1 - t0:.1f}s, resume {t2 - t1:.1f}s, evaluate {t3 - t2:.1f}s")
