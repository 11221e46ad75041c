"""The main job: every method in the table, stages skipped on re-run, kill-and-resume gives the same table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coral.cli import main
from coral.errors import CoralError
from coral.pipeline.config import RunConfig
from coral.pipeline.report import display_name, final_rows, markdown_table
from coral.results import read_rows

#: A small, fast main job: every method, a scripted scorer instead of the LLM, few steps.
FAST = {
    "datasets": ["gift_cards"],
    "seeds": [0],
    "baselines": ["dfm", "dcn", "wdl", "afm", "ips", "cause"],
    "baseline_epochs": 2,
    "scorer": "scripted",
    "align": False,
    "methods": ["llm-only", "coral-random", "coral-ppo", "coral-ddpg"],
    "warm_starts": ["dfm"],
    "ppo_timesteps": 64,
    "ddpg_timesteps": 32,
    "max_eval": 40,
    "n_envs": 4,
}

EXPECTED = ["DFM", "DCN", "WDL", "AFM", "IPS", "CausE", "LLM-Language", "CoRAL-random", "CoRAL-PPO (DFM)", "CoRAL-DDPG (DFM)"]


def write_config(path: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump({**FAST, **overrides}))
    return path


def run_cli(config: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "coral.cli", "run", "--config", str(config), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, str, dict]:
    tmp = tmp_path_factory.mktemp("run")
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    config = write_config(tmp / "fast.yaml")
    proc = run_cli(config, tmp / "out", env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return tmp / "out", out, env


def test_table_has_every_method(uninterrupted) -> None:
    out, log, _ = uninterrupted
    table = (out / "results.md").read_text()
    for name in EXPECTED:
        assert f"| {name} |" in table, (name, table)
    assert "LLM-Language" in log  # the table is printed at the end
    rows = read_rows(out / "results.csv")
    for column in ("dataset", "model", "seed", "auc", "auc_ci_low", "auc_ci_high", "f1", "f1_at_05", "logloss", "n_test", "positive_rate", "train_seconds", "config_hash", "versions"):
        assert column in rows[0]
    # Per-round rows 0..5 for the retrieval methods (the paper's Fig. 3).
    rounds = {int(r["round"]) for r in rows if r["model"] == "coral-ppo-dfm"}
    assert rounds == set(range(6))
    assert (out / "auc_by_round.png").stat().st_size > 1000
    assert (out / "training_curves.png").stat().st_size > 1000


def test_rerun_skips_every_stage(uninterrupted) -> None:
    out, _, env = uninterrupted
    before = (out / "results.md").read_text()
    proc = run_cli(out.parent / "fast.yaml", out, env)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert "[run ]" not in log and log.count("[skip]") >= 4
    assert (out / "results.md").read_text() == before


def test_killed_run_resumes_to_the_same_table(uninterrupted, tmp_path: Path) -> None:
    reference, _, _ = uninterrupted
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    config = write_config(tmp_path / "fast.yaml")
    out = tmp_path / "out"
    proc = run_cli(config, out, env)
    # Kill it once the first stage (the baselines) has finished and a later one is under way.
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("stages/*/done.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in out.glob("stages/*/done.json")}
    assert finished, "the run was killed before any stage finished"
    assert not (out / "results.md").exists()
    proc = run_cli(config, out, env)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    for name in finished:
        assert f"[skip] {name.rsplit('-', 1)[0]}" in log
    assert (out / "results.md").read_text() == (reference / "results.md").read_text()


def test_config_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [gift_cards]\nnot_a_key: 1\n")
    assert main(["run", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not_a_key" in capsys.readouterr().err
    with pytest.raises(CoralError, match="seeds"):
        RunConfig.from_dict({"seeds": "zero"})


def test_paper_grid_config_parses() -> None:
    config = RunConfig.from_yaml(Path(__file__).resolve().parents[1] / "experiments" / "paper_table1.yaml")
    assert config.skip_missing and {"Software", "Prime_Pantry", "Gift_Cards", "Appliances"} <= set(config.datasets)
    assert config.ddpg_timesteps == 2000 and set(config.warm_starts) == {"dfm", "wdl", "afm", "dcn"}


def test_report_table_layout() -> None:
    rows = [
        {"dataset": "d", "model": "dfm", "seed": "0", "auc": "0.8", "f1": "0.7", "auc_ci_low": "0.7", "auc_ci_high": "0.9", "round": ""},
        {"dataset": "d", "model": "dfm", "seed": "1", "auc": "0.6", "f1": "0.5", "auc_ci_low": "0.5", "auc_ci_high": "0.7", "round": ""},
        {"dataset": "d", "model": "coral-ppo-dfm@aligned", "seed": "0", "auc": "0.5", "f1": "0.1", "auc_ci_low": "0.4", "auc_ci_high": "0.6", "round": "0"},
        {"dataset": "d", "model": "coral-ppo-dfm@aligned", "seed": "0", "auc": "0.9", "f1": "0.8", "auc_ci_low": "0.8", "auc_ci_high": "1.0", "round": "5"},
    ]
    assert len(final_rows(rows)) == 3
    table = markdown_table(rows)
    assert "| DFM | 70.00 ± 10.00 | 60.00 ± 10.00 | [60.0, 80.0] | 2 |" in table
    assert "| CoRAL-PPO (DFM) [aligned] | 90.00 | 80.00 | [80.0, 100.0] | 1 |" in table
    assert display_name("llm-only") == "LLM-Language"
