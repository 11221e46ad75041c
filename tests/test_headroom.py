"""The label-aware reference inside ``coral run`` (a new stage, evaluation only) and the report's
training section, on a tiny run with the scripted scorer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from coral.config import from_dict
from coral.errors import CoralError
from coral.pipeline.config import RunConfig
from coral.policies.curves import training_summary
from coral.results import read_rows

TINY = {
    "scorer": "scripted",
    "align": False,
    "baselines": ["ips"],
    "baseline": {"epochs": 1},
    "methods": ["coral-greedy", "coral-ppo"],
    "warm_starts": ["none"],
    "count_references": False,
    "ppo_timesteps": 16,
    "eval_pairs": 30,
    "valid_pairs": 8,
    "n_boot": 50,
    "train": {"n_envs": 2, "batch_size": 32, "val_every": 8, "val_size": 8},
}
REFERENCE = {"label_aware_pairs": 20, "label_aware_nearest": 3, "label_aware_random": 2}


def run_job(config: dict, out: Path) -> str:
    from coral.pipeline.run import MainJob

    log = io.StringIO()
    MainJob(from_dict(RunConfig, config), out, log=lambda msg: print(msg, file=log)).run()
    return log.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, str, str, str]:
    """One tiny run without the reference, then the same run with it (in the same directory):
    (run directory, first log, first results.md, second log)."""
    tmp = tmp_path_factory.mktemp("headroom")
    patch = pytest.MonkeyPatch()
    patch.setenv("CORAL_CACHE_DIR", str(tmp / "cache"))
    try:
        out = tmp / "out"
        first = run_job(TINY, out)
        first_table = (out / "results.md").read_text()
        second = run_job({**TINY, **REFERENCE}, out)
    finally:
        patch.undo()
    return out, first, first_table, second


def test_the_reference_adds_a_stage_and_a_section_and_changes_no_other_stage(runs) -> None:
    out, first, first_table, log = runs
    assert "Headroom" not in first_table
    # Every stage of the run without the reference keeps its identity (a resumed benchmark skips them).
    ran = [line for line in log.splitlines() if line.startswith("[run ]")]
    assert ran == ["[run ] reference-label-aware-none@zero-shot-seed0"], log
    assert first.count("[run ]") == log.count("[skip]")

    table = (out / "results.md").read_text()
    section = table[table.index("## Headroom (label-aware reference, evaluation only)") :]
    assert "| Reference: label-aware (NONE) [zero-shot] |" in section
    assert "| CoRAL-PPO (NONE) [zero-shot] (best learned, by validation AUC) |" in section
    # Never a method: not in the main table, the Δ table, the claims or results.csv.
    before = table[: table.index("## Headroom")]
    assert "label-aware" not in before
    assert not any("label-aware" in row["model"] for row in read_rows(out / "results.csv"))
    assert "label-aware" not in (out / "claims.json").read_text()

    records = json.loads((out / "headroom.json").read_text())
    assert [r["row"] for r in records] == ["reference-label-aware-none@zero-shot", "coral-ppo-none@zero-shot"]
    reference, ppo = records
    assert reference["pairs"] == ppo["pairs"] == [20] and 0 < reference["negatives"][0] < 20
    assert reference["prompts"] > 20 * 5 * 5 and reference["interval"] == "pair bootstrap (one seed)"
    # It reads the label: with the scripted scorer it orders the pairs far better than greedy.
    assert reference["auc"] > reference["greedy_auc"] + 0.1 and reference["low"] > 0
    assert reference["low"] <= reference["difference"] <= reference["high"]
    assert ppo["greedy_auc"] == reference["greedy_auc"]  # the same pairs for every row


def test_the_training_section(runs) -> None:
    out = runs[0]
    table = (out / "results.md").read_text()
    section = table[table.index("## Training of the learned policies") :]
    row = next(line for line in section.splitlines() if line.startswith("| CoRAL-PPO (NONE) [zero-shot] | 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[2]) == 1 and float(cells[3]) >= 0  # 16 steps in rollouts of 2 x 4: two updates, SB3 logs the first
    first, last = (float(x) for x in cells[4].split(" → "))
    assert cells[5] == ("yes" if last > first else "no")
    assert float(cells[7]) == pytest.approx(last - float(cells[6]), abs=2e-4)
    assert (
        "- CoRAL-PPO (NONE) [zero-shot]: median approx_kl" in section
        and "ended above greedy's on the same 8 rows" in section
    )
    assert (out / "training_curves.png").stat().st_size > 1000


def test_training_summary_reads_every_log_segment(tmp_path) -> None:
    run = tmp_path / "run"
    for segment, rows in ((0, [(8, "", "0.1"), (16, "0.02", "0.2")]), (1, [(24, "0.04", "0.3"), (32, "0.5", "0.4")])):
        path = run / "logs" / f"segment{segment}" / "progress.csv"
        path.parent.mkdir(parents=True)
        path.write_text(
            "time/total_timesteps,train/approx_kl,rollout/ep_rew_mean\n" + "".join(f"{t},{k},{r}\n" for t, k, r in rows)
        )
    (run / "validation.csv").write_text(
        "timesteps,val_return,val_auc,val_auc_round0,val_mean_pieces,greedy_return,greedy_auc,n\n0,0.10,0.6,0.5,5,0.12,0.6,8\n32,0.15,0.7,0.5,5,0.12,0.6,8\n"
    )
    summary = training_summary(run)
    assert summary.updates == 3 and summary.median_approx_kl == pytest.approx(0.04)
    assert (summary.val_first, summary.val_last, summary.greedy_return, summary.val_checks, summary.val_rows) == (
        0.10,
        0.15,
        0.12,
        2,
        8,
    )
    assert summary.rose
    empty = training_summary(tmp_path / "nothing")
    assert empty.updates == 0 and np.isnan(empty.median_approx_kl) and not empty.rose


def test_the_reference_needs_greedy_and_a_candidate() -> None:
    with pytest.raises(CoralError, match="needs coral-greedy in methods"):
        from_dict(RunConfig, {"label_aware_pairs": 10, "methods": ["llm-only", "coral-ppo"]})
    with pytest.raises(CoralError, match="at least one candidate"):
        from_dict(RunConfig, {"label_aware_pairs": 10, "label_aware_nearest": 0, "label_aware_random": 0})
    assert (
        from_dict(RunConfig, {"label_aware_nearest": 0, "label_aware_random": 0}).label_aware_pairs == 0
    )  # off: not checked


def test_headroom_over_seeds_pairs_every_row_on_the_reference_pairs() -> None:
    """Two seeds, synthetic scores: the reference's pairs decide every row's AUC, the interval is
    the two-level one, and the best learned policy is chosen by validation AUC, not by these pairs."""
    from coral.pipeline.compare import RunScores
    from coral.pipeline.headroom import headroom, headroom_section
    from coral.pipeline.pairs import SharedPairs
    from coral.pipeline.scores import MethodScores, SplitScores

    rng = np.random.default_rng(0)
    n_test, n_valid, tag = 200, 60, "x"
    labels = {s: (rng.integers(0, 2, n_test), rng.integers(0, 2, n_valid)) for s in (0, 1)}
    test_rows = {s: np.arange(n_test) + 1000 * s for s in (0, 1)}  # each seed its own split's rows
    subset = {s: test_rows[s][::2] for s in (0, 1)}  # the reference's pairs: every other test pair

    def split(y, quality, rows):
        return SplitScores(rows, y, np.clip(0.5 + quality * (y - 0.5) + 0.3 * rng.standard_normal((2, len(y))), 0, 1))

    def method(name, seed, test_quality, valid_quality):
        y_test, y_valid = labels[seed]
        return MethodScores(
            name,
            seed,
            split(y_test, test_quality, test_rows[seed]),
            split(y_valid, valid_quality, np.arange(n_valid)),
            {},
        )

    scores = [
        m
        for s in (0, 1)
        for m in (
            method(f"coral-greedy-dfm@{tag}", s, 0.2, 0.2),
            method(f"coral-ppo-dfm@{tag}", s, 0.6, 0.0),
            method(f"coral-maskable_ppo-features-dfm@{tag}", s, 0.0, 0.8),
        )
    ]
    references = [
        MethodScores(
            f"reference-label-aware-dfm@{tag}",
            s,
            split(labels[s][0][::2], 1.5, subset[s]),
            SplitScores(np.zeros(0), np.zeros(0), np.zeros((2, 0))),
            {"config": {"candidates": "the 10 nearest and 5 random"}, "prompts_scored": 100, "eval_seconds": 10.0},
        )
        for s in (0, 1)
    ]
    run = RunScores(scores, {s: SharedPairs(test_rows[s], np.arange(n_valid), s) for s in (0, 1)}, n_boot=200)
    records = {r["row"]: r for r in headroom(run, references)}
    assert set(records) == {
        f"reference-label-aware-dfm@{tag}",
        f"coral-ppo-dfm@{tag}",
        f"coral-maskable_ppo-features-dfm@{tag}",
    }
    assert all(
        r["pairs"] == [100, 100] and r["interval"] == "two-level bootstrap (seeds, then pairs)"
        for r in records.values()
    )
    assert records[f"coral-maskable_ppo-features-dfm@{tag}"][
        "best_by_validation_auc"
    ]  # its validation AUC, not its test AUC
    assert not records[f"coral-ppo-dfm@{tag}"]["best_by_validation_auc"]
    reference = records[f"reference-label-aware-dfm@{tag}"]
    assert (
        reference["low"] > 0 and records[f"coral-ppo-dfm@{tag}"]["low"] > 0
    )  # better on test, whatever validation says
    assert records[f"coral-maskable_ppo-features-dfm@{tag}"]["difference"] < 0
    # Every row's greedy AUC is greedy's on the reference's 100 pairs, not on the 200 shared ones.
    from coral.stats import delong

    greedy = [run.methods[f"coral-greedy-dfm@{tag}"][s].test.at(subset[s]) for s in (0, 1)]
    greedy_on_subset = np.mean([delong(g.labels, g.p[-1], g.p[-1]).auc_a for g in greedy])
    assert reference["greedy_auc"] == pytest.approx(greedy_on_subset)
    text = headroom_section(list(records.values()), str)
    assert "200 prompts in 20 s over 2 seed(s) (10.0 prompts/s)" in text and "(best learned, by validation AUC)" in text
