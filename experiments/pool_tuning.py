"""Pool ``experiments/policy_tuning.py`` results over seeds: each method − greedy, and each prior vote − the
prediction it follows and that prediction − greedy, with the pair bootstrap pooled over the OUT folders
(one per seed, each on its own validation tuning rows). Prints a Markdown table:

    python experiments/pool_tuning.py OUT_SEED0 OUT_SEED1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from coral.stats import format_interval, pooled_auc_difference


def _rows(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    with np.load(folder / f"{name}.npz", allow_pickle=False) as saved:
        return saved["labels"], saved["p"][-1], json.loads(str(saved["info"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="policy_tuning.py OUT folders, one per seed")
    args = parser.parse_args(argv)
    names = sorted(set.intersection(*({p.stem for p in f.glob("*.npz")} for f in args.folders)) - {"greedy"})
    print("| method | − greedy | − the prediction it follows | the prediction − greedy |\n|---|---|---|---|")
    for name in names:
        loaded = [(_rows(f, name), _rows(f, "greedy")) for f in args.folders]
        if any(len(y) != len(g[0]) or not np.array_equal(y, g[0]) for (y, _, _), g in loaded):
            print(f"| {name} | (not on greedy's rows) | | |")
            continue
        ys = [y for (y, _, _), _ in loaded]
        p, greedy = [p for (_, p, _), _ in loaded], [g[1] for _, g in loaded]
        cells = [pooled_auc_difference(ys, p, greedy, n_boot=2000, seed=0)]
        if all("prior_p" in info for (_, _, info), _ in loaded):
            prior = [np.asarray(info["prior_p"]) for (_, _, info), _ in loaded]
            cells += [
                pooled_auc_difference(ys, p, prior, n_boot=2000, seed=0),
                pooled_auc_difference(ys, prior, greedy, n_boot=2000, seed=0),
            ]
        text = [format_interval(c.estimate, c.low, c.high) for c in cells]
        print(f"| {name} | " + " | ".join(text + [""] * (3 - len(text))) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
