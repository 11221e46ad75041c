"""Pool ``experiments/policy_tuning.py`` results over seeds: each method − greedy, and each prior vote − the
prediction it follows and that prediction − greedy, with the pair bootstrap pooled over the OUT folders
(one per seed, each on its own validation tuning rows, or each on its seed's test pairs with ``--split test``;
a method run on fewer rows, such as the label-aware reference, is compared with greedy on its own rows). Folders
of different splits are refused. Prints a Markdown table:

    python experiments/pool_tuning.py OUT_SEED0 OUT_SEED1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from coral.stats import format_interval, pooled_auc_difference


def _rows(folder: Path, name: str) -> dict:
    """A method's saved rows: labels, its last round's P, the row indices and its info."""
    with np.load(folder / f"{name}.npz", allow_pickle=False) as saved:
        info = json.loads(str(saved["info"]))
        return {"labels": saved["labels"], "p": saved["p"][-1], "rows": saved["rows"], "info": info}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="policy_tuning.py OUT folders, one per seed")
    args = parser.parse_args(argv)
    names = sorted(set.intersection(*({p.stem for p in f.glob("*.npz")} for f in args.folders)) - {"greedy"})
    greedy = [_rows(f, "greedy") for f in args.folders]
    # Each result records its split (results from before policy_tuning.py's --split are validation ones).
    splits = {g["info"].get("split", "valid") for g in greedy}
    if len(splits) > 1:
        raise SystemExit(f"error: the folders hold different splits ({', '.join(sorted(splits))}); pool one split")
    position = [{int(r): k for k, r in enumerate(g["rows"])} for g in greedy]
    print("| method | − greedy | − the prediction it follows | the prediction − greedy |\n|---|---|---|---|")
    for name in names:
        runs = [_rows(f, name) for f in args.folders]
        on = [np.array([at[int(r)] for r in run["rows"]]) for run, at in zip(runs, position, strict=True)]
        ys, p = [run["labels"] for run in runs], [run["p"] for run in runs]
        g = [seed["p"][rows] for seed, rows in zip(greedy, on, strict=True)]
        if any(not np.array_equal(y, seed["labels"][rows]) for y, seed, rows in zip(ys, greedy, on, strict=True)):
            raise SystemExit(f"error: {name}'s labels differ from greedy's on the same rows")
        cells = [pooled_auc_difference(ys, p, g, n_boot=2000, seed=0)]
        if all("prior_p" in run["info"] for run in runs):
            prior = [np.asarray(run["info"]["prior_p"]) for run in runs]
            cells += [
                pooled_auc_difference(ys, p, prior, n_boot=2000, seed=0),
                pooled_auc_difference(ys, prior, g, n_boot=2000, seed=0),
            ]
        text = [format_interval(c.estimate, c.low, c.high) for c in cells]
        print(f"| {name} ({sum(len(y) for y in ys)} rows) | " + " | ".join(text + [""] * (3 - len(text))) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
