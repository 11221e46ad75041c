"""Every number of a run's report, computed one way for every method from its scores on the shared pairs.

Input: each method's P(like) per evaluation pair (:class:`~coral.pipeline.scores.MethodScores`,
written by the stages) and each seed's shared pairs (:class:`~coral.pipeline.pairs.SharedPairs`).
CTR baselines and the mean-rating reference are scored on the whole splits and restricted here to
the shared pairs; the LLM methods are scored on the shared pairs only.

- Metrics (:func:`coral.metrics.binary_metrics`): the AUC on the shared test pairs; F1, MCC and
  balanced accuracy at the threshold that maximises F1 on the shared validation pairs, the same
  pairs for every method (per retrieval round for CoRAL methods).
- Seeds: mean ± sample std (ddof=1) over seeds; the interval is the pair bootstrap pooled across
  seeds (:func:`coral.stats.pooled_auc`). A method whose scores are identical for two seeds (a
  deterministic method on a fixed split) counts once.
- Paired differences (:func:`coral.stats.pooled_auc_difference`, one seed:
  :func:`coral.stats.paired_auc_difference` with DeLong's p) of every method against LLM-only,
  CoRAL-random and CoRAL-greedy of the same scorer, the kNN like-share of the same warm start
  (no LLM) and the best CTR baseline by validation AUC.
- The claims (:mod:`coral.pipeline.claims`), from the two-level (seeds, then pairs) intervals
  of :meth:`RunScores.paired` differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from coral.baselines.config import MODEL_NAMES
from coral.metrics import binary_metrics
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.scores import MethodScores
from coral.stats import (
    PooledEstimate,
    delong,
    mean_std,
    paired_auc_difference,
    pooled_auc,
    pooled_auc_difference,
    two_level_auc_difference,
)

#: The reference methods of the Δ table, by column key.
REFERENCES = ("llm_only", "random", "greedy", "knn_share", "twin", "best_ctr")
#: Column titles of the references.
REFERENCE_TITLES = {
    "llm_only": "LLM-only",
    "random": "CoRAL-random",
    "greedy": "CoRAL-greedy",
    "knn_share": "kNN like-share",
    "twin": "input twin",
    "best_ctr": "best CTR",
}
#: Methods whose evidence comes from a fixed rule, not a trained policy.
FIXED_RETRIEVAL = ("coral-random", "coral-greedy")
#: Suffix of a CTR baseline's row trained with the dataset's item side features (``dfm+side``).
SIDE_FEATURES = "+side"
#: Prefix of an input twin's row (``twin-rates``, ``twin-rates+cf+share-dfm``).
TWIN = "twin-"


def base_name(model: str) -> str:
    """``coral-ppo-dfm@probe`` -> ``coral-ppo-dfm``."""
    return model.partition("@")[0]


def scorer_tag(model: str) -> str:
    """``coral-ppo-dfm@probe`` -> ``probe``; ``dfm`` -> ``""``."""
    return model.partition("@")[2]


def is_ctr(model: str) -> bool:
    """A CTR baseline, with or without item side features (the candidates for "best CTR"; the
    mean-rating reference is not one)."""
    return model in MODEL_NAMES or (model.endswith(SIDE_FEATURES) and model[: -len(SIDE_FEATURES)] in MODEL_NAMES)


def side_feature_model(model: str) -> str:
    """The row of CTR baseline ``model`` trained with item side features: ``dfm`` -> ``dfm+side``."""
    return model + SIDE_FEATURES


def twin_model(inputs: Sequence[str], warm: str) -> str:
    """The row of an input twin (:mod:`coral.align.twins`): ``twin-`` and its inputs, and the warm start
    whose tables it reads when it reads the CF embeddings or the nearest pieces:
    ``("rates",)`` -> ``twin-rates``, ``("rates", "cf", "share"), "dfm"`` -> ``twin-rates+cf+share-dfm``."""
    reads_tables = bool({"cf", "share"} & set(inputs))
    return TWIN + "+".join(inputs) + (f"-{warm}" if reads_tables else "")


def twin_inputs_of(model: str) -> tuple[str, ...]:
    """The inputs of a twin's row (:func:`twin_model`); () for other rows."""
    base = base_name(model)
    if not base.startswith(TWIN):
        return ()
    return tuple(base[len(TWIN) :].split("-", 1)[0].split("+"))


def warm_start_of(model: str) -> str:
    """The warm start a retrieval row searched: ``coral-ppo-dfm@x`` -> ``dfm``,
    ``coral-greedy-dfm@x`` -> ``dfm``, ``knn-share-dist-dfm`` -> ``dfm``, ``twin-cf-dfm`` -> ``dfm``;
    "" for other rows."""
    base = base_name(model)
    if (
        base.startswith("knn-share")
        or (base.startswith("coral-") and base.count("-") >= 2)
        or (base.startswith(TWIN) and base.count("-") >= 2)
    ):
        return base.rsplit("-", 1)[1]
    return ""


def is_trained_policy(model: str) -> bool:
    """A row of a trained retrieval policy (``coral-ppo-dfm@tag``, ``coral-rllib-ppo-dfm@tag``, ...)."""
    base = base_name(model)
    return base.startswith("coral-") and not any(base.startswith(f) for f in FIXED_RETRIEVAL)


@dataclass(frozen=True)
class Comparison:
    """AUC(method) - AUC(reference) on the same pairs, pooled over the seeds both have."""

    reference: str
    """The reference method's model key."""
    estimate: float
    """Mean over seeds of the paired difference."""
    low: float
    """Lower end of the 95% pair-bootstrap interval."""
    high: float
    """Upper end."""
    p_value: float
    """DeLong's two-sided p (one seed); nan over several seeds (the interval decides)."""
    per_seed: tuple[float, ...]
    """The difference per seed."""


class RunScores:
    """The scores of one dataset's run, restricted to the shared pairs, grouped by method and seed.

    :param scores: every method's scores (any order; duplicates of a deterministic method are dropped).
    :param pairs: the shared pairs of each run seed.
    :param n_boot: bootstrap resamples of every interval.
    """

    def __init__(self, scores: Sequence[MethodScores], pairs: Mapping[int, SharedPairs], n_boot: int = 1000) -> None:
        self.pairs = dict(pairs)
        self.n_boot = n_boot
        #: Whether every seed is evaluated on the very same pairs (one split for all seeds).
        self.shared_pairs = len({p.fingerprint for p in self.pairs.values()}) == 1
        self.methods: dict[str, dict[int, MethodScores]] = {}
        #: Methods scored on whole splits (CTR baselines, the reference), unrestricted.
        self.full: dict[str, dict[int, MethodScores]] = {}
        for m in sorted(scores, key=lambda m: (m.model, m.seed)):
            pairs_of_seed = self.pairs[m.seed]
            on_pairs = replace(m, test=m.test.at(pairs_of_seed.test), valid=m.valid.at(pairs_of_seed.valid))
            runs = self.methods.setdefault(m.model, {})
            if self.shared_pairs and any(_same(on_pairs, other) for other in runs.values()):
                continue  # a deterministic method on one split: one seed, not several
            runs[m.seed] = on_pairs
            if len(m.test.rows) > len(pairs_of_seed.test):
                self.full.setdefault(m.model, {})[m.seed] = m

    # ---- per method -----------------------------------------------------------------------------
    def rounds(self, model: str) -> int:
        return min(m.test.rounds for m in self.methods[model].values())

    def round_metrics(self, model: str, seed: int, r: int | None = None) -> dict[str, float]:
        """binary_metrics of ``model`` (seed ``seed``) after round ``r`` (None: the last)."""
        m = self.methods[model][seed]
        r = m.test.rounds if r is None else r
        return binary_metrics(
            m.test.labels, m.test.p[r], m.valid.labels, m.valid.p[min(r, m.valid.rounds)], n_boot=self.n_boot, seed=seed
        )

    def valid_auc(self, model: str) -> float:
        """Mean over seeds of the validation AUC (last round) on the shared validation pairs."""
        values = []
        for m in self.methods[model].values():
            values.append(delong(m.valid.labels, m.valid.p[-1], m.valid.p[-1]).auc_a)
        return float(np.mean(values))

    def _test_scores(self, model: str, r: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per seed, the test labels and ``model``'s scores after round ``r`` (None: last)."""
        runs = list(self.methods[model].values())
        return [m.test.labels for m in runs], [m.test.p[m.test.rounds if r is None else r] for m in runs]

    def test_aucs(self, model: str, r: int | None = None) -> list[float]:
        """Per seed, the test AUC after round ``r`` (None: last): point estimates, no resampling."""
        return [delong(y, s, s).auc_a for y, s in zip(*self._test_scores(model, r), strict=True)]

    def pooled(self, model: str, r: int | None = None):
        """The AUC after round ``r`` (None: last) pooled over seeds (:func:`coral.stats.pooled_auc`)."""
        ys, scores = self._test_scores(model, r)
        if self.n_boot == 0:  # point estimates only
            values = self.test_aucs(model, r)
            return PooledEstimate(
                float(np.mean(values)),
                math.nan,
                math.nan,
                tuple(values),
                mean_std(values).std,
                math.nan,
                math.nan,
                0,
                0.95,
            )
        return pooled_auc(ys, scores, n_boot=self.n_boot, seed=0, shared_pairs=self.shared_pairs and len(ys) > 1)

    # ---- references -----------------------------------------------------------------------------
    def primary_tag(self) -> str:
        """The scorer whose LLM rows the claims and the CTR rows' comparisons use: the aligned one
        where there is one (any tag other than zero-shot), else zero-shot."""
        tags = {scorer_tag(m) for m in self.methods if base_name(m) in ("llm-only", "coral-random")}
        aligned = sorted(t for t in tags if t and t != "zero-shot")
        return aligned[0] if aligned else ("zero-shot" if "zero-shot" in tags else "")

    def best_ctr(self) -> str | None:
        """The CTR baseline with the highest validation AUC on the shared validation pairs (never test)."""
        ctr = {m: self.valid_auc(m) for m in self.methods if is_ctr(m)}
        ctr = {m: v for m, v in ctr.items() if np.isfinite(v)}
        return max(ctr, key=ctr.__getitem__) if ctr else None

    def reference(self, model: str, kind: str) -> str | None:
        """The model key that ``model`` is compared with in column ``kind`` (None: not run, or itself).

        LLM-only, CoRAL-random and CoRAL-greedy are those of the row's own scorer (CTR rows: of the
        primary scorer); greedy and the like-share search the row's own warm start (other rows:
        the first one run); the input twin is :meth:`twin_of`.
        """
        if kind == "best_ctr":
            ref = self.best_ctr()
        elif kind == "twin":
            ref = self.twin_of(model)
        elif kind in ("llm_only", "random"):
            tag = scorer_tag(model) or self.primary_tag()
            ref = f"{'llm-only' if kind == 'llm_only' else 'coral-random'}@{tag}"
        else:
            tag = scorer_tag(model) or self.primary_tag()
            prefix = "coral-greedy" if kind == "greedy" else "knn-share"
            candidates = sorted(
                m
                for m in self.methods
                if base_name(m).startswith(prefix + "-") and not base_name(m).startswith("knn-share-dist")
            )
            if kind == "greedy":
                candidates = [m for m in candidates if scorer_tag(m) == tag]
            warm = warm_start_of(model)
            ref = next((m for m in candidates if warm_start_of(m) == warm), candidates[0] if candidates else None)
        return ref if ref in self.methods and ref != model else None

    def twin_of(self, model: str) -> str | None:
        """The input twin of LLM row ``model`` (None: not an aligned scorer's LLM row, or no twin run):
        among the twins given no more than the row's LLM is given (LLM-only and CoRAL-random: the
        prompt's numbers; rows that read retrieved evidence: also the like-share of the nearest
        pieces), the one with the highest validation AUC on the shared validation pairs (never
        test), as the best CTR baseline is chosen."""
        tag, base = scorer_tag(model), base_name(model)
        if tag in ("", "zero-shot") or not base.startswith(("llm-only", "coral-")):
            return None
        reads_evidence = not base.startswith(("llm-only", "coral-random"))
        twins = {
            m: self.valid_auc(m)
            for m in self.methods
            if base_name(m).startswith(TWIN) and (reads_evidence or "share" not in twin_inputs_of(m))
        }
        twins = {m: v for m, v in sorted(twins.items()) if np.isfinite(v)}
        return max(twins, key=twins.__getitem__) if twins else None

    def paired(
        self, model: str, reference: str, r: int | None = None, r_ref: int | None = None
    ) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per seed both have (a reference with one run on shared pairs serves every seed): the
        labels, ``model``'s scores after round ``r`` and ``reference``'s after ``r_ref`` (None: last)
        on the same test pairs.

        :returns: (seeds, labels, scores of model, scores of reference).
        """
        a_runs, b_runs = self.methods[model], self.methods[reference]
        seeds = [s for s in a_runs if s in b_runs or (self.shared_pairs and len(b_runs) == 1)]
        ys, sa, sb = [], [], []
        for s in seeds:
            a, b = a_runs[s], b_runs.get(s) or next(iter(b_runs.values()))
            ys.append(a.test.labels)
            sa.append(a.test.p[a.test.rounds if r is None else r])
            sb.append(b.test.p[b.test.rounds if r_ref is None else r_ref])
        return seeds, ys, sa, sb

    def compare_two_level(
        self, model: str, reference: str, r: int | None = None, r_ref: int | None = None
    ) -> PooledEstimate | None:
        """AUC(model after round r) - AUC(reference after round r_ref), mean over seeds with the
        two-level (seeds, then pairs) bootstrap interval (:func:`coral.stats.two_level_auc_difference`)."""
        seeds, ys, sa, sb = self.paired(model, reference, r, r_ref)
        if not seeds:
            return None
        return two_level_auc_difference(
            ys, sa, sb, n_boot=max(self.n_boot, 1), seed=0, shared_pairs=self.shared_pairs and len(seeds) > 1
        )

    def compare(self, model: str, reference: str, r: int | None = None, r_ref: int | None = None) -> Comparison | None:
        """AUC(model after round r) - AUC(reference after round r_ref) over the seeds both have
        (a reference with one run on shared pairs serves every seed), with the pair bootstrap
        pooled over seeds."""
        seeds, ys, sa, sb = self.paired(model, reference, r, r_ref)
        if not seeds:
            return None
        if len(seeds) == 1 or self.n_boot == 0:
            per_seed = [self._paired(y, a, b, reference) for y, a, b in zip(ys, sa, sb, strict=False)]
            if len(per_seed) == 1:
                return per_seed[0]
            return Comparison(
                reference,
                float(np.mean([c.estimate for c in per_seed])),
                math.nan,
                math.nan,
                math.nan,
                tuple(c.estimate for c in per_seed),
            )
        res = pooled_auc_difference(ys, sa, sb, n_boot=self.n_boot, seed=0, shared_pairs=self.shared_pairs)
        return Comparison(reference, res.estimate, res.low, res.high, math.nan, res.per_seed)

    def compare_seed(self, model: str, reference: str, seed: int) -> Comparison | None:
        """AUC(model) - AUC(reference) of one seed (last rounds), with DeLong's p."""
        b_runs = self.methods[reference]
        b = b_runs.get(seed) or (next(iter(b_runs.values())) if self.shared_pairs and len(b_runs) == 1 else None)
        if b is None:
            return None
        a = self.methods[model][seed]
        return self._paired(a.test.labels, a.test.p[-1], b.test.p[-1], reference)

    def _paired(self, y: np.ndarray, a: np.ndarray, b: np.ndarray, reference: str = "") -> Comparison:
        """One seed's paired difference with DeLong's p (no interval when ``n_boot`` is 0)."""
        if self.n_boot == 0:
            test = delong(y, a, b)
            return Comparison(
                reference, test.auc_a - test.auc_b, math.nan, math.nan, test.p_value, (test.auc_a - test.auc_b,)
            )
        res = paired_auc_difference(y, a, b, n_boot=self.n_boot, seed=0)
        return Comparison(reference, res.diff, res.low, res.high, res.p_value, (res.diff,))

    def comparisons(self, model: str) -> dict[str, Comparison | None]:
        """``model`` against each of :data:`REFERENCES` (None where that reference is absent)."""
        out: dict[str, Comparison | None] = {}
        for kind in REFERENCES:
            ref = self.reference(model, kind)
            out[kind] = self.compare(model, ref) if ref else None
        return out

    def claims_method(self) -> str | None:
        """The CoRAL method the claims are about: PPO of the primary scorer (else DDPG, else any trained policy)."""
        tag = self.primary_tag()
        trained = sorted(m for m in self.methods if scorer_tag(m) == tag and is_trained_policy(m))
        for algo in ("coral-ppo", "coral-ddpg"):
            for m in trained:
                if base_name(m).startswith(algo + "-"):
                    return m
        return trained[0] if trained else None


def _same(a: MethodScores, b: MethodScores) -> bool:
    """Identical scores on identical pairs."""
    return all(
        np.array_equal(x.rows, y.rows) and x.p.shape == y.p.shape and np.array_equal(x.p, y.p)
        for x, y in ((a.test, b.test), (a.valid, b.valid))
    )


def seeds_summary(values: Sequence[float], digits: int = 2, scale: float = 100.0) -> str:
    """``mean ± std`` over seeds (ddof=1), or the value for one seed; ``n/a`` when all are nan."""
    finite = [v for v in values if not math.isnan(v)]
    return mean_std(finite).format(digits, scale) if finite else "n/a"


__all__ = [
    "Comparison",
    "RunScores",
    "REFERENCES",
    "REFERENCE_TITLES",
    "base_name",
    "scorer_tag",
    "is_ctr",
    "is_trained_policy",
    "seeds_summary",
    "warm_start_of",
    "SIDE_FEATURES",
    "TWIN",
    "side_feature_model",
    "twin_inputs_of",
    "twin_model",
]
