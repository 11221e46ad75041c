"""The benchmark's statistics: shared pairs, paired differences, seeds, references and claims (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from coral.data.sample import stratified_subset
from coral.pipeline.claims import paper_claims
from coral.pipeline.compare import RunScores
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.scores import MethodScores, SplitScores, load_scores, save_scores

N_TEST, N_VALID = 600, 300


def labels(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < 0.6).astype(np.int64)


def noisy(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Scores whose AUC grows with ``signal``."""
    return 1 / (1 + np.exp(-(signal * (y - 0.5) + np.random.default_rng(seed).normal(size=len(y)))))


Y_TEST, Y_VALID = labels(N_TEST, 1), labels(N_VALID, 2)
PAIRS = SharedPairs(
    stratified_subset(Y_TEST, 300, 0, proportional=True), stratified_subset(Y_VALID, 100, 1, proportional=True), 0
)


def method(
    model: str, seed: int, test: np.ndarray, valid: np.ndarray, rows: SharedPairs | None = None, rounds: int = 0
) -> MethodScores:
    """Scores of ``model`` on the shared pairs (``rows`` given) or on the whole splits; test/valid: (n,) or (rounds+1,
    n)."""
    t_rows = PAIRS.test if rows else np.arange(N_TEST)
    v_rows = PAIRS.valid if rows else np.arange(N_VALID)
    test, valid = np.atleast_2d(test), np.atleast_2d(valid)
    return MethodScores(
        model,
        seed,
        SplitScores(t_rows, Y_TEST[t_rows], test[:, t_rows]),
        SplitScores(v_rows, Y_VALID[v_rows], valid[:, v_rows]),
    )


def test_shared_pairs_keep_the_class_shares_and_depend_only_on_the_seed() -> None:
    y = labels(5000, 3)
    rows = stratified_subset(y, 400, 7, proportional=True)
    assert len(rows) == 400 and len(np.unique(rows)) == 400
    assert abs((y[rows] == 0).sum() - 400 * (y == 0).mean()) <= 1
    assert np.array_equal(rows, stratified_subset(y, 400, 7, proportional=True))
    assert not np.array_equal(rows, stratified_subset(y, 400, 8, proportional=True))
    assert len(stratified_subset(y, 0, 0, proportional=True)) == 5000  # 0: the whole split
    # A rare class still appears.
    rare = np.ones(1000, dtype=np.int64)
    rare[:3] = 0
    assert (rare[stratified_subset(rare, 50, 0, proportional=True)] == 0).sum() == 1


def test_scores_round_trip(tmp_path) -> None:
    m = method(
        "coral-ppo-dfm@probe",
        0,
        np.stack([noisy(Y_TEST, s, 0) for s in (0.5, 1.0)]),
        np.stack([noisy(Y_VALID, s, 1) for s in (0.5, 1.0)]),
        PAIRS,
    )
    m = MethodScores(m.model, m.seed, m.test, m.valid, {"evidence_diversity": 0.5})
    save_scores(tmp_path / "s.npz", [m])
    (back,) = load_scores(tmp_path / "s.npz")
    assert back.model == m.model and back.info == m.info and back.test.rounds == 1
    np.testing.assert_array_equal(back.test.p, m.test.p)
    with pytest.raises(Exception, match="not scored"):
        m.test.at(np.array([N_TEST + 5]))


def test_paired_differences_use_the_same_pairs_and_the_right_references() -> None:
    t_llm, v_llm = noisy(Y_TEST, 0.5, 10), noisy(Y_VALID, 0.5, 11)
    t_ppo, v_ppo = t_llm + 0.6 * noisy(Y_TEST, 2.0, 12), v_llm + 0.6 * noisy(Y_VALID, 2.0, 13)
    # Two CTR models: "dfm" is the better one on validation, "dcn" on test: the best CTR baseline
    # must be chosen by validation.
    t_dfm, v_dfm = noisy(Y_TEST, 1.0, 14), noisy(Y_VALID, 3.0, 15)
    t_dcn, v_dcn = noisy(Y_TEST, 3.0, 16), noisy(Y_VALID, 1.0, 17)
    scores = [
        method("llm-only@probe", 0, t_llm, v_llm, PAIRS),
        method("coral-random@probe", 0, np.stack([t_llm, t_llm]), np.stack([v_llm, v_llm]), PAIRS, rounds=1),
        method("coral-ppo-dfm@probe", 0, np.stack([t_llm, t_ppo]), np.stack([v_llm, v_ppo]), PAIRS, rounds=1),
        method("dfm", 0, t_dfm, v_dfm),
        method("dcn", 0, t_dcn, v_dcn),
    ]
    run = RunScores(scores, {0: PAIRS}, n_boot=500)
    assert run.best_ctr() == "dfm"
    rows = PAIRS.test
    c = run.comparisons("coral-ppo-dfm@probe")
    expected = roc_auc_score(Y_TEST[rows], t_ppo[rows]) - roc_auc_score(Y_TEST[rows], t_llm[rows])
    assert c["llm_only"].reference == "llm-only@probe"
    assert c["llm_only"].estimate == pytest.approx(expected, abs=1e-12)
    assert c["llm_only"].low <= c["llm_only"].estimate <= c["llm_only"].high
    assert c["llm_only"].low > 0 and c["llm_only"].p_value < 0.05
    assert c["best_ctr"].reference == "dfm"
    assert c["best_ctr"].estimate == pytest.approx(
        roc_auc_score(Y_TEST[rows], t_ppo[rows]) - roc_auc_score(Y_TEST[rows], t_dfm[rows]), abs=1e-12
    )
    # CTR rows are compared with the LLM rows of the primary (aligned) scorer, on the shared pairs.
    assert run.comparisons("dcn")["llm_only"].reference == "llm-only@probe"
    assert set(run.full) == {"dfm", "dcn"}  # scored on the whole split as well
    # The claims this run can test: (1) vs the LLM alone and (4) vs the best CTR model; greedy,
    # like-share and round-1 rows were not run, so (2), (3) and (5) say so instead of borrowing
    # a weaker reference.
    results, missing = paper_claims(run)
    assert [r.claim.number for r in results] == [1, 4]
    assert results[0].claim.a == "coral-ppo-dfm@probe" and results[0].claim.b == "llm-only@probe"
    assert results[0].better == "supported"
    assert results[1].claim.b == "dfm"
    assert [m[:3] for m in missing] == ["(2)", "(3)", "(5)"]


def test_input_twins_and_side_feature_baselines_as_references() -> None:
    from coral.pipeline.report import _delta, dataset_report, display_name

    tag = "top2-finetune+rates+cf4"
    names = ("llm", "greedy", "twin", "twin_share", "dfm", "dfm_side", "twin_rates")
    # Signal strengths (higher: more signal): DFM and DFM + side tie on test; on validation the
    # side-feature model is the stronger and the rates twin the weakest, so validation decides.
    test_signal, valid_signal = (0.5, 1.5, 1.0, 2.0, 1.0, 1.0, 3.0), (0.5, 1.5, 1.0, 2.0, 1.0, 3.0, 0.3)
    t = {name: noisy(Y_TEST, signal, i) for i, (name, signal) in enumerate(zip(names, test_signal, strict=True))}
    v = {name: noisy(Y_VALID, signal, 50 + i) for i, (name, signal) in enumerate(zip(names, valid_signal, strict=True))}
    scores = [
        method(f"llm-only@{tag}", 0, t["llm"], v["llm"], PAIRS),
        method(
            f"coral-greedy-dfm@{tag}",
            0,
            np.stack([t["llm"], t["greedy"]]),
            np.stack([v["llm"], v["greedy"]]),
            PAIRS,
            rounds=1,
        ),
        method("llm-only@zero-shot", 0, t["llm"], v["llm"], PAIRS),
        method("twin-rates", 0, t["twin_rates"], v["twin_rates"], PAIRS),  # best on test, worst on validation
        method("twin-rates+cf-dfm", 0, t["twin"], v["twin"], PAIRS),
        method("twin-rates+cf+share-dfm", 0, t["twin_share"], v["twin_share"], PAIRS),
        method("dfm", 0, t["dfm"], v["dfm"]),
        method("dfm+side", 0, t["dfm_side"], v["dfm_side"]),
    ]
    run = RunScores(scores, {0: PAIRS}, n_boot=200)
    # The LLM without evidence against the best twin (by validation AUC) given no more than its
    # numbers; the one reading the nearest pieces may also be compared with a twin that counts them;
    # no twin for the zero-shot scorer or non-LLM rows.
    assert run.reference(f"llm-only@{tag}", "twin") == "twin-rates+cf-dfm"
    assert run.reference(f"coral-greedy-dfm@{tag}", "twin") == "twin-rates+cf+share-dfm"
    assert run.valid_auc("twin-rates+cf+share-dfm") > run.valid_auc("twin-rates+cf-dfm") > run.valid_auc("twin-rates")
    assert (
        run.reference("llm-only@zero-shot", "twin") is None
        and run.reference("dfm", "twin") is None
        and run.reference("twin-rates", "twin") is None
    )
    rows = PAIRS.test
    c = run.comparisons(f"coral-greedy-dfm@{tag}")["twin"]
    assert c.estimate == pytest.approx(
        roc_auc_score(Y_TEST[rows], t["greedy"][rows]) - roc_auc_score(Y_TEST[rows], t["twin_share"][rows]), abs=1e-12
    )
    # The best CTR baseline is chosen by validation among the baselines with and without side features.
    assert run.best_ctr() == "dfm+side"
    assert (
        display_name("dfm+side") == "DFM + side features"
        and display_name("twin-rates+cf+share-dfm") == "LR(base rates + CF embeddings + like-share) (DFM)"
    )
    report = dataset_report(run, "d", paper_claims(run))
    table = report[: report.index("## Δ AUC")]
    names = [
        line.split(" | ")[0][2:]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| Method")
    ]
    assert names[:2] == ["DFM", "DFM + side features"] and names.index("LR(base rates)") < names.index(
        "LLM-Language [zero-shot]"
    )
    assert "best CTR baseline (DFM + side features, by validation AUC)" in report and "Δ vs input twin" in report
    # What the nearest pieces add to a linear reader: the twin with the like-share against the one
    # with the same other inputs and without it (not against the rates-only twin), paired on test.
    section = report[report.index("## What the nearest pieces add") : report.index("## The claims")]
    expected = roc_auc_score(Y_TEST[rows], t["twin_share"][rows]) - roc_auc_score(Y_TEST[rows], t["twin"][rows])
    rows_shown = [line for line in section.splitlines() if line.startswith("| LR(")]
    assert rows_shown == [
        "| LR(base rates + CF embeddings + like-share) (DFM) | LR(base rates + CF embeddings) (DFM) | "
        + _delta(run.compare("twin-rates+cf+share-dfm", "twin-rates+cf-dfm"))
        + " |"
    ]
    assert f"| {100 * expected:+.2f} [" in rows_shown[0]


def test_a_deterministic_method_counts_once_and_seeds_use_ddof_1() -> None:
    t_llm, v_llm = noisy(Y_TEST, 0.5, 20), noisy(Y_VALID, 0.5, 21)
    scores = []
    for seed in (0, 1, 2):
        scores.append(method("llm-only@zero-shot", seed, t_llm, v_llm, PAIRS))  # the same scores every seed
        scores.append(method("dfm", seed, noisy(Y_TEST, 1.0 + seed, 30 + seed), noisy(Y_VALID, 1.0, 40 + seed)))
    run = RunScores(scores, {s: PAIRS for s in (0, 1, 2)}, n_boot=300)
    assert len(run.methods["llm-only@zero-shot"]) == 1 and len(run.methods["dfm"]) == 3
    pooled = run.pooled("dfm")
    per_seed = [roc_auc_score(Y_TEST[PAIRS.test], noisy(Y_TEST, 1.0 + s, 30 + s)[PAIRS.test]) for s in (0, 1, 2)]
    assert pooled.per_seed == pytest.approx(per_seed)
    assert pooled.std == pytest.approx(np.std(per_seed, ddof=1))
    assert pooled.low < pooled.estimate < pooled.high
    # The one llm-only run serves every seed of dfm's comparison.
    c = run.comparisons("dfm")["llm_only"]
    assert len(c.per_seed) == 3 and c.low < c.estimate < c.high


def test_mean_rating_reference_is_level_with_the_ctr_models_on_movielens_small() -> None:
    from coral.baselines.reference import MeanRatingReference
    from coral.data import load_dataset

    ds = load_dataset("movielens_small")
    ref = MeanRatingReference.fit(ds)
    p = ref.predict(ds.test.user, ds.test.item)
    assert np.all((p > 0) & (p < 1))
    auc = roc_auc_score(ds.test.label, p)
    assert auc > 0.75, auc  # 0.785 measured; the CTR baselines reach 0.78-0.80
    # P(like) is a monotone map of the rating prediction: same AUC.
    assert roc_auc_score(ds.test.label, ref.rating(ds.test.user, ds.test.item)) == pytest.approx(auc)


def test_a_stopping_policy_is_compared_with_greedy_stopped_after_every_k_up_to_its_pieces() -> None:
    import dataclasses

    from coral.pipeline.report import dataset_report

    tag = "top2-finetune"
    # Greedy's AUC by pieces: round 2 is its best among k <= 3, and round 5 is better still.
    signal = (0.2, 1.0, 2.0, 1.5, 1.8, 3.0)
    greedy_t = np.stack([noisy(Y_TEST, s, 60) for s in signal])
    greedy_v = np.stack([noisy(Y_VALID, s, 61) for s in signal])
    stop_t, stop_v = noisy(Y_TEST, 1.2, 62), noisy(Y_VALID, 1.2, 63)
    stopping = method(f"coral-maskable-ppo-features-stop-dfm@{tag}", 0, stop_t, stop_v, PAIRS)
    stopping = dataclasses.replace(stopping, info={"mean_pieces": 2.4})
    # K rounds, filled forward after the stop (as evaluate_policy writes them)
    stopping = dataclasses.replace(
        stopping,
        test=SplitScores(stopping.test.rows, stopping.test.labels, np.repeat(stopping.test.p, 6, axis=0)),
        valid=SplitScores(stopping.valid.rows, stopping.valid.labels, np.repeat(stopping.valid.p, 6, axis=0)),
    )
    full = dataclasses.replace(
        method(f"coral-ppo-dfm@{tag}", 0, greedy_t, greedy_v, PAIRS, rounds=5), info={"mean_pieces": 5.0}
    )
    run = RunScores(
        [
            method(f"llm-only@{tag}", 0, greedy_t[0], greedy_v[0], PAIRS),
            method(f"coral-greedy-dfm@{tag}", 0, greedy_t, greedy_v, PAIRS, rounds=5),
            stopping,
            full,
        ],
        {0: PAIRS},
        n_boot=200,
    )
    report = dataset_report(run, "d", paper_claims(run))
    section = report[report.index("## Policies that stop") : report.index("## The claims")]
    rows = [line for line in section.splitlines() if line.startswith("| CoRAL")]
    assert len(rows) == 1 and "stop action" in rows[0]  # the policy that uses all K pieces is not here
    t = PAIRS.test
    by_k = [roc_auc_score(Y_TEST[t], greedy_t[k][t]) for k in (1, 2, 3)]
    best = 1 + int(np.argmax(by_k))
    assert best == 2
    expected = roc_auc_score(Y_TEST[t], stop_t[t]) - by_k[best - 1]
    cells = rows[0].split(" | ")
    assert cells[1] == "2.40" and cells[2] == "3.40"
    assert cells[4] == ", ".join(f"{k}: {100 * a:.2f}" for k, a in zip((1, 2, 3), by_k, strict=True))
    assert cells[5].startswith(f"k = 2: {100 * expected:+.2f} [")
