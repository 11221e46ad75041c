"""``experiments/blend_check.py``: the rank blend of the LLM with the best CTR model, read from finished runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from experiment_scripts import load_experiment_script

from coral.pipeline.scores import SCORES_FILE, MethodScores, SplitScores, save_scores


@pytest.fixture(scope="module")
def blend_check():
    return load_experiment_script("blend_check")


def _write_stage(run: Path, name: str, models: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]) -> None:
    """A stage's scores in coral run's layout (:func:`save_scores`), each model's per split (rows, labels, p)."""
    (run / "stages" / name).mkdir(parents=True)
    methods = [
        MethodScores(model, 3, SplitScores(*splits["test"]), SplitScores(*splits["valid"]))
        for model, splits in models.items()
    ]
    save_scores(run / "stages" / name / SCORES_FILE, methods)


def test_blend_is_the_weighted_mean_of_scaled_ranks(blend_check):
    a, b = np.array([0.1, 0.9, 0.5, 0.3]), np.array([10.0, 20.0, 40.0, 30.0])
    # ranks of a: 1 4 3 2, of b: 1 2 4 3; each divided by 4
    expected = 0.75 * np.array([1, 4, 3, 2]) / 4 + 0.25 * np.array([1, 2, 4, 3]) / 4
    np.testing.assert_allclose(blend_check.blend(a, b, 0.25), expected)
    np.testing.assert_allclose(blend_check.blend(a, b, 0.0), np.array([1, 4, 3, 2]) / 4)


def test_the_ctr_model_is_chosen_on_validation_never_on_test(blend_check, tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = {"valid": rng.integers(0, 2, 60), "test": rng.integers(0, 2, 80)}
    rows = {s: np.arange(len(y[s])) + (1000 if s == "test" else 0) for s in y}
    noise = {s: rng.normal(size=len(y[s])) for s in y}
    # dfm ranks validation perfectly and test at random; wdl the other way round.
    good = {s: y[s] + 0.01 * noise[s] for s in y}
    dfm = {s: (rows[s], y[s], good[s] if s == "valid" else noise[s]) for s in y}
    wdl = {s: (rows[s], y[s], good[s] if s == "test" else noise[s]) for s in y}
    run = tmp_path / "run"
    _write_stage(run, "baselines-seed3-x", {"wdl": wdl, "dfm": dfm})
    twin = {s: (rows[s], y[s], noise[s]) for s in y}
    _write_stage(run, "twins-seed3-x", {blend_check.TWIN: twin})
    greedy = {s: (rows[s], y[s], np.vstack([noise[s], noise[s]])) for s in y}
    _write_stage(run, "coral-greedy@some-scorer-seed3-x", {"coral-greedy": greedy})

    loaded = blend_check.load_run(run)
    assert loaded["ctr"] == "dfm" and loaded["seed"] == 3
    np.testing.assert_array_equal(loaded["ctr_p"], noise["test"])
    assert blend_check.main([str(run), "--weights", "0.5", "--n-boot", "50"]) == 0
    assert "best CTR by validation dfm, 80 test pairs" in capsys.readouterr().out


def test_a_folder_without_the_stages_is_a_one_line_error(blend_check, tmp_path):
    with pytest.raises(SystemExit, match=r"blend_check: .*missing: expected one stage coral-greedy@\*, found 0"):
        blend_check.main([str(tmp_path / "missing")])
