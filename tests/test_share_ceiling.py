"""``experiments/share_ceiling.py``: what the like-share of k nearest pieces adds to a linear reader of the numbers."""

from __future__ import annotations

from experiment_scripts import load_experiment_script


def test_one_row_per_k_each_against_the_numbers_alone(capsys) -> None:
    script = load_experiment_script("share_ceiling")
    assert script.main(["--dataset", "gift_cards", "--seeds", "0", "--pairs", "60", "--ks", "2", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| LR(")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| LR(base rates + CF embeddings)",
        "| LR(base rates + CF embeddings + like-share@2)",
        "| LR(base rates + CF embeddings + like-share@3)",
    ]
    assert rows[0].endswith("|  |") and all("[" in row for row in rows[1:])  # the Δ only where there is a share
