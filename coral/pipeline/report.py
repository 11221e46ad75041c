"""The paper-style results table and the plots of a run, from its ``results.csv``."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np

from coral.align.twins import twin_name
from coral.io import atomic_write_bytes, atomic_write_text
from coral.pipeline.compare import SIDE_FEATURES, TWIN, twin_inputs_of, warm_start_of

if TYPE_CHECKING:
    from coral.pipeline.claims import ClaimResult
    from coral.pipeline.compare import RunScores

#: Display names and table order (the paper's Table 1 order, then this project's variants).
DISPLAY = {
    "afm": "AFM",
    "dcn": "DCN",
    "dfm": "DFM",
    "wdl": "WDL",
    "ips": "IPS",
    "cause": "CausE",
    "mean": "User+item mean",
    "knn-share": "kNN like-share",
    "knn-share-dist": "kNN like-share, distance-weighted",
    "twin": "input twin",
    "llm-only": "LLM-Language",
    "coral-random": "CoRAL-random",
    "coral-greedy": "CoRAL-greedy",
}


#: Retrieval statistics of a row (its scores' info keys) and their column titles.
RETRIEVAL_STATS = {
    "greedy_jaccard": "overlap with greedy (Jaccard)",
    "greedy_first_share": "first piece = greedy's",
    "mean_abs_action": "mean abs action",
    "mean_pieces": "pieces per target",
}


def display_name(model: str) -> str:
    """``coral-ppo-dfm`` -> ``CoRAL-PPO (DFM)``; ``llm-only@aligned`` -> ``LLM-Language [aligned]``;
    ``coral-greedy-dfm@x`` -> ``CoRAL-greedy (DFM) [x]``; ``knn-share-dfm`` -> ``kNN like-share (DFM)``;
    ``dfm+side`` -> ``DFM + side features``; ``twin-rates+cf-dfm`` -> ``LR(base rates + CF embeddings) (DFM)``."""
    base, _, scorer = model.partition("@")
    family, _, warm = base.rpartition("-")
    if base.endswith(SIDE_FEATURES) and base[: -len(SIDE_FEATURES)] in DISPLAY:
        name = f"{DISPLAY[base[: -len(SIDE_FEATURES)]]} + side features"
    elif base.startswith(TWIN):
        name = twin_name(twin_inputs_of(base), None) + (
            f" ({warm_start_of(base).upper()})" if warm_start_of(base) else ""
        )
    elif base in DISPLAY:
        name = DISPLAY[base]
    elif family in DISPLAY and family not in ("llm-only",):
        name = f"{DISPLAY[family]} ({warm.upper()})"
    elif base.startswith("coral-"):
        # coral-[rllib-]ALGO[-features][-stop]-WARM (TrainConfig.model_name)
        words = base.split("-")[1:]
        warm_name = f" ({words.pop().upper()})" if len(words) > 1 else ""
        options = [w for w in ("features", "stop") if w in words]
        algo = "-".join(w for w in words if w not in options)
        algo = {
            "maskable-ppo": "MaskablePPO",
            "rllib-ppo": "PPO, RLlib",
            "rllib-maskable-ppo": "MaskablePPO, RLlib",
        }.get(algo, algo.upper())
        extra = {"features": "candidate features", "stop": "stop action"}
        name = f"CoRAL-{algo}" + "".join(f", {extra[o]}" for o in options) + warm_name
    else:
        name = base
    return f"{name} [{scorer}]" if scorer else name


def _order(model: str) -> tuple[int, str]:
    """CTR rows with side features right after their plain row, input twins after the like-share rows."""
    base = model.partition("@")[0]
    keys = list(DISPLAY)
    family = base.rpartition("-")[0]
    if base.endswith(SIDE_FEATURES) and base[: -len(SIDE_FEATURES)] in keys:
        rank = keys.index(base[: -len(SIDE_FEATURES)])
    elif base.startswith(TWIN):
        rank = keys.index("twin")
    elif base in keys:
        rank = keys.index(base)
    elif family in keys:
        rank = keys.index(family)
    else:
        rank = len(keys) + (0 if "ppo" in base else 1)
    return (rank, model)


def final_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows that enter the table: per-round rows keep only their last round."""
    rows = list(rows)
    last: dict[tuple, int] = {}
    for r in rows:
        if r.get("round", "") not in ("", None):
            key = (r["dataset"], r["model"], str(r["seed"]))
            last[key] = max(last.get(key, -1), int(r["round"]))
    out = []
    for r in rows:
        rnd = r.get("round", "")
        if rnd in ("", None) or int(rnd) == last[(r["dataset"], r["model"], str(r["seed"]))]:
            out.append(r)
    return out


def _mean_std(values: list[float]) -> str:
    """x100, mean ± sample std (ddof=1, :func:`coral.stats.mean_std`) over seeds."""
    from coral.stats import mean_std

    values = [v for v in values if not math.isnan(v)]
    return mean_std(values).format(2, 100.0) if values else "n/a"


def _f(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def markdown_table(rows: Iterable[dict]) -> str:
    """The overview of a multi-dataset run: per method and dataset, the AUC and F1 (x100, mean ±
    sample std over seeds) on the shared test pairs and the number of seeds. Intervals and paired
    differences are in each dataset's own results.md."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in final_rows(rows):
        if r.get("split", "test") == "test":
            grouped[(r["model"], r["dataset"])].append(r)
    datasets = sorted({d for _, d in grouped})
    models = sorted({m for m, _ in grouped}, key=_order)
    header = ["Method"]
    for d in datasets:
        header += [f"{d} AUC", f"{d} F1", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [display_name(m)]
        for d in datasets:
            group = grouped.get((m, d), [])
            cells += (
                [_mean_std([_f(r["auc"]) for r in group]), _mean_std([_f(r["f1"]) for r in group]), str(len(group))]
                if group
                else ["", "", ""]
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


def _delta(c) -> str:
    """``+1.23 [+0.10, +2.40] p=0.03`` in AUC points (x100); empty when not compared."""
    if c is None:
        return ""
    from coral.stats import format_interval

    text = format_interval(c.estimate, c.low, c.high)
    return text + (f" p={c.p_value:.2g}" if not math.isnan(c.p_value) else "")


def score_rows(run: "RunScores", dataset: str) -> list[dict]:
    """results.csv rows of one dataset: per method, seed and round, the metrics on the shared pairs
    (split ``test``), the paired differences of the last round vs each reference (columns
    ``d_<ref>``, ``d_<ref>_low``, ``d_<ref>_high``, ``d_<ref>_p``, ``ref_<ref>``; one seed each),
    and the CTR baselines' and the reference's metrics on the whole test split (split ``test_full``)."""
    from coral.pipeline.compare import REFERENCES
    from coral.results import make_row

    rows = []
    for model in sorted(run.methods, key=_order):
        for seed, m in run.methods[model].items():
            info = dict(m.info)
            config = info.pop("config", {})
            train_seconds = float(info.pop("train_seconds", 0.0))
            model_row = functools.partial(
                make_row, dataset=dataset, model=model, seed=seed, config=config, train_seconds=train_seconds
            )
            for r in range(m.test.rounds + 1):
                metrics = run.round_metrics(model, seed, r)
                extra = dict(
                    info,
                    round=r if m.test.rounds > 0 else "",
                    pairs=len(m.test.rows),
                    pairs_fingerprint=run.pairs[seed].fingerprint,
                )
                if r == m.test.rounds:
                    for kind in REFERENCES:
                        ref = run.reference(model, kind)
                        c = run.compare_seed(model, ref, seed) if ref else None
                        extra.update(
                            {
                                f"ref_{kind}": ref or "",
                                f"d_{kind}": c.estimate if c else "",
                                f"d_{kind}_low": c.low if c else "",
                                f"d_{kind}_high": c.high if c else "",
                                f"d_{kind}_p": c.p_value if c else "",
                            }
                        )
                rows.append(model_row(split="test", metrics=metrics, **extra))
            full = run.full.get(model, {}).get(seed)
            if full is not None:
                metrics = binary_metrics_full(full, run.n_boot, seed)
                rows.append(model_row(split="test_full", metrics=metrics, round="", pairs=len(full.test.rows), **info))
    return rows


def binary_metrics_full(m, n_boot: int, seed: int) -> dict:
    """Metrics on the whole test split, the threshold from the whole validation split."""
    from coral.metrics import binary_metrics

    return binary_metrics(m.test.labels, m.test.p[-1], m.valid.labels, m.valid.p[-1], n_boot=n_boot, seed=seed)


def controls_section(controls: list[dict], n_boot: int = 1000) -> str:
    """results.md's "Does the scorer read the evidence?" section: one controls table per seed, then for a scorer
    read on several seeds the same Δs pooled over them (empty without controls).

    :param controls: the controls stages' ``controls.json`` contents; an entry with ``per_pair`` (its
        ``controls.npz``: ``labels`` and ``p_<control>``) also enters the pooled table.
    :param n_boot: bootstrap replicates of the pooled intervals.
    """
    if not controls:
        return ""
    from coral.align.controls import controls_table

    lines = [
        "",
        "## Does the scorer read the evidence?",
        "",
        "The aligned scorer on the shared test pairs with no evidence, the K nearest observed training interactions "
        "(the greedy retrieval), K random ones, and the K nearest pieces of another target (shuffled); paired "
        "differences vs no evidence (same pairs, same bootstrap resamples) and DeLong's p.",
    ]
    for c in controls:
        lines += [
            "",
            f"Scorer {c['scorer']}, seed {c['seed']}, {c['n']} pairs ({c['n_negative']} negative):",
            "",
            controls_table(c, percent=True),
        ]
        lines += ["", "AUC after 0..K nearest pieces: " + ", ".join(_pct(a) for a in c["nearest_by_pieces"]) + "."]
    by_scorer: dict[str, list[dict]] = defaultdict(list)
    for c in controls:
        if "per_pair" in c:
            by_scorer[c["scorer"]].append(c)
    for scorer, seeds in by_scorer.items():
        if len(seeds) > 1:
            lines += ["", *pooled_controls_lines(scorer, seeds, n_boot)]
    return "\n".join(lines) + "\n"


def pooled_controls_lines(scorer: str, seeds: list[dict], n_boot: int) -> list[str]:
    """One scorer's controls pooled over its seeds: the mean AUC over seeds and each control − none, averaged over
    the seeds with a pair bootstrap within each seed (:func:`coral.stats.pooled_auc_difference`), per seed beside.

    :param scorer: the scorer's name.
    :param seeds: its controls entries, one per seed, each with ``per_pair``.
    :param n_boot: bootstrap replicates.
    """
    from coral.align.controls import CONTROLS
    from coral.stats import format_interval, pooled_auc_difference

    ys = [c["per_pair"]["labels"] for c in seeds]
    p = {name: [c["per_pair"][f"p_{name}"] for c in seeds] for name in CONTROLS if f"p_{name}" in seeds[0]["per_pair"]}
    names = ", ".join(str(c["seed"]) for c in seeds)
    lines = [
        f"Scorer {scorer}, pooled over seeds {names} ({sum(len(y) for y in ys)} pairs): mean AUC over the seeds; "
        "Δ vs none averaged over the seeds, 95% pair bootstrap within each seed; the Δ of each seed:",
        "",
        "| evidence | mean AUC | Δ AUC vs none [95% CI] | Δ per seed |",
        "|---|---|---|---|",
    ]
    for name, scores in p.items():
        auc = _pct(float(np.mean([c["controls"][name]["auc"] for c in seeds])))
        if name == "none":
            lines.append(f"| none | {auc} | | |")
            continue
        d = pooled_auc_difference(ys, scores, p["none"], n_boot=n_boot)
        per_seed = ", ".join(f"{100 * x:+.2f}" for x in d.per_seed)
        lines.append(f"| {int(seeds[0]['controls'][name]['pieces'])} {name} | {auc} | "
                     f"{format_interval(d.estimate, d.low, d.high)} | {per_seed} |")
    return lines


def evidence_information_lines(run: "RunScores") -> list[str]:
    """What the K nearest pieces add to a linear reader of the same numbers (no LLM): each input twin given the
    like-share of the nearest pieces against the twin with the same other inputs and without it (both fitted on the
    same alignment targets), paired on the test pairs. An LLM given those numbers can only read more from the evidence
    than this if it reads what a share leaves out (which pieces, whose ratings); [] without such twin pairs."""
    lines = []
    for model in sorted(run.methods):
        inputs = twin_inputs_of(model)
        if "share" not in inputs or len(inputs) < 2:
            continue
        without = [m for m in run.methods if twin_inputs_of(m) == tuple(i for i in inputs if i != "share")
                   and warm_start_of(m) in (warm_start_of(model), "")]
        if not without:
            continue
        c = run.compare(model, without[0])
        lines.append(f"| {display_name(model)} | {display_name(without[0])} | {_delta(c)} |")
    if not lines:
        return []
    return [
        "",
        "## What the nearest pieces add to their reader's numbers (no LLM)",
        "",
        "An input twin given the like-share of the K nearest pieces against the twin with the same other inputs, "
        "paired on the test pairs (AUC points x100, pair bootstrap pooled over seeds): the evidence's information "
        "beyond those numbers for a linear reader. Where it is near 0, a scorer given the numbers has little reason to "
        "read its evidence, and a retrieval policy's reward little to work with.",
        "",
        "| with the like-share | without | Δ |",
        "|---|---|---|",
        *lines,
    ]


def stopping_lines(run: "RunScores") -> list[str]:
    """results.md's section on policies that may stop (fewer than K pieces per target on average): each against greedy
    retrieval stopped after a fixed k pieces, for every k up to the policy's mean pieces rounded up, paired on the
    same test pairs; [] without such a row.

    The deciding line is the k of those with the highest test AUC (chosen on test: a strict comparison for the
    policy, which must beat every fixed k it could be traded for)."""
    lines = []
    for model in sorted(run.methods):
        greedy = run.reference(model, "greedy")
        pieces = [float(m.info["mean_pieces"]) for m in run.methods[model].values() if m.info.get("mean_pieces")]
        mean_pieces = float(np.mean(pieces)) if pieces else math.nan
        if greedy is None or greedy == model or not mean_pieces < run.rounds(model) - 1e-9:
            continue
        ceiling = min(max(1, math.ceil(mean_pieces - 1e-9)), run.rounds(greedy))
        # Point estimates (mean AUC over seeds) choose k; only the deciding difference is resampled.
        by_k = {k: float(np.mean(run.test_aucs(greedy, k))) for k in range(1, ceiling + 1)}
        best = max(by_k, key=by_k.__getitem__)
        c = run.compare(model, greedy, r_ref=best)
        auc = float(np.mean(run.test_aucs(model)))
        lines.append(
            f"| {display_name(model)} | {mean_pieces:.2f} | {mean_pieces + 1:.2f} | {_pct(auc)} "
            f"| {', '.join(f'{k}: {_pct(a)}' for k, a in by_k.items())} | k = {best}: {_delta(c)} |"
        )
    if not lines:
        return []
    return [
        "",
        "## Policies that stop against greedy stopped after k pieces",
        "",
        "A policy that may stop uses fewer pieces, and fewer LLM calls (pieces + 1 prompts per target, the prefix "
        "reused), than K. It is compared with greedy retrieval (its own scorer and warm start) stopped after each k up "
        "to its mean pieces rounded up, on the same test pairs (AUC x100); Δ is against the best of those k (chosen "
        "on test: the policy must beat every fixed k it could be traded for), pair bootstrap pooled over seeds.",
        "",
        "| Method | pieces per target | prompts per target | AUC | greedy after k pieces: AUC | Δ vs the best k |",
        "|---|---|---|---|---|---|",
        *lines,
    ]


def dataset_report(
    run: "RunScores", dataset: str, claims: tuple[list["ClaimResult"], list[str]], preamble: str = ""
) -> str:
    """results.md of one dataset: the main table, the paired Δ table and the claims' verdict table.

    :param claims: :func:`coral.pipeline.claims.paper_claims` of ``run``.
    """
    from coral.pipeline.claims import claims_table, round_curve
    from coral.pipeline.compare import REFERENCE_TITLES, REFERENCES, seeds_summary

    models = sorted(run.methods, key=_order)
    seeds = sorted(run.pairs)
    any_run = next(iter(run.methods[models[0]].values())) if models else None
    n_test = len(any_run.test.rows) if any_run else 0
    n_neg = int((any_run.test.labels == 0).sum()) if any_run else 0
    n_valid = len(any_run.valid.labels) if any_run else 0
    lines = [f"# {dataset}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += [
        f"Every row on the same {n_test} test pairs ({n_neg} negative; a seeded stratified subset of the test split"
        + (", one per seed" if not run.shared_pairs else "")
        + f"); F1 and MCC at the threshold that maximises F1 on the same {n_valid} validation pairs for every method; "
        f"seeds {', '.join(map(str, seeds))} (mean ± sample std over seeds, ddof=1; a method whose scores do not "
        "change with the seed counts once). AUC interval: 95% pair bootstrap pooled over seeds. Scorer in brackets: "
        "zero-shot = the LLM as shipped; probe = a logistic head on its last hidden state; topK-finetune / LoRA-topN "
        "= the top layers trained on prompts with evidence; @NAME = a base LLM other than the embedded SmolLM2.",
        "",
        "| Method | AUC | AUC 95% CI | F1 | MCC | balanced acc. | AUC whole test split | seeds | "
        + " | ".join(RETRIEVAL_STATS.values())
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(RETRIEVAL_STATS),
    ]
    all_yes = []
    for model in models:
        runs = run.methods[model]
        metrics = [run.round_metrics(model, s) for s in runs]
        all_yes += [m["f1_all_yes"] for m in metrics]
        pooled = run.pooled(model)
        full = run.full.get(model, {})
        full_auc = seeds_summary([binary_metrics_full(f, 0, s)["auc"] for s, f in full.items()]) if full else ""
        stats = {
            key: [
                v
                for v in (float(m.info[key]) for m in runs.values() if m.info.get(key) not in (None, ""))
                if not math.isnan(v)  # a statistic that does not apply (|a| of a candidates policy)
            ]
            for key in RETRIEVAL_STATS
        }
        lines.append(
            "| "
            + " | ".join(
                [
                    display_name(model),
                    seeds_summary([pooled_v for pooled_v in pooled.per_seed]),
                    f"[{_pct(pooled.low)}, {_pct(pooled.high)}]",
                    seeds_summary([m["f1"] for m in metrics]),
                    seeds_summary([m["mcc"] for m in metrics], 3, 1.0),
                    seeds_summary([m["balanced_accuracy"] for m in metrics]),
                    full_auc,
                    str(len(runs)),
                    *(f"{np.mean(values):.3f}" if values else "" for values in stats.values()),
                ]
            )
            + " |"
        )
    if all_yes:
        lines += [
            "",
            f'Reference: answering "yes" to every pair gives F1 {100 * float(np.mean(all_yes)):.2f} (MCC 0, balanced '
            "accuracy 50).",
        ]
    lines += [
        "",
        "How a retrieval row's evidence relates to greedy's (the K nearest observed interactions in the same warm "
        "start): mean Jaccard overlap of a target's pieces with greedy's, and the share of targets whose first piece "
        "is greedy's first; mean |a| per dimension of a query policy's deterministic actions (0 is greedy).",
    ]
    best = run.best_ctr()
    lines += [
        "",
        "## Δ AUC vs LLM-only, CoRAL-random, CoRAL-greedy, the kNN like-share, the input twin and the best CTR "
        "baseline "
        f"({display_name(best) if best else 'none run'}, by validation AUC)",
        "",
        "Paired on the same pairs (AUC points x100): difference [95% pair bootstrap interval, pooled over seeds] and "
        "DeLong's p (one seed). LLM-only, CoRAL-random and CoRAL-greedy are those of the row's own scorer (CTR rows: "
        "of the "
        + (run.primary_tag() or "zero-shot")
        + " scorer); greedy and the like-share search the row's own warm start. "
        "The input twin of an aligned scorer's LLM row is a logistic regression (no LLM) on the numbers its prompts "
        "give it, fitted on the alignment's own training targets: of the twins given no more than the row's LLM "
        "(LLM-only and CoRAL-random: base rates and CF embeddings; rows that read retrieved evidence: also the "
        "like-share of the nearest pieces), the one with the highest validation AUC; the Δ is what the LLM adds over "
        "its inputs. The best CTR baseline is chosen among the baselines with and without item side features. The "
        "claims below decide from the two-level interval instead.",
        "",
        "| Method | " + " | ".join(f"Δ vs {REFERENCE_TITLES[k]}" for k in REFERENCES) + " |",
        "|---|" + "---|" * len(REFERENCES),
    ]
    for model in models:
        comparisons = run.comparisons(model)
        lines.append("| " + display_name(model) + " | " + " | ".join(_delta(comparisons[k]) for k in REFERENCES) + " |")
    lines += evidence_information_lines(run)
    lines += stopping_lines(run)
    lines += ["", "## The claims", "", claims_table(*claims, display_name)]
    method = run.claims_method()
    if method is not None:
        lines += ["", round_curve(run, method)]
    lines += [""]
    return "\n".join(lines)


def training_section(runs: Mapping[str, Mapping[int, Path]], display: Callable[[str], str] = display_name) -> str:
    """results.md's "Training of the learned policies" section ("" without trained policies): per
    method and seed, the updates, the median ``approx_kl`` over them, the deterministic policy's
    validation return at the first and last check and greedy retrieval's on the same tuning rows
    (:func:`coral.policies.curves.training_summary`); then per method what that adds up to.

    :param runs: each trained method's ``coral train`` run directory per seed.
    :param display: the display name of a method.
    """
    if not runs:
        return ""
    from coral.policies.curves import training_summary

    lines = [
        "",
        "## Training of the learned policies",
        "",
        "From each trained policy's logs: SB3's `approx_kl` per update (PPO's usual range is about 0.01-0.03; SB3 "
        "writes an update's statistics with the next rollout, so the last update is not among them) and the "
        "deterministic policy's return |p0 − y| − |pK − y| on the validation split's tuning rows (at the first check, "
        "before any update, and at the last), beside greedy retrieval's return on the same rows. "
        "`training_curves.png` draws both returns over training (mean over seeds, band: min to max).",
        "",
        "| Method | seed | updates logged | median approx_kl | validation return, first → last | rose | greedy's "
        "validation return | last − greedy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in sorted(runs, key=_order):
        summaries = {seed: training_summary(path) for seed, path in sorted(runs[model].items())}
        for seed, t in summaries.items():
            validated = t.val_checks > 0
            lines.append(
                "| "
                + " | ".join(
                    [
                        display(model),
                        str(seed),
                        str(t.updates),
                        _num(t.median_approx_kl, 3),
                        f"{t.val_first:+.4f} → {t.val_last:+.4f}" if validated else "not validated",
                        ("yes" if t.rose else "no") if validated else "",
                        _num(t.greedy_return, 4, signed=True),
                        _num(t.val_last - t.greedy_return, 4, signed=True),
                    ]
                )
                + " |"
            )
        validated = [t for t in summaries.values() if t.val_checks > 0]
        kl = [t.median_approx_kl for t in summaries.values() if t.updates]
        text = f"- {display(model)}: median approx_kl " + (
            f"{float(np.median(kl)):.3f} (median of the seeds' medians)" if kl else "not logged (no PPO updates)"
        )
        if validated:
            n = len(validated)
            above = sum(t.val_last > t.greedy_return for t in validated)
            gap = float(np.mean([t.val_last - t.greedy_return for t in validated]))
            text += (
                f"; the validation return rose for {sum(t.rose for t in validated)} of {n} seed(s) and ended above "
                "greedy's on the same "
                f"{validated[0].val_rows} rows for {above} of {n} (mean last − greedy {gap:+.4f})."
            )
        else:
            text += "; no validation during training (`train.val_every` 0)."
        verdicts.append(text)
    return "\n".join(lines + [""] + verdicts) + "\n"


def _num(x: float, digits: int, signed: bool = False) -> str:
    return "n/a" if math.isnan(x) else f"{x:{'+' if signed else ''}.{digits}f}"


def console_summary(run: "RunScores", dataset: str, claims: tuple[list["ClaimResult"], list[str]]) -> str:
    """What ``coral run`` prints at the end (Markdown): each method's AUC on the shared test pairs
    and the claims' verdicts; results.md has the rest.

    :param claims: :func:`coral.pipeline.claims.paper_claims` of ``run``.
    """
    from coral.pipeline.claims import claims_summary

    lines = [
        f"**{dataset}**: AUC x100 on the shared test pairs (mean over seeds, 95% pooled pair interval)",
        "",
        "| Method | AUC | 95% CI |",
        "|---|---|---|",
    ]
    for model in sorted(run.methods, key=_order):
        pooled = run.pooled(model)
        lines.append(f"| {display_name(model)} | {_pct(pooled.estimate)} | [{_pct(pooled.low)}, {_pct(pooled.high)}] |")
    results, missing = claims
    lines += ["", "Claims:", "", *claims_summary(results, display_name), *(f"- not tested: {m}" for m in missing)]
    return "\n".join(lines) + "\n"


def plot_round_bands(run: "RunScores", path: Path, title: str = "") -> None:
    """AUC after each retrieval round 0..K per method (the paper's Fig. 3) on the shared test pairs,
    the mean over seeds with its 95% pooled pair-bootstrap band; LLM-only rows as lines with bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coral.pipeline.compare import base_name

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    round_methods = sorted((m for m in run.methods if run.rounds(m) > 0), key=_order)
    k_max = max((run.rounds(m) for m in round_methods), default=1)
    for model in round_methods:
        xs = list(range(run.rounds(model) + 1))
        est = [run.pooled(model, r) for r in xs]
        line = ax.plot(xs, [e.estimate for e in est], marker="o", label=display_name(model))[0]
        ax.fill_between(xs, [e.low for e in est], [e.high for e in est], color=line.get_color(), alpha=0.15)
    for style, model in zip(
        (":", "--", "-."), sorted(m for m in run.methods if base_name(m) == "llm-only"), strict=False
    ):
        e = run.pooled(model)
        line = ax.axhline(e.estimate, linestyle=style, color="grey", label=display_name(model))
        ax.axhspan(e.low, e.high, color="grey", alpha=0.08)
    ax.set_xlim(-0.2, k_max + 0.2)
    ax.set_xlabel("retrieval round")
    ax.set_ylabel("test AUC (shared pairs)")
    ax.set_title(title or "AUC after each retrieval round (95% bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_text(text: str, path: Path) -> str:
    atomic_write_text(path, text)
    return text
