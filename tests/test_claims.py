"""The claims block: each claim against its strongest simple alternative, decided from the right interval."""

from __future__ import annotations

import numpy as np
import pytest
from llm_fixtures import small_dataset

from coral.pipeline.claims import claims_of, paper_claims
from coral.pipeline.compare import RunScores
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.scores import MethodScores, SplitScores
from coral.stats import NOT_SUPPORTED, SUPPORTED, UNDECIDED

TAG = "top2-finetune"


def _method(
    model: str, seed: int, y: np.ndarray, p: np.ndarray, valid_y: np.ndarray, valid_p: np.ndarray
) -> MethodScores:
    rows, valid_rows = np.arange(len(y)), np.arange(len(valid_y))
    return MethodScores(
        model, seed, SplitScores(rows, y, np.atleast_2d(p)), SplitScores(valid_rows, valid_y, np.atleast_2d(valid_p))
    )


def _run(per_seed: dict[int, dict[str, np.ndarray]], n: int) -> RunScores:
    """RunScores of hand-made scores: per seed, model -> (rounds + 1, n) test scores (validation: the same)."""
    scores, pairs = [], {}
    for seed, methods in per_seed.items():
        y = per_seed[seed]["_y"]
        for model, p in methods.items():
            if model != "_y":
                scores.append(_method(model, seed, y, p, y, p))
        pairs[seed] = SharedPairs(np.arange(n), np.arange(n), seed)
    # every seed has its own draw of pairs (different fingerprints), as with vary_split
    run = RunScores(scores, pairs, n_boot=400)
    run.shared_pairs = False
    return run


def _seed(seed: int, n: int, ppo_gain: float = 1.0, greedy_gain: float = 1.0) -> dict[str, np.ndarray]:
    """One seed's methods: PPO gains everything in round 1 (rounds 1..5 identical)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    noise = rng.normal(size=n)
    informative = ppo_gain * y + rng.normal(size=n)
    ppo = np.stack([noise] + [informative] * 5)
    greedy = np.stack([noise] + [greedy_gain * y + rng.normal(size=n)] * 5)
    share = np.stack([np.full(n, 0.5)] + [y + rng.normal(scale=1.2, size=n)] * 5)
    return {
        "_y": y, f"coral-ppo-dfm@{TAG}": ppo, f"llm-only@{TAG}": noise[None], f"coral-greedy-dfm@{TAG}": greedy,
        "knn-share-dfm": share, "dfm": 0.7 * y + rng.normal(size=n), "wdl": 0.8 * y + rng.normal(size=n),
    }


def _verdicts(run: RunScores) -> dict[int, tuple[str, str, float, float]]:
    results, missing = paper_claims(run)
    assert not missing
    return {r.claim.number: (r.better, r.worse, r.verdict_interval.low, r.verdict_interval.high) for r in results}


def test_claims_pair_each_method_with_its_strongest_simple_alternative():
    run = _run({0: _seed(0, 300)}, 300)
    claims = {c.number: c for c in claims_of(run)[0]}
    assert (claims[1].a, claims[1].b) == (f"coral-ppo-dfm@{TAG}", f"llm-only@{TAG}")
    assert (claims[2].a, claims[2].b) == (f"coral-ppo-dfm@{TAG}", f"coral-greedy-dfm@{TAG}")
    assert (claims[3].a, claims[3].b, claims[3].a_round, claims[3].b_round) == (
        f"coral-ppo-dfm@{TAG}", f"coral-ppo-dfm@{TAG}", None, 1,
    )
    assert claims[4].b in ("dfm", "wdl")  # chosen by validation AUC
    assert (claims[5].a, claims[5].b) == (f"coral-greedy-dfm@{TAG}", "knn-share-dfm")


def test_all_the_gain_in_round_one_supports_claim_1_but_not_claim_3():
    run = _run({s: _seed(s, 400) for s in range(3)}, 400)
    verdicts = _verdicts(run)
    assert verdicts[1][0] == SUPPORTED
    assert verdicts[3][0] == NOT_SUPPORTED and verdicts[3][2:] == (0.0, 0.0)  # rounds 1..K identical: Δ exactly 0
    assert verdicts[3][:2] != verdicts[1][:2]


def test_seeds_that_disagree_leave_claim_2_undecided_though_the_pooled_pairs_exclude_zero():
    n = 2500
    seeds = {}
    for s in range(5):  # PPO far above greedy in three seeds, far below in two
        seeds[s] = _seed(s, n, ppo_gain=2.0 if s < 3 else 0.5, greedy_gain=0.5 if s < 3 else 2.0)
    run = _run(seeds, n)
    claim = next(c for c in claims_of(run)[0] if c.number == 2)
    pooled = run.compare(claim.a, claim.b)
    assert pooled.low > 0  # the pair bootstrap, given the trained models, excludes 0 ...
    results, _ = paper_claims(run)
    result = next(r for r in results if r.claim.number == 2)
    assert result.better == UNDECIDED and result.worse == UNDECIDED  # ... the seeds do not
    assert result.pooled.low > 0 and result.verdict_interval.low < 0 < result.verdict_interval.high


def test_one_seed_decides_from_the_pair_bootstrap_and_says_so():
    from coral.pipeline.claims import claims_table
    from coral.pipeline.report import display_name

    run = _run({0: _seed(0, 300)}, 300)
    results, missing = paper_claims(run)
    table = claims_table(results, missing, display_name)
    # The five claims, and (4) once more for greedy's evidence reader against the best CTR model.
    assert [r.claim.number for r in results] == [1, 2, 3, 4, 4, 5]
    assert results[4].claim.a.startswith("coral-greedy-")
    assert table.count("(one training run)") == 6
    for r in results:
        assert (r.verdict_interval.low, r.verdict_interval.high) == pytest.approx(
            (r.pooled.low, r.pooled.high), abs=0.02
        )


def test_like_share_is_the_share_of_liked_among_greedys_own_pieces():
    from coral.envs import EnvConfig, EnvResources
    from coral.llm.scripted import ScriptedScorer
    from coral.policies.evaluate import evaluate_policy
    from coral.policies.greedy import GreedyPolicy
    from coral.retrieval import EvidenceIndex, random_embeddings
    from coral.retrieval.like_share import like_share_scores

    dataset = small_dataset()
    tables = random_embeddings(dataset, dim=8, seed=0)
    rows = np.arange(len(dataset.valid))
    users, items = dataset.valid.user[rows], dataset.valid.item[rows]
    index = EvidenceIndex(dataset, tables)
    k = 3
    plain = like_share_scores(index, users, items, k)
    weighted = like_share_scores(index, users, items, k, weighted=True)
    # by hand: the k nearest training interactions to [e_u, e_i], the target itself excluded
    train = dataset.train
    vectors = np.concatenate([tables.user[train.user], tables.item[train.item]], axis=1).astype(np.float64)
    for j, (u, i) in enumerate(zip(users, items, strict=False)):
        d = ((vectors - np.concatenate([tables.user[u], tables.item[i]])) ** 2).sum(1)
        d[(train.user == u) & (train.item == i)] = np.inf
        order = np.lexsort((np.arange(len(d)), d))[:k]
        liked = train.label[order].astype(float)
        assert plain[0, j] == 0.5
        assert plain[1:, j] == pytest.approx(np.cumsum(liked) / np.arange(1, k + 1))
        w = 1.0 / (1e-6 + np.sqrt(d[order]))
        assert weighted[k, j] == pytest.approx((w * liked).sum() / w.sum())
    # and the pieces are greedy's own evidence, round by round
    env = EnvConfig.from_any(scorer="scripted", warm_start="none", rounds=k)
    result = evaluate_policy(
        GreedyPolicy(), env, EnvResources(dataset=dataset, scorer=ScriptedScorer(), embeddings=tables), split="valid",
        episodes=rows, progress=False,
    )
    for j, record in enumerate(result.records):
        labels = [step["label"] for step in record["rounds"] if step.get("user_index", -1) >= 0]
        assert plain[len(labels), j] == pytest.approx(np.mean(labels))


def test_shuffled_control_is_written_in_the_nearest_controls_wording():
    from coral.align.controls import control_evidence, shuffled_partners
    from coral.align.topk import evidence_index
    from coral.llm.prompt import PromptBuilder, PromptConfig
    from coral.retrieval import random_embeddings

    dataset = small_dataset()
    index = evidence_index(dataset, random_embeddings(dataset, dim=8, seed=0))
    users, items = dataset.valid.user, dataset.valid.item
    evidence = control_evidence(index, users, items, 3, seed=0)
    builder = PromptBuilder(dataset, PromptConfig(), None)
    partners = shuffled_partners(users, items, 0)
    same_shape = 0
    for j, partner in enumerate(partners):
        mine, theirs = evidence["shuffled"][j], evidence["nearest"][partner]
        if len(mine) != len(theirs):  # a transplanted piece named a held-out pair: left out
            continue
        same_shape += 1
        text = "".join(builder.build(int(users[j]), int(items[j]), mine).segments)
        partner_text = "".join(builder.build(int(users[partner]), int(items[partner]), theirs).segments)
        for phrase in ("this item", "this user"):
            assert text.count(phrase) == partner_text.count(phrase)
        assert [e.label for e in mine] == [e.label for e in theirs]
        assert not any((e.user, e.item) == (int(users[j]), int(items[j])) for e in mine)
    assert same_shape >= len(partners) // 3  # a tiny, dense dataset: many pairs are held out
