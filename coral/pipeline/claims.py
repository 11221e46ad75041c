"""The claims a run tests, each against its strongest simple alternative, and their verdicts.

Each claim is "A beats B" on the same test pairs, decided from the interval of AUC(A) - AUC(B)
alone (:func:`coral.stats.interval_verdicts`, margin ``m``): *supported* if the interval lies above
0; *not supported* if its upper end is below m; *undecided* otherwise; and the same rule read
from B's side says whether A is *worse*.

1. Collaborative evidence beats the LLM alone: the claims' policy after K rounds vs round 0 of
   the same scorer (LLM-only).
2. Learned retrieval beats **greedy** nearest-neighbour retrieval (the zero action: the K nearest
   observed interactions in the same warm start; random retrieval stays a row of the tables,
   but it scores below no evidence, so beating it says little).
3. AUC grows with rounds **after the first**: the claims' policy after round K vs after round 1
   (K vs 0 would be claim 1 again).
4. CoRAL beats the best CTR baseline (chosen by validation AUC on the shared validation pairs).
5. The LLM reads its evidence at least as well as counting it: greedy retrieval's LLM score vs
   the kNN like-share of the very same pieces (no LLM).

Intervals: over several seeds the verdict comes from the **two-level bootstrap** (seeds, then
pairs within each drawn seed: :func:`coral.stats.two_level_auc_difference`), with the pooled pair
bootstrap (uncertainty of the pairs *given* the trained models) and the t-interval over the
seeds' differences beside it; with one seed, from the pair bootstrap, marked "one training run".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coral.pipeline.compare import RunScores, base_name, is_trained_policy, scorer_tag
from coral.stats import PooledEstimate, interval_verdicts, pooled_auc_difference

#: The smallest AUC difference that counts as a real gain.
MARGIN = 0.01
#: Each claim's text, written once.
CLAIM_TEXTS = {
    1: "Collaborative evidence beats the LLM alone",
    2: "Learned retrieval beats greedy nearest-neighbour retrieval",
    3: "AUC grows with retrieval rounds after the first",
    4: "CoRAL beats the best CTR baseline",
    5: "The LLM reads its K nearest pieces better than counting their likes",
}


@dataclass(frozen=True)
class Claim:
    """One claim "A beats B": which rows, after which rounds (None: the last)."""

    number: int
    """1-5, the key of :data:`CLAIM_TEXTS`."""
    a: str
    """A's model key."""
    b: str
    """B's model key."""
    a_round: int | None = None
    """A's round (None: its last)."""
    b_round: int | None = None
    """B's round (None: its last)."""

    @property
    def text(self) -> str:
        return CLAIM_TEXTS[self.number]


@dataclass(frozen=True)
class ClaimResult:
    """A claim with its intervals and verdicts."""

    claim: Claim
    verdict_interval: PooledEstimate
    """The interval that decides: two-level bootstrap over seeds (the pair bootstrap for one seed)."""
    pooled: PooledEstimate
    """The pair bootstrap pooled over seeds (given the trained models), shown beside it."""
    n_pairs: tuple[int, ...]
    """Test pairs of each seed."""
    margin: float = MARGIN

    @property
    def n_seeds(self) -> int:
        return len(self.n_pairs)

    @property
    def better(self) -> str:
        """The verdict on "A beats B"."""
        return interval_verdicts(self.verdict_interval.low, self.verdict_interval.high, self.margin)[0]

    @property
    def worse(self) -> str:
        """The verdict on "A is worse than B" (the same rule read from B's side)."""
        return interval_verdicts(self.verdict_interval.low, self.verdict_interval.high, self.margin)[1]


def claims_of(run: RunScores) -> tuple[list[Claim], list[str]]:
    """The claims ``run`` can test, and the texts of those it cannot (a row was not run).

    :param run: the run's scores on the shared pairs.
    """
    method = run.claims_method()
    if method is None:
        return [], [f"({n}) {text}: no trained CoRAL policy in this run" for n, text in CLAIM_TEXTS.items()]
    tag = scorer_tag(method)
    greedy = run.reference(method, "greedy")
    llm = f"llm-only@{tag}"
    wanted = {
        1: (method, llm if llm in run.methods else None, None, None),
        2: (method, greedy, None, None),
        3: (method, method if run.rounds(method) >= 2 else None, None, 1),
        4: (method, run.best_ctr(), None, None),
        5: (greedy, run.reference(greedy, "knn_share") if greedy else None, None, None),
    }
    claims, missing = [], []
    for number, (a, b, a_round, b_round) in wanted.items():
        if a is None or b is None:
            missing.append(f"({number}) {CLAIM_TEXTS[number]}: its reference was not run")
        else:
            claims.append(Claim(number, a, b, a_round, b_round))
    # The same tests for the run's other rows that make them: every other trained policy of the
    # scorer against its greedy retrieval (2), and the LLM reading greedy's evidence against the
    # best CTR model (4): whether the evidence reader alone beats the CTR baselines.
    others = sorted(m for m in run.methods if m != method and scorer_tag(m) == tag and is_trained_policy(m))
    for other in others:
        other_greedy = run.reference(other, "greedy")
        if other_greedy is not None:
            claims.append(Claim(2, other, other_greedy))
    if greedy is not None and run.best_ctr() is not None:
        claims.append(Claim(4, greedy, run.best_ctr()))
    return sorted(claims, key=lambda c: c.number), missing


def evaluate_claim(run: RunScores, claim: Claim, margin: float = MARGIN) -> ClaimResult:
    """The intervals and verdicts of one claim on ``run``'s shared test pairs."""
    two_level = run.compare_two_level(claim.a, claim.b, claim.a_round, claim.b_round)
    seeds, ys, sa, sb = run.paired(claim.a, claim.b, claim.a_round, claim.b_round)
    pooled = pooled_auc_difference(
        ys, sa, sb, n_boot=max(run.n_boot, 1), seed=0, shared_pairs=run.shared_pairs and len(seeds) > 1
    )
    assert two_level is not None  # claims_of only makes claims whose rows share seeds
    return ClaimResult(claim, two_level, pooled, tuple(len(y) for y in ys), margin)


def paper_claims(run: RunScores, margin: float = MARGIN) -> tuple[list[ClaimResult], list[str]]:
    """Every claim ``run`` can test, with its verdicts, and the lines for those it cannot."""
    claims, missing = claims_of(run)
    return [evaluate_claim(run, c, margin) for c in claims], missing


def _pts(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.2f}"


def _interval(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) or math.isnan(high) else f"[{_pts(low)}, {_pts(high)}]"


def _sides(claim: Claim, display) -> tuple[str, str]:
    """A's and B's display names, with their rounds where a claim compares rounds."""
    a = display(claim.a) + ("" if claim.a_round is None else f", round {claim.a_round}")
    b = display(claim.b) + ("" if claim.b_round is None else f", round {claim.b_round}")
    if claim.number == 3:
        a = display(claim.a) + ", round K"
    return a, b


def claims_table(results: list[ClaimResult], missing: list[str], display) -> str:
    """The verdict table (Markdown), one row per claim, AUC points x100.

    :param results: the tested claims.
    :param missing: lines for the claims that could not be tested.
    :param display: model key -> display name.
    """
    if not results and missing:
        return "\n".join(f"- not tested: {line}" for line in missing)
    margin = results[0].margin if results else MARGIN
    lines = [
        f"Verdicts from the interval of Δ = AUC(A) − AUC(B) (AUC points x100, margin m = {100 * margin:.0f}): "
        "*supported* if the interval lies above 0, *not supported* if its upper end is below m, *undecided* otherwise; "
        '"A worse" reads the same rule from B\'s side. The deciding interval is the two-level bootstrap (seeds, then '
        "pairs "
        "within each drawn seed); the pair bootstrap pooled over seeds (given the trained models) and the t-interval "
        "over "
        "the seeds' differences stand beside it. One seed: the pair bootstrap of one training run.",
        "",
        "| claim | A | B | Δ | deciding interval | A better | A worse | pooled pairs | t over seeds | seeds x pairs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        c, v, p = res.claim, res.verdict_interval, res.pooled
        a, b = _sides(c, display)
        deciding = _interval(v.low, v.high) + (" (one training run)" if res.n_seeds == 1 else " (two-level)")
        pairs = "/".join(str(n) for n in sorted(set(res.n_pairs)))
        lines.append(
            f"| ({c.number}) {c.text} | {a} | {b} | {_pts(v.estimate)} | {deciding} | **{res.better}** | {res.worse} | "
            f"{_interval(p.low, p.high)} | {_interval(v.t_low, v.t_high)} | {res.n_seeds} x {pairs} |"
        )
    lines += [f"- not tested: {line}" for line in missing]
    return "\n".join(lines)


def claims_records(results: list[ClaimResult]) -> list[dict]:
    """The claims as plain records (``claims.json``): the rows, the three intervals, both verdicts."""
    records = []
    for res in results:
        c, v, p = res.claim, res.verdict_interval, res.pooled
        records.append(
            {
                "claim": c.number,
                "text": c.text,
                "a": c.a,
                "b": c.b,
                "a_round": c.a_round,
                "b_round": c.b_round,
                "estimate": v.estimate,
                "low": v.low,
                "high": v.high,
                "interval": "two-level" if res.n_seeds > 1 else "pairs (one training run)",
                "pooled_low": p.low,
                "pooled_high": p.high,
                "t_low": v.t_low,
                "t_high": v.t_high,
                "per_seed": list(v.per_seed),
                "n_pairs": list(res.n_pairs),
                "margin": res.margin,
                "better": res.better,
                "worse": res.worse,
            }
        )
    return records


def claims_summary(results: list[ClaimResult], display) -> list[str]:
    """One Markdown bullet per claim: its verdict, Δ and deciding interval (the console summary)."""
    lines = []
    for res in results:
        c, v = res.claim, res.verdict_interval
        worse = " (A is worse: supported)" if res.worse == "supported" else ""
        a, b = _sides(c, display)
        lines.append(
            f"- ({c.number}) {c.text}: **{res.better}**{worse}: {a} − {b} {_pts(v.estimate)} {_interval(v.low, v.high)}"
        )
    return lines


def round_curve(run: RunScores, model: str) -> str:
    """The claims policy's AUC after each round 0..K, mean over seeds (descriptive; claim 3 decides)."""
    values = [run.pooled(model, r).estimate for r in range(run.rounds(model) + 1)]
    return (
        f"{base_name(model)}: AUC after rounds 0..K: "
        + ", ".join(f"{100 * v:.2f}" for v in values)
        + " (descriptive; claim 3's interval decides)."
    )


__all__ = [
    "CLAIM_TEXTS",
    "MARGIN",
    "Claim",
    "ClaimResult",
    "claims_of",
    "claims_records",
    "claims_summary",
    "claims_table",
    "evaluate_claim",
    "paper_claims",
    "round_curve",
]
