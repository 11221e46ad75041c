"""The label-free stopping rules of ``experiments/stop_rules.py`` (issue 28's stopping clause)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from experiment_scripts import load_experiment_script


@pytest.fixture(scope="module")
def stop_rules():
    return load_experiment_script("stop_rules")


# P(Yes) after 0..5 pieces (rows) of three targets (columns).
P = np.array(
    [
        [0.50, 0.50, 0.50],
        [0.55, 0.90, 0.44],
        [0.58, 0.91, 0.20],
        [0.75, 0.60, 0.21],
        [0.76, 0.62, 0.40],
        [0.77, 0.63, 0.41],
    ]
)


def test_rules_stop_where_a_hand_count_says(stop_rules) -> None:
    # |P - 0.5| >= 0.2 first at piece 3 / 1 / 2; from piece 2 on: 3 / 2 / 2.
    assert stop_rules.StopRule("confident", 1, 0.2).pieces(P).tolist() == [3, 1, 2]
    assert stop_rules.StopRule("confident", 2, 0.2).pieces(P).tolist() == [3, 2, 2]
    # |P_k - P_(k-1)| < 0.05 first at piece 2 / 2 / 3; never for a threshold no change is below: the last piece.
    assert stop_rules.StopRule("settled", 1, 0.05).pieces(P).tolist() == [2, 2, 3]
    assert stop_rules.StopRule("settled", 1, 0.001).pieces(P).tolist() == [5, 5, 5]
    assert stop_rules.stopped_p(P, np.array([3, 1, 2])).tolist() == [0.75, 0.90, 0.20]


def test_the_reference_is_the_best_fixed_k_no_larger_than_the_mean(stop_rules) -> None:
    y = np.array([1, 1, 0, 0])
    p = np.array([[0.5] * 4, [0.9, 0.1, 0.8, 0.2], [0.9, 0.8, 0.2, 0.1], [0.1, 0.2, 0.8, 0.9]])  # AUC .5 .5 1 0
    assert stop_rules.best_fixed_k(p, y, at_most=1.9) == 0  # k=2 is better but over the mean: not allowed
    assert stop_rules.best_fixed_k(p, y, at_most=2.0) == 2
    assert stop_rules.best_fixed_k(p, y, at_most=3.0) == 2


def _folder(path, split: str, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.5 + (y - 0.5) * np.linspace(0, 0.4, 6)[:, None] + rng.normal(0, 0.2, (6, 60)), 0, 1)
    path.mkdir()
    np.savez(path / "greedy.npz", labels=y, p=p, rows=np.arange(60), info=json.dumps({"split": split}))
    return path


def test_chooses_on_validation_reads_test_and_refuses_a_mixed_up_split(stop_rules, tmp_path, capsys) -> None:
    valid = [_folder(tmp_path / f"v{s}", "valid", s) for s in (0, 1)]
    test = [_folder(tmp_path / f"t{s}", "test", 10 + s) for s in (0, 1)]
    assert stop_rules.main(["--valid", *map(str, valid), "--test", *map(str, test)]) == 0
    out = capsys.readouterr().out
    chosen = out.split("Chosen on validation: ")[1].split("\n")[0]
    # The test table holds one row: the rule validation chose.
    assert out.split("(test, per seed)")[1].count("| " + chosen + " |") == 1
    assert out.split("(test, per seed)")[1].count(" after ") == 1
    with pytest.raises(SystemExit, match="not valid results"):
        stop_rules.main(["--valid", str(test[0])])
