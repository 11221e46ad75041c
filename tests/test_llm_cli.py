"""``coral score``: the LLM-only baseline end to end, on a tiny model directory."""

from __future__ import annotations

import csv

from coral.cli import main
from coral.results import read_rows


def test_score_writes_a_results_row_and_predictions(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    args = [
        "score", "--dataset", "gift_cards", "--split", "test", "--out", str(out), "--scorer", f"hf:{tiny_model_dir}",
        "--precision", "float32", "--limit", "12", "--cache-file", str(tmp_path / "c.sqlite"),
    ]
    assert main(args) == 0
    rows = read_rows(out / "results.csv")
    assert len(rows) == 1
    row = rows[0]
    assert (
        row["model"] == "llm-only"
        and row["dataset"] == "gift_cards"
        and row["split"] == "test"
        and row["n_test"] == "12"
    )
    assert row["prompt_version"].startswith("coral-prompt-v3-shared") and row["scorer"].startswith("hf|")
    with open(out / "predictions_test.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 12 and all(0 < float(p["p_yes"]) < 1 for p in preds)
    # The dataset's own ids, with the internal indices beside them.
    from coral.data import load_dataset

    ds = load_dataset("gift_cards")
    assert all(
        p["user"] == ds.user_ids[int(p["user_index"])] and p["item"] == ds.item_ids[int(p["item_index"])] for p in preds
    )
    # --limit is a seeded sample that keeps both classes (the first 12 test pairs hold no negative).
    assert {p["label"] for p in preds} == {"0", "1"} and not (ds.test.label[:12] == 0).any()
    # A re-run is served from the score cache and replaces its row instead of adding one.
    assert main(args) == 0
    assert len(read_rows(out / "results.csv")) == 1


def test_score_reports_a_missing_model_in_one_line(tmp_path, capsys):
    assert main(["score", "--out", str(tmp_path / "out"), "--scorer", f"hf:{tmp_path / 'nope'}", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model path") and "nope" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_score_refuses_a_negative_limit(tmp_path, capsys):
    assert main(["score", "--out", str(tmp_path / "out"), "--scorer", "scripted", "--limit", "-5"]) == 2
    assert (
        capsys.readouterr().err
        == "error: --limit must be 0 (all pairs) or >= 2 (a sample that keeps both classes), got -5\n"
    )
    assert not (tmp_path / "out").exists()
