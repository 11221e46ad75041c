"""Every bad value: one line on stderr naming the option and the value, exit 2, no traceback, no output left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coral.cli import main


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))


def fails(argv: list[str], capsys) -> str:
    """Run ``coral argv`` in process; it must exit 2 with one line ``error: ...``; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--k-core", "abc"], "error: argument --k-core: invalid int value: 'abc'"),
        (["--k-core", "0"], "error: --k-core must be >= 1, got 0"),
        (["--positive-threshold", "nan"], "error: --positive-threshold must be a finite number, got nan"),
        (["--positive-threshold", "inf"], "error: --positive-threshold must be a finite number, got inf"),
        (["--sep", ""], "error: --sep must be a single character (\\t for tab), got ''"),
        (["--sep", ";;"], "error: --sep must be a single character (\\t for tab), got ';;'"),
        (["--head-fraction", "1.5"], "error: --head-fraction must be in (0, 1), got 1.5"),
        (
            ["--split-ratios", "0.5,0.5,0.5"],
            "error: --split-ratios must be three non-negative shares summing to 1, got (0.5, 0.5, 0.5)",
        ),
        (
            ["--split-ratios", "0.5,0.5"],
            "error: argument --split-ratios: expected a list of 3 float (comma-separated), got '0.5,0.5'",
        ),
        (["--label-rule", "gte"], "error: argument --label-rule: invalid choice: 'gte' (choose from gt, ge)"),
        (["--format", "parquet"], None),
        (["--dataset", ""], "error: --dataset must name a dataset or a path, got ''"),
    ],
)
def test_bad_data_values_on_every_data_command(args, message, tmp_path, capsys) -> None:
    for command in (
        ["data", "stats"], ["baselines", "--out", str(tmp_path / "b")],
        ["train", "--scorer", "scripted", "--out", str(tmp_path / "t")], ["run", "--out", str(tmp_path / "r")],
    ):
        line = fails([*command, *args], capsys)
        if message is not None:
            assert line == message, (command, line)
        else:
            assert args[0] in line and args[1] in line
    assert not any(tmp_path.glob("[btr]")), "a failed command left its output directory behind"


def test_a_single_class_split_is_refused_before_training_or_scoring(tmp_path, capsys) -> None:
    # Every gift_cards rating is at most 5: with threshold 5, no label is positive.
    message = (
        "error: gift_cards: the train split has a single class (all negative: 0 of 2521 labels are 1); "
        "AUC is undefined - change --positive-threshold/--label-rule"
    )
    assert fails(["baselines", "--positive-threshold", "5", "--out", str(tmp_path / "b")], capsys) == message
    assert (
        fails(["train", "--positive-threshold", "5", "--scorer", "scripted", "--out", str(tmp_path / "t")], capsys)
        == message
    )
    assert (
        fails(
            [
                "run", "--dataset", "gift_cards", "--positive-threshold", "5", "--scorer", "scripted", "--no-align",
                "--out",
                str(tmp_path / "r"),
            ],
            capsys,
        )
        == message
    )
    line = fails(["score", "--positive-threshold", "5", "--scorer", "scripted", "--out", str(tmp_path / "s")], capsys)
    assert line.startswith("error: gift_cards: the valid split has a single class (all negative: 0 of 210")
    line = fails(
        [
            "evaluate", "--policy", "random", "--positive-threshold", "5", "--scorer", "scripted", "--out",
            str(tmp_path / "e"),
        ],
        capsys,
    )
    assert "the test split has a single class" in line
    assert not any(tmp_path.glob("[btrse]"))


def test_a_failed_train_leaves_no_config_behind(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    fails(["train", "--dataset", str(tmp_path / "nowhere"), "--scorer", "scripted", "--out", str(out)], capsys)
    fails(["train", "--scorer", "nonsense", "--warm-start", "none", "--out", str(out)], capsys)
    assert not out.exists()


def test_train_resume_takes_only_the_budget(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert "cannot be given with it" in fails(["train", "--resume", "--out", str(out), "--algo", "ddpg"], capsys)


def test_unknown_config_keys_name_the_file_and_the_key(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("k_core: 2\nalgo: ppo\nrounds: 3\nnot_a_key: 1\n")
    line = fails(["train", "--config", str(path), "--out", str(tmp_path / "t")], capsys)
    assert line.startswith(f"error: {path}: unknown key 'not_a_key'; known:")
    path.write_text("k_core: two\n")
    assert fails(["data", "stats", "--config", str(path)], capsys) == f"error: {path}: k_core must be int, got 'two'"


def test_stats_json_is_strict_json(capsys) -> None:
    from coral.cli.common import json_safe

    assert main(["data", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert stats["users"] == 453
    assert json_safe({"a": [float("nan"), 1.0, {"b": float("inf")}]}) == {"a": [None, 1.0, {"b": None}]}


def test_bad_values_in_a_real_process_have_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "coral.cli", "data", "stats", "--positive-threshold", "nan"], capture_output=True,
        text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --positive-threshold must be a finite number, got nan\n"
