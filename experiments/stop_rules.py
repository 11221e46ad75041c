"""Label-free stopping rules on greedy's saved P(Yes) per round (issue 28's stopping clause); no LLM call.

A stopping rule reads only the scorer's own P(Yes) after each of greedy's pieces and ends a target's
episode early; the target is then scored by the P it had when it stopped. The clause it answers: "an AUC
above the best fixed-k greedy (stop after k pieces) at the same mean number of pieces". Each rule is
compared, on the same rows, with greedy stopped after the best k (by AUC on those rows, so the reference
is favoured) among k <= the rule's mean pieces. Rules are chosen on validation folders and only the
chosen one is read on the test folders (both are ``experiments/policy_tuning.py`` OUT folders, one per
seed, whose ``greedy.npz`` holds P after 0..5 pieces)::

    python experiments/stop_rules.py --valid V_SEED0 V_SEED1 --test T_SEED0 T_SEED1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from coral.stats import PooledEstimate, format_interval, pooled_auc_difference


@dataclass(frozen=True)
class StopRule:
    """Stop after the first piece k >= ``min_pieces`` at which the rule's test holds (else after the last).

    ``kind`` "confident": |P_k - 0.5| >= ``threshold`` (the scorer is sure enough);
    ``kind`` "settled": |P_k - P_(k-1)| < ``threshold`` (the last piece barely moved it).
    """

    kind: str
    """"confident" or "settled"."""
    min_pieces: int
    """Pieces every target gets before the rule may stop it."""
    threshold: float
    """The rule's cut on |P - 0.5| or on |P_k - P_(k-1)|."""

    @property
    def name(self) -> str:
        """``confident>=0.20 after 2`` or ``settled<0.010 after 1``."""
        test = f"confident>={self.threshold:.2f}" if self.kind == "confident" else f"settled<{self.threshold:.3f}"
        return f"{test} after {self.min_pieces}"

    def pieces(self, p: np.ndarray) -> np.ndarray:
        """Pieces each target gets: (rows,) ints in [min_pieces, rounds - 1].

        :param p: (rounds, rows) P(Yes) after 0, 1, ... pieces of greedy's order.
        """
        last = p.shape[0] - 1
        change = np.vstack([np.full((1, p.shape[1]), np.inf), np.abs(np.diff(p, axis=0))])
        stops = np.abs(p - 0.5) >= self.threshold if self.kind == "confident" else change < self.threshold
        stops[: self.min_pieces] = False
        stops[last] = True
        return np.argmax(stops, axis=0)


def stopped_p(p: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Each row's P(Yes) after its own number of pieces.

    :param p: (rounds, rows) P(Yes) per round.
    :param pieces: (rows,) pieces per row.
    """
    return p[pieces, np.arange(p.shape[1])]


def best_fixed_k(p: np.ndarray, y: np.ndarray, at_most: float) -> int:
    """The k <= ``at_most`` whose fixed-k greedy has the highest AUC on these rows (the favoured reference).

    :param p: (rounds, rows) P(Yes) per round.
    :param y: (rows,) labels.
    :param at_most: the largest k allowed (a rule's mean pieces).
    """
    ks = range(int(np.floor(at_most + 1e-9)) + 1)
    return max(ks, key=lambda k: roc_auc_score(y, p[k]))


@dataclass(frozen=True)
class RuleResult:
    """One rule over the seeds: its pieces, its reference ks and AUC(rule) - AUC(reference) pooled."""

    rule: StopRule
    mean_pieces: tuple[float, ...]
    """Per seed, the rule's mean pieces per target."""
    reference_k: tuple[int, ...]
    """Per seed, the best fixed k <= the rule's mean pieces."""
    auc: tuple[float, ...]
    """Per seed, the rule's AUC."""
    delta: PooledEstimate
    """AUC(rule) - AUC(greedy after reference_k), pair bootstrap pooled over the seeds."""


def evaluate(rule: StopRule, seeds: list[tuple[np.ndarray, np.ndarray]], n_boot: int = 2000) -> RuleResult:
    """The rule against its favoured fixed-k reference on every seed's rows.

    :param rule: the stopping rule.
    :param seeds: per seed, (P per round (rounds, rows), labels (rows,)).
    :param n_boot: bootstrap replicates.
    """
    pieces = [rule.pieces(p) for p, _ in seeds]
    ks = [best_fixed_k(p, y, float(n.mean())) for (p, y), n in zip(seeds, pieces, strict=True)]
    ruled = [stopped_p(p, n) for (p, _), n in zip(seeds, pieces, strict=True)]
    delta = pooled_auc_difference(
        [y for _, y in seeds], ruled, [p[k] for (p, _), k in zip(seeds, ks, strict=True)], n_boot=n_boot, seed=0
    )
    aucs = tuple(float(roc_auc_score(y, s)) for (_, y), s in zip(seeds, ruled, strict=True))
    return RuleResult(rule, tuple(float(n.mean()) for n in pieces), tuple(ks), aucs, delta)


def candidate_rules(rounds: int) -> list[StopRule]:
    """The grid searched on validation: both kinds, every minimum below the last round, a few thresholds."""
    return [
        StopRule(kind, m, t)
        for m in range(1, rounds - 1)
        for kind, thresholds in (("confident", (0.1, 0.2, 0.3, 0.4)), ("settled", (0.005, 0.01, 0.02, 0.05)))
        for t in thresholds
    ]


def _greedy(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """A policy_tuning.py folder's greedy P per round, its labels and its split."""
    path = folder / "greedy.npz"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (a policy_tuning.py OUT folder holds greedy.npz)")
    with np.load(path, allow_pickle=False) as saved:
        return saved["p"], saved["labels"], json.loads(str(saved["info"])).get("split", "valid")


def _load(folders: list[Path], split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    loaded = [_greedy(f) for f in folders]
    wrong = [str(f) for f, (_, _, s) in zip(folders, loaded, strict=True) if s != split]
    if wrong:
        raise SystemExit(f"error: not {split} results: {', '.join(wrong)}")
    return [(p, y) for p, y, _ in loaded]


def _per_seed(values: tuple[float, ...], spec: str) -> str:
    return " / ".join(spec.format(v) for v in values)


def _row(result: RuleResult) -> str:
    delta = format_interval(result.delta.estimate, result.delta.low, result.delta.high)
    aucs = _per_seed(tuple(100 * a for a in result.auc), "{:.2f}")
    pieces, ks = _per_seed(result.mean_pieces, "{:.2f}"), _per_seed(result.reference_k, "{}")
    return f"| {result.rule.name} | {pieces} | {aucs} | {ks} | {delta} |"


def _curve(split: str, seeds: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """Greedy's AUC after each fixed number of pieces, per seed."""
    curves = "; ".join(
        f"k=0..{p.shape[0] - 1} " + " ".join(f"{100 * roc_auc_score(y, p[k]):.2f}" for k in range(p.shape[0]))
        for p, y in seeds
    )
    return f"\nGreedy stopped after k pieces ({split}, per seed): {curves}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--valid", nargs="+", type=Path, required=True, help="validation OUT folders, one per seed")
    parser.add_argument("--test", nargs="*", type=Path, default=[], help="test OUT folders of the same seeds")
    args = parser.parse_args(argv)
    valid = _load(args.valid, "valid")
    test = _load(args.test, "test") if args.test else []  # a wrong folder is refused before any work
    head = "| rule | mean pieces (per seed) | AUC (per seed) | best fixed k <= mean | rule − that greedy, pooled |\n"
    head += "|---|---|---|---|---|"
    print(_curve("valid", valid))
    results = [evaluate(rule, valid) for rule in candidate_rules(valid[0][0].shape[0])]
    chosen = max(results, key=lambda r: r.delta.estimate)
    print(head)
    print("\n".join(_row(r) for r in results))
    print(f"\nChosen on validation: {chosen.rule.name}")
    if test:
        print(_curve("test", test))
        print(head)
        print(_row(evaluate(chosen.rule, test)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
