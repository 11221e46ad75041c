"""results.md's headroom section: the label-aware reference against greedy retrieval, beside the
learned policies, on the same pairs. Evaluation only.

The label-aware reference (:mod:`coral.policies.label_aware`) reads each target's label, so it is
no method: its rows (``reference-label-aware-WARM@SCORER``) never enter :class:`RunScores`' main
table, the Δ table or the claims. It runs on a seeded stratified subset of each seed's shared test
pairs (:func:`reference_rows`: its LLM cost is (nearest + random) prompts per pair and round), and
this section compares, on exactly those pairs, the reference and every learned policy of the same
scorer with greedy retrieval in the same warm start: AUC(row) − AUC(greedy), mean over seeds with
the two-level bootstrap interval (seeds, then pairs; :meth:`RunScores.compare_two_level`, as the
claims decide), the pair bootstrap for one seed.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from coral.data.dataset import CoralDataset
from coral.data.sample import stratified_subset
from coral.pipeline.compare import RunScores, base_name, is_trained_policy, scorer_tag
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.scores import MethodScores
from coral.policies.label_aware import is_reference

#: File of the section's figures in the dataset's run directory.
HEADROOM_FILE = "headroom.json"


def reference_rows(dataset: CoralDataset, pairs: SharedPairs, size: int) -> np.ndarray:
    """The test rows the label-aware reference runs on: ``size`` of the shared test pairs, a
    subset seeded by the pairs' seed that keeps their class shares (at least one row of each class).

    :param dataset: the dataset the pairs were drawn from.
    :param pairs: the seed's shared pairs.
    :param size: how many (0 or more than there are: all of them).
    """
    return pairs.test[stratified_subset(dataset.test.label[pairs.test], size, pairs.seed, proportional=True)]


def _warm_start(model: str) -> str:
    """``reference-label-aware-dfm@x`` -> ``dfm``."""
    return base_name(model).rsplit("-", 1)[1]


def headroom(run: RunScores, references: Sequence[MethodScores]) -> list[dict[str, Any]]:
    """For each label-aware reference row: the reference and every learned policy of its scorer,
    each against greedy retrieval (same scorer and warm start) on the reference's pairs.

    :param run: the run's scores on the shared pairs (the methods; never the references).
    :param references: the label-aware stages' scores (``reference-...`` rows, test pairs only).
    :returns: one record per (reference, compared row): names, AUCs and the difference with its interval.
    """
    records: list[dict[str, Any]] = []
    for model in sorted({m.model for m in references}):
        tag = scorer_tag(model)
        greedy = f"coral-greedy-{_warm_start(model)}@{tag}"
        runs = {m.seed: m for m in references if m.model == model}
        seeds = sorted(s for s in runs if greedy in run.methods and s in run.methods[greedy])
        if not seeds:
            records.append(
                {
                    "reference": model,
                    "row": model,
                    "greedy": greedy,
                    "missing": "greedy retrieval of this scorer and warm start was not run",
                }
            )
            continue
        learned = sorted(
            m
            for m in run.methods
            if scorer_tag(m) == tag
            and is_trained_policy(m)
            and not is_reference(m)
            and any(s in run.methods[m] for s in seeds)
        )
        best = max(learned, key=run.valid_auc) if learned else None
        # The same pairs for every row: each seed's reference rows, no validation pairs.
        sub_pairs = {s: SharedPairs(runs[s].test.rows, np.zeros(0, dtype=np.int64), run.pairs[s].seed) for s in seeds}
        compared = [runs[s] for s in seeds] + [
            run.methods[m][s] for m in [greedy, *learned] for s in seeds if s in run.methods[m]
        ]
        sub = RunScores(compared, sub_pairs, n_boot=run.n_boot)
        for row in [model, *learned]:
            difference = sub.compare_two_level(row, greedy)
            auc, greedy_auc = sub.pooled(row), sub.pooled(greedy)
            records.append(
                {
                    "reference": model,
                    "row": row,
                    "greedy": greedy,
                    "label_aware": row == model,
                    "best_by_validation_auc": row == best,
                    "seeds": seeds,
                    "pairs": [len(sub_pairs[s].test) for s in seeds],
                    "negatives": [int((runs[s].test.labels == 0).sum()) for s in seeds],
                    "auc": auc.estimate,
                    "greedy_auc": greedy_auc.estimate,
                    "difference": difference.estimate,
                    "low": difference.low,
                    "high": difference.high,
                    "per_seed": list(difference.per_seed),
                    "interval": "two-level bootstrap (seeds, then pairs)"
                    if len(seeds) > 1
                    else "pair bootstrap (one seed)",
                    **(_cost([runs[s] for s in seeds]) if row == model else {}),
                }
            )
    return records


def _cost(references: Sequence[MethodScores]) -> dict[str, Any]:
    """The reference's candidate set, and the prompts and seconds of its evaluations (all seeds)."""
    return {
        "candidates": references[0].info.get("config", {}).get("candidates", ""),
        "prompts": sum(int(m.info.get("prompts_scored", 0)) for m in references),
        "seconds": sum(float(m.info.get("eval_seconds", 0.0)) for m in references),
    }


def headroom_section(records: Sequence[dict[str, Any]], display: Callable[[str], str]) -> str:
    """results.md's "Headroom (label-aware reference, evaluation only)" section ("" without references).

    :param records: :func:`headroom`'s records.
    :param display: the report's display name of a row.
    """
    if not records:
        return ""
    lines = ["", "## Headroom (label-aware reference, evaluation only)", ""]
    for reference in sorted({r["reference"] for r in records}):
        rows = [r for r in records if r["reference"] == reference]
        ref = rows[0]
        if "missing" in ref:
            lines += [f"{display(reference)}: not compared ({ref['missing']}).", ""]
            continue
        lines += [
            f"The label-aware reference reads each target's label: at every round it takes, among {ref['candidates']} "
            "unused observed "
            f"interactions in the {_warm_start(reference).upper()} warm start, the piece whose prompt's P(Yes) "
            "lands nearest to the label. It is no method and enters no claim, and it is no upper bound on every "
            "policy (it is greedy in the label); it shows how much room a "
            f"label-free policy has over greedy retrieval with the same scorer. On {_per_seed(ref['pairs'])} of "
            "each seed's shared test pairs "
            f"(seeds {', '.join(map(str, ref['seeds']))}; {_per_seed(ref['negatives'])} negative; a seeded stratified "
            "subset), every row on the same pairs: AUC x100 (mean over seeds) "
            f"and AUC(row) − AUC({display(ref['greedy'])}) with its 95% {ref['interval']} interval. The best learned "
            "policy is chosen by validation AUC on the shared validation pairs, never on these pairs.",
            "",
            f"| Row | AUC | {display(ref['greedy'])} AUC | Δ vs greedy [95% CI] | per seed |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            name = (
                f"Reference: label-aware ({_warm_start(r['row']).upper()}) [{scorer_tag(r['row'])}]"
                if r["label_aware"]
                else display(r["row"])
            )
            if r["best_by_validation_auc"]:
                name += " (best learned, by validation AUC)"
            per_seed = ", ".join(f"{100 * d:+.2f}" for d in r["per_seed"])
            lines.append(
                f"| {name} | {_pct(r['auc'])} | {_pct(r['greedy_auc'])} | {100 * r['difference']:+.2f} "
                f"[{_signed(r['low'])}, {_signed(r['high'])}] | {per_seed} |"
            )
        seconds, prompts = ref.get("seconds", 0.0), ref.get("prompts", 0)
        rate = f" ({prompts / seconds:.1f} prompts/s)" if seconds > 0 else ""
        lines += [
            "",
            f"Cost of the reference: {prompts} prompts in {seconds:.0f} s over {len(ref['seeds'])} seed(s){rate}.",
            "",
        ]
    return "\n".join(lines)


def _per_seed(counts: Sequence[int]) -> str:
    """``300`` when every seed has the same count, else ``300, 299, 300``."""
    return str(counts[0]) if len(set(counts)) == 1 else ", ".join(map(str, counts))


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.2f}"


__all__ = ["HEADROOM_FILE", "headroom", "headroom_section", "reference_rows"]
