"""The main job: every method in the table, stages skipped on re-run, kill-and-resume gives the same table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coral.cli import main
from coral.config import from_dict
from coral.errors import CoralError
from coral.pipeline.config import RunConfig
from coral.pipeline.report import display_name, final_rows, markdown_table
from coral.results import read_rows

#: A small, fast main job: every method, a scripted scorer instead of the LLM, few steps.
FAST = {
    "dataset": "gift_cards",
    "seeds": [0],
    "baselines": ["dfm", "dcn", "wdl", "afm", "ips", "cause"],
    "baseline": {"epochs": 2},
    "scorer": "scripted",
    "align": False,
    "methods": ["llm-only", "coral-random", "coral-greedy", "coral-ppo", "coral-ddpg", "coral-maskable_ppo"],
    "warm_starts": ["dfm"],
    "ppo_timesteps": 64,
    "ddpg_timesteps": 32,
    "eval_pairs": 60,
    "valid_pairs": 40,
    "train": {"n_envs": 4},
    "n_boot": 50,
    "controls": True,
    "side_feature_baselines": True,
}

EXPECTED = [
    "DFM",
    "DCN",
    "WDL",
    "AFM",
    "IPS",
    "CausE",
    *(f"{name} + side features" for name in ("DFM", "DCN", "WDL", "AFM", "IPS", "CausE")),
    "User+item mean",
    "kNN like-share (DFM)",
    "kNN like-share, distance-weighted (DFM)",
    "LLM-Language [zero-shot]",
    "CoRAL-random [zero-shot]",
    "CoRAL-greedy (DFM) [zero-shot]",
    "CoRAL-PPO (DFM) [zero-shot]",
    "CoRAL-DDPG (DFM) [zero-shot]",
    "CoRAL-MaskablePPO, candidate features (DFM) [zero-shot]",
]


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
    for column in (
        "dataset",
        "model",
        "seed",
        "auc",
        "auc_ci_low",
        "auc_ci_high",
        "f1",
        "f1_at_05",
        "logloss",
        "n_test",
        "positive_rate",
        "train_seconds",
        "config_hash",
        "versions",
    ):
        assert column in rows[0]
    # Per-round rows 0..5 for the retrieval methods (the paper's Fig. 3).
    rounds = {int(r["round"]) for r in rows if r["model"] == "coral-ppo-dfm@zero-shot"}
    assert rounds == set(range(6))
    # Paired differences vs LLM-only (same scorer), CoRAL-random and the best CTR baseline, per row.
    final = {r["model"]: r for r in rows if r["split"] == "test" and r["round"] in ("", "5")}
    for model in ("coral-ppo-dfm@zero-shot", "coral-ddpg-dfm@zero-shot", "coral-random@zero-shot", "dfm", "mean"):
        assert final[model]["ref_llm_only"] == "llm-only@zero-shot"
        low, d, high = (float(final[model][k]) for k in ("d_llm_only_low", "d_llm_only", "d_llm_only_high"))
        assert low <= d <= high and 0 <= float(final[model]["d_llm_only_p"]) <= 1
    assert {r["split"] for r in rows if r["model"] == "dfm"} == {"test", "test_full"}
    # The CTR baselines with item side features (gift_cards: brand, category) are their own rows, trained with them.
    side = next(r for r in rows if r["model"] == "dfm+side" and r["split"] == "test")
    assert json.loads(side["config"])["baseline"]["use_side_features"] is True
    assert json.loads(final["dfm"]["config"])["baseline"]["use_side_features"] is False
    # The claims, each against its strongest simple alternative, one verdict row each.
    assert "## The claims" in table
    for number, a, b in (
        (1, "CoRAL-PPO (DFM) [zero-shot]", "LLM-Language [zero-shot]"),
        (2, "CoRAL-PPO (DFM) [zero-shot]", "CoRAL-greedy (DFM) [zero-shot]"),
        (3, "CoRAL-PPO (DFM) [zero-shot], round K", "CoRAL-PPO (DFM) [zero-shot], round 1"),
        (5, "CoRAL-greedy (DFM) [zero-shot]", "kNN like-share (DFM)"),
    ):
        line = next(line for line in table.splitlines() if line.startswith(f"| ({number}) "))
        assert f"| {a} | {b} |" in line and "(one training run)" in line, line
    assert table.count("| (4) CoRAL beats the best CTR baseline | CoRAL-PPO (DFM) [zero-shot] |") == 1
    # Greedy and PPO of one seed search the very same warm-start tables.
    configs = {r["model"]: json.loads(r["config"]) for r in rows if r["split"] == "test" and r["round"] in ("", "5")}
    fingerprints = {
        configs[m]["warm_start_fingerprint"]
        for m in ("coral-greedy-dfm@zero-shot", "coral-ppo-dfm@zero-shot", "coral-ddpg-dfm@zero-shot", "knn-share-dfm")
    }
    assert len(fingerprints) == 1 and "" not in fingerprints
    # The evidence controls on the same shared pairs, each with its paired difference vs none.
    assert "## Does the scorer read the evidence?" in table and "60 pairs" in table
    rows = [table.index(f"| {control} |") for control in ("none", "5 nearest", "5 random", "5 shuffled")]
    assert rows == sorted(rows)
    assert (out / "pairs-seed0.csv").read_text().count("\ntest,") == 60
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
    with pytest.raises(CoralError, match="seeds must be a list of int, got 'zero'"):
        from_dict(RunConfig, {"seeds": "zero"})
    with pytest.raises(CoralError, match="unknown key 'train.n_env'"):
        from_dict(RunConfig, {"train": {"n_env": 3}})
    assert main(["run", "--train.n-envs", "0", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: --train.n-envs must be >= 1, got 0"
    assert not (tmp_path / "o").exists()


def test_side_feature_baselines_need_item_features(tmp_path: Path, capsys) -> None:
    data = tmp_path / "plain" / "interactions.csv"
    data.parent.mkdir()
    data.write_text(
        "user,item,rating,timestamp\n"
        + "".join(f"u{u},i{i},{1 + (u + i) % 5},{1000 + 10 * u + i}\n" for u in range(30) for i in range(8))
    )
    out = tmp_path / "o"
    args = [
        "run",
        "--dataset",
        str(data),
        "--scorer",
        "scripted",
        "--no-align",
        "--side-feature-baselines",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: side_feature_baselines: dataset 'plain' has no item side features; turn it off for this dataset"
    )
    assert not out.exists() or not any(out.rglob("*.csv"))
    with pytest.raises(CoralError, match="baseline.use_side_features must then stay off"):
        from_dict(RunConfig, {"side_feature_baselines": True, "baseline": {"use_side_features": True}})


def test_maskable_ppo_may_stop_at_a_price_per_piece(tmp_path: Path) -> None:
    """candidate_stop gives coral-maskable_ppo CandidateRetrieval's stop action and candidate_piece_cost its price;
    its row is named for it; a price without the stop action is refused."""
    config = write_config(
        tmp_path / "stop.yaml",
        baselines=["dfm"],
        side_feature_baselines=False,
        controls=False,
        methods=["coral-greedy", "coral-maskable_ppo"],
        candidate_stop=True,
        candidate_piece_cost=0.05,
    )
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 0
    [run_config] = list(out.rglob("run/config.json"))
    env = json.loads(run_config.read_text())
    assert env["stop_action"] is True and env["piece_cost"] == 0.05 and env["observe"] == "candidates"
    names = [display_name(r["model"]) for r in final_rows(read_rows(out / "results.csv"))]
    assert "CoRAL-MaskablePPO, candidate features, stop action (DFM) [zero-shot]" in names
    with pytest.raises(CoralError, match="candidate_piece_cost prices the pieces of a policy that may stop"):
        from_dict(RunConfig, {"candidate_piece_cost": 0.1})


def test_experiment_configs_parse() -> None:
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    config = RunConfig.from_yaml(experiments / "paper_table1.yaml")
    assert config.skip_missing and {"Software", "Prime_Pantry", "Gift_Cards", "Appliances"} <= set(config.dataset_names)
    assert config.ddpg_timesteps == 2000 and set(config.warm_starts) == {"dfm", "wdl", "afm", "dcn"}
    # experiments/default.yaml writes out what `coral run` does with no options.
    assert RunConfig.from_yaml(experiments / "default.yaml") == RunConfig()
    for path in experiments.glob("*.yaml"):
        RunConfig.from_yaml(path)


def patch_default(monkeypatch, cls: type, name: str, value) -> None:
    """Change the default of dataclass field ``name`` of ``cls``, as an edit of its source would."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(cls) if f.init]
    defaults = list(cls.__init__.__defaults__)
    # __defaults__ holds the defaults of the trailing parameters, in order.
    defaults[len(defaults) - len(names) + names.index(name)] = value
    monkeypatch.setattr(cls.__init__, "__defaults__", tuple(defaults))
    assert getattr(cls(), name) == value


def test_a_changed_deep_default_reruns_its_stage(tmp_path, monkeypatch) -> None:
    import io

    from coral.baselines.config import BaselineConfig
    from coral.pipeline.run import MainJob
    from coral.policies.config import TrainConfig

    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    tiny = {
        "scorer": "scripted",
        "align": False,
        "baselines": ["ips"],
        "baseline": {"epochs": 1},
        "methods": ["coral-ppo"],
        "warm_starts": ["none"],
        "ppo_timesteps": 16,
        "eval_pairs": 8,
        "valid_pairs": 8,
        "train": {"n_envs": 2, "batch_size": 32},
        "n_boot": 0,
    }

    def run_job() -> str:
        log = io.StringIO()
        MainJob(from_dict(RunConfig, tiny), tmp_path / "out", log=lambda msg: print(msg, file=log)).run()
        return log.getvalue()

    first = run_job()
    assert "[run ] baselines-seed0" in first and "[run ] coral-ppo-none@zero-shot-seed0" in first
    assert "[run ]" not in run_job()  # nothing changed: every stage is skipped
    # Observation normalisation is nowhere in the run's config, only a default of TrainConfig.
    patch_default(monkeypatch, TrainConfig, "normalize_obs", False)
    log = run_job()
    assert "[run ] coral-ppo-none@zero-shot-seed0" in log and "[skip] baselines-seed0" in log
    # The CTR baselines' embedding size: a default of BaselineConfig.
    patch_default(monkeypatch, BaselineConfig, "embedding_dim", 16)
    log = run_job()
    assert "[run ] baselines-seed0" in log and "[skip] coral-ppo-none@zero-shot-seed0" in log


def test_report_table_layout() -> None:
    rows = [
        {
            "dataset": "d",
            "model": "dfm",
            "seed": "0",
            "auc": "0.8",
            "f1": "0.7",
            "auc_ci_low": "0.7",
            "auc_ci_high": "0.9",
            "round": "",
        },
        {
            "dataset": "d",
            "model": "dfm",
            "seed": "1",
            "auc": "0.6",
            "f1": "0.5",
            "auc_ci_low": "0.5",
            "auc_ci_high": "0.7",
            "round": "",
        },
        {
            "dataset": "d",
            "model": "coral-ppo-dfm@aligned",
            "seed": "0",
            "auc": "0.5",
            "f1": "0.1",
            "auc_ci_low": "0.4",
            "auc_ci_high": "0.6",
            "round": "0",
        },
        {
            "dataset": "d",
            "model": "coral-ppo-dfm@aligned",
            "seed": "0",
            "auc": "0.9",
            "f1": "0.8",
            "auc_ci_low": "0.8",
            "auc_ci_high": "1.0",
            "round": "5",
        },
    ]
    assert len(final_rows(rows)) == 3
    table = markdown_table(rows)
    # Mean ± sample std (ddof=1) over seeds.
    assert "| DFM | 70.00 ± 14.14 | 60.00 ± 14.14 | 2 |" in table
    assert "| CoRAL-PPO (DFM) [aligned] | 90.00 | 80.00 | 1 |" in table
    assert display_name("llm-only") == "LLM-Language"
