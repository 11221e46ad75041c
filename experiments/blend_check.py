"""Does the LLM's score add anything to the best CTR model's? A rank blend, read from finished runs.

For each ``coral run`` output folder given (one seed each), on its shared test pairs: the best CTR
baseline by AUC on the run's validation pairs, CoRAL-greedy's P(Yes) after its last round, and the
input twin that gets the LLM's numbers and the like-share without an LLM (``twin-rates+cf+share``).
A blend is the weighted mean of the two scores' ranks within the pairs (labels unused; the weights
are fixed in advance, nothing is tuned on test). Every Δ is paired on the same pairs and pooled over
the folders (``coral.stats.pooled_auc_difference``). No LLM call is made:

    python experiments/blend_check.py runs/default runs/seed1 --weights 0.1 0.25 0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from coral.errors import CoralError
from coral.metrics import binary_metrics
from coral.pipeline.scores import SCORES_FILE, MethodScores, load_scores
from coral.stats import format_interval, pooled_auc_difference

TWIN = "twin-rates+cf+share-dfm"
CTR_MODELS = ("dfm", "dcn", "wdl", "afm", "ips", "cause")


def _stage(run: Path, prefix: str) -> list[MethodScores]:
    """The methods' scores of the one stage whose folder starts with ``prefix``."""
    found = sorted((run / "stages").glob(f"{prefix}*/{SCORES_FILE}"))
    if len(found) != 1:
        raise CoralError(f"{run}: expected one stage {prefix}*, found {len(found)}")
    return load_scores(found[0])


def load_run(run: Path) -> dict[str, object]:
    """Labels and the three scores (best CTR by validation, the LLM, the twin) on a run's test pairs."""
    greedy = _stage(run, "coral-greedy@")[0]
    others = {m.model: m for m in _stage(run, "baselines-") + _stage(run, "twins-")}

    def last_round(model: str, split: str) -> np.ndarray:
        """``model``'s final P(like) on greedy's pairs of ``split``, in greedy's order."""
        return getattr(others[model], split).at(getattr(greedy, split).rows).p[-1]

    ctr = max(
        (m for m in CTR_MODELS if m in others),
        key=lambda m: binary_metrics(greedy.valid.labels, last_round(m, "valid"), n_boot=0)["auc"],
    )
    return {
        "run": str(run), "seed": greedy.seed, "ctr": ctr, "y": greedy.test.labels, "ctr_p": last_round(ctr, "test"),
        "llm": greedy.test.p[-1], "twin": last_round(TWIN, "test"),
    }


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x the ranks of a + weight x the ranks of b, each scaled to (0, 1]."""
    return (1 - weight) * rankdata(a) / len(a) + weight * rankdata(b) / len(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="coral run output folders (one seed each)")
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0.1, 0.25, 0.5], help="the LLM's (or the twin's) weights"
    )
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        runs = [load_run(run) for run in args.runs]
    except (CoralError, OSError, KeyError) as err:
        raise SystemExit(f"blend_check: {err}") from None
    ys = [r["y"] for r in runs]

    def delta(a: str, b: str) -> str:
        d = pooled_auc_difference(ys, [r[a] for r in runs], [r[b] for r in runs], n_boot=args.n_boot)
        return format_interval(d.estimate, d.low, d.high)

    def line(name: str, key: str) -> None:
        """A table row: the mean AUC over runs and the pooled Δ against the best CTR model."""
        auc = np.mean([binary_metrics(r["y"], r[key], n_boot=0)["auc"] for r in runs])
        print(f"| {name} | {100 * auc:.2f} | {delta(key, 'ctr_p') if key != 'ctr_p' else ''} |")

    for r in runs:
        print(f"{r['run']}: seed {r['seed']}, best CTR by validation {r['ctr']}, {len(r['y'])} test pairs")
    print("\n| row | AUC (mean over runs) | − best CTR [95% pooled pair CI] |\n|---|---|---|")
    for name, key in (("best CTR by validation", "ctr_p"), ("CoRAL-greedy (LLM)", "llm"), (TWIN + " (no LLM)", "twin")):
        line(name, key)
    for w in args.weights:
        for r in runs:
            r[f"llm{w}"], r[f"twin{w}"] = blend(r["ctr_p"], r["llm"], w), blend(r["ctr_p"], r["twin"], w)
        line(f"CTR ranks blended with the LLM's, weight {w}", f"llm{w}")
        line(f"CTR ranks blended with the twin's, weight {w}", f"twin{w}")
        print(f"| (LLM blend − twin blend, weight {w}) | | {delta(f'llm{w}', f'twin{w}')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
