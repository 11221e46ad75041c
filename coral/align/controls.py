"""Controls that show whether a scorer reads the evidence (issue 13.4).

On the same target pairs, one scorer is run with no evidence, with the k nearest observed training
interactions (the greedy retrieval), with k random ones, and with the k nearest pieces of ANOTHER
target (shuffled: the wrong neighbourhood in the very same wording). A scorer that reads evidence
gains from nearest pieces and not from shuffled ones; every difference is paired (same pairs,
same bootstrap resamples, DeLong p-value).

Shuffled pieces are written for this target in the relation they had to their own target: a
rating of the partner's item by user U becomes "user U liked/disliked this item", a rating by the
partner user of item J becomes "this user liked/disliked J" (the partner's labels). So the nearest
and the shuffled control differ in content only, not in wording ("this item" vs another title).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coral.align.topk import nearest_and_random
from coral.data.dataset import CoralDataset
from coral.evidence import Evidence
from coral.retrieval import LeakageError

CONTROLS = ("none", "nearest", "random", "shuffled")


def shuffled_partners(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """For each target j another target perm[j] with a different user and a different item."""
    rng = np.random.default_rng([seed, 99])
    n = len(users)
    perm = rng.permutation(n)
    for _ in range(100):
        bad = np.flatnonzero((users[perm] == users) | (items[perm] == items))
        if len(bad) == 0:
            break
        perm[bad] = rng.choice(n, len(bad))
    return perm


def transplant(piece: Evidence, partner: tuple[int, int], target: tuple[int, int]) -> Evidence:
    """``piece`` (evidence of the ``partner`` pair) in the same relation to ``target``: on the
    partner's item -> on the target's item, by the partner user -> by the target user, with the
    piece's own label; a piece about neither stays as it is."""
    if piece.item == partner[1]:
        return Evidence(piece.user, target[1], piece.label)
    if piece.user == partner[0]:
        return Evidence(target[0], piece.item, piece.label)
    return piece


def control_evidence(
    index: Any, users: np.ndarray, items: np.ndarray, k: int, seed: int
) -> dict[str, list[tuple[Evidence, ...]]]:
    """Evidence of each control for each target (nearest, random, shuffled), all through the leakage guard.

    :param index: the evidence index (:class:`coral.retrieval.EvidenceIndex`).
    """
    rng = np.random.default_rng([seed, 7])
    branches = [nearest_and_random(index, int(u), int(i), k, k, rng) for u, i in zip(users, items, strict=False)]
    nearest = [b["nearest"] for b in branches]
    shuffled = []
    for j, partner in enumerate(shuffled_partners(users, items, seed)):
        target = (int(users[j]), int(items[j]))
        pieces = []
        for e in nearest[partner]:
            piece = transplant(e, (int(users[partner]), int(items[partner])), target)
            try:  # no transplanted piece may name the target itself or a held-out pair
                index.guard.check(piece, *target)
            except LeakageError:
                continue
            pieces.append(piece)
        shuffled.append(tuple(pieces))
    return {"nearest": nearest, "random": [b["random"] for b in branches], "shuffled": shuffled}


def evidence_controls(
    scorer: Any, dataset: CoralDataset, builder: Any, split: str, rows: np.ndarray, index: Any, k: int = 5,
    seed: int = 0, n_boot: int = 2000, progress: bool = True,
) -> dict[str, Any]:
    """AUC of ``scorer`` on ``rows`` of ``split`` under each control, and the paired difference vs no evidence.

    :param scorer: the scorer examined (any :class:`coral.llm.Scorer`).
    :param builder: the prompt builder the scorer was trained for.
    :param rows: row indices of the target pairs in the split.
    :param index: the evidence index.
    :param k: pieces per control; the nearest control is also scored after each of its 1..k pieces.
    :returns: ``controls`` (one dict per control: auc, and delta/low/high/p vs none), ``nearest_by_pieces``
        (AUC after 0..k nearest pieces), ``n``, ``n_negative``, and the raw ``p`` per control.
    """
    from tqdm.auto import tqdm

    from coral.stats import paired_auc_difference

    part = getattr(dataset, split)
    users, items, y = part.user[rows], part.item[rows], np.asarray(part.label[rows])
    evidence = control_evidence(index, users, items, k, seed)
    scores: dict[str, np.ndarray] = {name: np.zeros(len(rows)) for name in ("none", "random", "shuffled")}
    by_pieces = np.zeros((k + 1, len(rows)))
    chunk = 16
    for a in tqdm(range(0, len(rows), chunk), desc="controls", unit="chunk", disable=not progress, mininterval=10):
        pairs = range(a, min(a + chunk, len(rows)))
        # One scorer call per round, in the order an episode scores them: a scorer plans a call's prompts against
        # the prefixes cached before it, so each round reuses the previous round's prefixes (the target block, then
        # the nearest pieces one by one); all in one call, every prompt was computed from its target block on.
        rounds: list[list[tuple[str | int, int]]] = [[("none", j) for j in pairs]]
        rounds += [[(m, j) for j in pairs if len(evidence["nearest"][j]) >= m] for m in range(1, k + 1)]
        rounds.append([(name, j) for j in pairs for name in ("random", "shuffled")])
        for slots in rounds:
            prompts = []
            for slot, j in slots:
                u, i = int(users[j]), int(items[j])
                if slot == "none":
                    prompts.append(builder.build(u, i))
                elif isinstance(slot, int):
                    prompts.append(builder.build(u, i, evidence["nearest"][j][:slot]))
                else:
                    prompts.append(builder.build(u, i, evidence[slot][j]))
            for (slot, j), p in zip(slots, scorer.score(prompts) if prompts else [], strict=True):
                if isinstance(slot, int):
                    by_pieces[slot, j] = p
                else:
                    scores[slot][j] = p
    by_pieces[0] = scores["none"]
    for j, pieces in enumerate(evidence["nearest"]):  # fewer than k pieces: the last prompt stands
        for m in range(len(pieces) + 1, k + 1):
            by_pieces[m, j] = by_pieces[len(pieces), j]
    scores["nearest"] = by_pieces[k]
    controls = {}
    for name in CONTROLS:
        result = paired_auc_difference(y, scores[name], scores["none"], n_boot=n_boot, seed=seed)
        controls[name] = {"auc": result.auc_a, "pieces": k if name != "none" else 0}
        if name != "none":
            controls[name].update(
                {"delta_vs_none": result.diff, "low": result.low, "high": result.high, "p_value": result.p_value}
            )
    from sklearn.metrics import roc_auc_score

    return {
        "controls": controls,
        "nearest_by_pieces": [float(roc_auc_score(y, by_pieces[m])) for m in range(k + 1)],
        "mean_pieces": {
            name: float(np.mean([len(e) for e in evidence[name]])) for name in ("nearest", "random", "shuffled")
        },
        "n": int(len(rows)),
        "n_negative": int((y == 0).sum()),
        "p": {name: scores[name] for name in CONTROLS},
        "labels": y,
    }


def controls_table(figures: dict[str, Any], percent: bool = False) -> str:
    """The controls as a Markdown table (AUC, paired Δ vs no evidence with its 95% interval and p), in :data:`CONTROLS`
    order.

    :param figures: :func:`evidence_controls`' result, or its ``controls`` part read back from JSON.
    :param percent: AUC points x100 with two decimals (results.md) instead of AUC with three.
    """

    def num(x: float, sign: str = "") -> str:
        return f"{100 * x:{sign}.2f}" if percent else f"{x:{sign}.3f}"

    lines = ["| evidence | AUC | Δ AUC vs none [95% CI] | p (DeLong) |", "|---|---|---|---|"]
    for name in (n for n in CONTROLS if n in figures["controls"]):
        row = figures["controls"][name]
        if name == "none":
            lines.append(f"| none | {num(row['auc'])} | | |")
        else:
            lines.append(
                f"| {int(row['pieces'])} {name} | {num(row['auc'])} | {num(row['delta_vs_none'], '+')} "
                f"[{num(row['low'], '+')}, {num(row['high'], '+')}] | {row['p_value']:.2g} |"
            )
    return "\n".join(lines)
