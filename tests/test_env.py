"""The retrieval environment: Gymnasium API, both env checkers, episode semantics, leakage guard, batching."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from test_env_fixtures import env_config, label_embeddings, resources, tiny_dataset, tiny_env

from coral.envs import ENV_ID, SCRIPTED_ENV_ID, CollabRetrievalEnv, EnvConfig, LeakageError, make_env
from coral.envs.vector import BatchedRetrievalVecEnv, make_batched_vec_env
from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.base import Prompt
from coral.llm.scripted import MetadataPromptBuilder, ScriptedConfig, ScriptedScorer
from coral.retrieval import EvidenceIndex

MODES = [("query", "observed"), ("query", "independent"), ("candidates", "observed")]


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


class CountingScorer(ScriptedScorer):
    """A scripted scorer that remembers the size of every call."""

    def __init__(self) -> None:
        super().__init__(ScriptedConfig(weight=0.6, noise=0.3))
        self.batch_sizes: list[int] = []

    def score_details(self, prompts):
        self.batch_sizes.append(len(prompts))
        return super().score_details(prompts)


def rollout(env: CollabRetrievalEnv, seed: int, actions_seed: int = 0):
    """One episode with seeded random actions: (p_0, rewards, infos, terminated, truncated)."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(actions_seed)
    rewards, infos = [], []
    while True:
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        rewards.append(r)
        infos.append(info)
        if terminated or truncated:
            return env.p0, rewards, infos, terminated, truncated


def test_gymnasium_make_registered_id(dataset):
    assert ENV_ID in gym.registry and SCRIPTED_ENV_ID in gym.registry
    env = gym.make(ENV_ID, config=env_config(), resources=resources(dataset))
    obs, info = env.reset(seed=0)
    assert obs.shape == (4 * 4 + CollabRetrievalEnv.N_SCALARS,) and obs.dtype == np.float32
    assert 0.0 <= info["p"] <= 1.0 and info["t"] == 0
    # keywords are EnvConfig keys, as gymnasium.make("CoRAL/CollabRetrieval-v1", dataset=...) passes them
    env2 = gym.make(ENV_ID, resources=resources(dataset), embedding_dim=4, split="test", rounds=3)
    assert env2.unwrapped.config.rounds == 3 and env2.unwrapped.config.warm.embedding_dim == 4
    assert env2.unwrapped.dataset is dataset


def test_make_env_accepts_dict_and_rejects_unknown_keys(dataset):
    from coral.config import to_dict

    as_dict = to_dict(env_config())
    env = make_env(as_dict, resources=resources(dataset))  # RLlib passes its EnvContext, a dict
    assert isinstance(env, CollabRetrievalEnv)
    assert as_dict["dataset"] == "gift_cards" and as_dict["warm_start"] == "dfm"  # the flat sections' keys
    with pytest.raises(CoralError, match="unknown key 'n_rounds'"):
        make_env(as_dict, n_rounds=3)
    with pytest.raises(CoralError, match="action_mode must be one of query, candidates, got 'pointer'"):
        EnvConfig.from_any(action_mode="pointer")
    with pytest.raises(CoralError, match="rounds must be >= 1, got 0"):
        EnvConfig.from_any(rounds=0)


def test_scripted_id_passes_the_env_checker_and_renders_the_evidence_block(tmp_path, monkeypatch):
    from gymnasium.utils.env_checker import check_env

    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    env = gym.make(SCRIPTED_ENV_ID, render_mode="ansi", split="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.reset(seed=1)
    assert env.render() == ""  # no evidence yet
    for t in range(1, 4):
        env.step(env.action_space.sample())
        block = env.render()
        inner = env.unwrapped
        assert block == "".join(inner.prompt.segments[-(t + 1):-1]) and block.count("\n") == t
        assert all(
            f"user {e.user} " in line or line.startswith("this user ")
            for e, line in zip(inner.evidence, block.splitlines(), strict=False)
        )
    assert inner.config.scorer.scorer == "scripted" and inner.config.warm.warm_start == "none"


@pytest.mark.parametrize("action_mode,query_match", MODES)
def test_both_env_checkers_pass(dataset, action_mode, query_match):
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(
        ENV_ID, config=env_config(action_mode=action_mode, query_match=query_match), resources=resources(dataset)
    ).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        gym_check_env(env)
        sb3_check_env(env, warn=True)


@pytest.mark.parametrize("action_mode,query_match", MODES)
def test_reward_is_decrease_of_abs_error_and_telescopes(dataset, action_mode, query_match):
    env = tiny_env(dataset, action_mode=action_mode, query_match=query_match)
    for seed in range(5):
        p0, rewards, infos, _, _ = rollout(env, seed)
        prev = p0
        for r, info in zip(rewards, infos, strict=False):
            assert r == pytest.approx(abs(prev - info["label"]) - abs(info["p"] - info["label"]))
            prev = info["p"]
        assert sum(rewards) == pytest.approx(abs(p0 - env.label) - abs(prev - env.label))


def test_training_episodes_stop_early_or_truncate_at_10(dataset):
    env = tiny_env(dataset, split="train", scorer=ScriptedScorer(ScriptedConfig(weight=1.5, noise=0.3)))
    ends = set()
    for seed in range(30):
        _, rewards, infos, terminated, truncated = rollout(env, seed)
        assert terminated != truncated
        if terminated:
            assert infos[-1]["abs_error"] < 0.1 and len(rewards) <= 10
            assert all(i["abs_error"] >= 0.1 for i in infos[:-1])
        else:
            assert len(rewards) == 10 and infos[-1]["abs_error"] >= 0.1
        ends.add("terminated" if terminated else "truncated")
    assert ends == {"terminated", "truncated"}  # both endings occur with this scorer


@pytest.mark.parametrize("split", ["valid", "test"])
def test_evaluation_episodes_have_exactly_5_steps(dataset, split):
    env = tiny_env(dataset, split=split, scorer=ScriptedScorer(ScriptedConfig(weight=3.0)))
    for seed in range(10):
        _, rewards, infos, terminated, truncated = rollout(env, seed)
        assert len(rewards) == 5 and truncated and not terminated
        assert infos[-1]["t"] == 5


def test_candidates_masks_hide_used_and_masked_action_is_noop(dataset):
    env = tiny_env(dataset, action_mode="candidates", split="test")
    env.reset(seed=1)
    assert env.action_masks().all()
    dists = env.index.distances(env.index.pair_vector(env.user, env.item))[env.candidates]
    assert np.all(np.diff(dists) >= 0)  # nearest first
    _, r, _, _, info = env.step(3)
    mask = env.action_masks()
    assert not mask[3] and mask.sum() == len(mask) - 1
    p_before = env.p
    _, r, _, _, info = env.step(3)  # masked: nothing retrieved, nothing rescored
    assert r == 0.0 and env.p == p_before and info["evidence"]["label"] is None


def test_independent_mode_unobserved_pair_adds_nothing(dataset):
    env = tiny_env(dataset, query_match="independent", split="test")
    env.reset(seed=0)
    scored = env.prompts_scored
    # The target's own user and item: the target pair, never shown (test pairs are not in the pool).
    _, r, _, _, info = env.step(env.action_for_query(env.index.pair_vector(env.user, env.item)))
    assert info["evidence"]["label"] is None and r == 0.0 and env.prompts_scored == scored
    assert info["evidence"]["user"] == env.user and info["evidence"]["item"] == env.item
    # An observed training pair is retrieved with its label.
    row = 0
    u, i = int(env.index.pool.user[row]), int(env.index.pool.item[row])
    _, _, _, _, info = env.step(env.action_for_query(env.index.pair_vector(u, i)))
    assert (info["evidence"]["user"], info["evidence"]["item"]) == (u, i)
    assert info["evidence"]["label"] == int(env.index.pool.label[row])


def test_a_batch_of_queries_finds_the_rows_each_query_finds_alone(dataset):
    index = EvidenceIndex(dataset, label_embeddings(dataset))
    queries = np.random.default_rng(0).normal(size=(12, 2 * index.dim)).astype(np.float32)
    together = index.distances_batch(queries)
    alone = np.stack([index.distances(q) for q in queries])
    np.testing.assert_allclose(together, alone, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(index.distances(queries), alone, rtol=1e-12, atol=1e-12)
    excluded = np.zeros(len(index), dtype=bool)
    excluded[::3] = True
    for q, d in zip(queries, together, strict=False):
        np.testing.assert_array_equal(
            index.nearest_rows(q, excluded, 5, distances=d), index.nearest_rows(q, excluded, 5)
        )


def test_an_episode_batch_scores_all_its_prompts_in_one_forward_pass(dataset):
    scorer = CountingScorer()
    scorer.batch_size = 8  # like HFScorer's
    make_batched_vec_env(env_config(), n_envs=12, seed=0, resources=resources(dataset, scorer=scorer))
    assert scorer.batch_size == 12


def test_leakage_guard_refuses_heldout_and_target(dataset):
    emb = label_embeddings(dataset)
    # An index whose pool wrongly holds validation rows: every retrieval from it is refused.
    bad = EvidenceIndex(dataset, emb, pool=dataset.valid)
    with pytest.raises(LeakageError, match="validation/test"):
        bad.take(0, target_user=-1, target_item=-1)
    index = EvidenceIndex(dataset, emb)
    u, i = int(dataset.train.user[0]), int(dataset.train.item[0])
    with pytest.raises(LeakageError, match="target"):
        index.take(index.row_of(u, i), target_user=u, target_item=i)
    t = dataset.test
    with pytest.raises(LeakageError):
        index.guard.check(Evidence(int(t.user[0]), int(t.item[0]), int(t.label[0])), -1, -1)
    # An environment built on the leaky pool raises at retrieval time instead of prompting.
    env = tiny_env(dataset, split="test")
    env.index = bad
    env._used = np.zeros(len(bad), dtype=bool)
    env.reset(seed=0)
    with pytest.raises(LeakageError):
        env.step(env.action_space.sample())


@pytest.mark.parametrize("action_mode,query_match", MODES)
def test_no_prompt_ever_holds_target_or_heldout_evidence(dataset, action_mode, query_match):
    seen: list[Prompt] = []

    class Recording(ScriptedScorer):
        def score_details(self, prompts):
            seen.extend(prompts)
            return super().score_details(prompts)

    env = tiny_env(dataset, action_mode=action_mode, query_match=query_match, scorer=Recording())
    for seed in range(20):
        rollout(env, seed, actions_seed=seed)
    heldout = set(dataset.heldout_keys.tolist())
    assert sum(len(p.evidence) for p in seen) > 50
    for p in seen:
        for ev in p.evidence:
            assert ev.user * dataset.n_items + ev.item not in heldout
            assert (ev.user, ev.item) != (p.user, p.item)


def test_vector_env_scores_all_episodes_in_one_call_and_matches_single_envs(dataset):
    scorer = CountingScorer()
    cfg, res = env_config(), resources(dataset, scorer=scorer)
    vec = make_batched_vec_env(cfg, n_envs=4, seed=3, resources=res)
    assert isinstance(vec.venv, BatchedRetrievalVecEnv)
    obs = vec.reset()
    assert scorer.batch_sizes == [4]
    singles = [make_env(cfg, resources=res) for _ in range(4)]
    single_obs = np.stack([e.reset(seed=3 + j)[0] for j, e in enumerate(singles)])
    np.testing.assert_array_equal(obs, single_obs)
    rng = np.random.default_rng(0)
    for _ in range(12):
        actions = rng.uniform(-1, 1, size=(4, 8)).astype(np.float32)
        scorer.batch_sizes.clear()
        obs, rewards, dones, infos = vec.step(actions)
        assert len(scorer.batch_sizes) == 1 + bool(dones.any())  # one call for the steps (+ one for resets)
        assert scorer.batch_sizes[0] <= 4
        for j, env in enumerate(singles):
            o, r, te, tr, _ = env.step(actions[j])
            assert r == pytest.approx(rewards[j])
            assert dones[j] == (te or tr)
            if dones[j]:
                assert "episode" in infos[j]  # VecMonitor's episode statistics
                env.reset()  # autoreset draws from the env's own generator, as the vector does
                np.testing.assert_array_equal(obs[j], env._observation())
            else:
                np.testing.assert_array_equal(obs[j], o)


def test_episodes_are_deterministic_under_a_seed(dataset):
    a, b = tiny_env(dataset), tiny_env(dataset)
    for seed in (0, 5):
        ra, rb = rollout(a, seed), rollout(b, seed)
        assert ra[0] == rb[0] and ra[1] == rb[1]
        assert [i["evidence"] for i in ra[2]] == [i["evidence"] for i in rb[2]]


def test_default_prompt_builder_puts_one_segment_per_evidence(dataset):
    env = tiny_env(dataset, prompt_builder=None, split="test")  # coral.llm.prompt.PromptBuilder
    prompts: list[Prompt] = []
    env.scorer = type(
        "Rec",
        (ScriptedScorer,),
        {"score_details": lambda self, ps: (prompts.extend(ps), ScriptedScorer.score_details(self, ps))[1]},
    )()
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    assert [len(p.evidence) for p in prompts] == [0, 1, 2, 3]
    assert len(prompts[3].segments) == len(prompts[0].segments) + 3
    assert prompts[2].segments[:-1] == prompts[3].segments[:-2]  # earlier segments unchanged: KV reuse


def test_scripted_scorer_is_deterministic_and_rises_with_liked_evidence():
    s = ScriptedScorer.from_spec("scripted:weight=0.5,noise=0.2,seed=3")
    assert s.config == ScriptedConfig(bias=0.0, weight=0.5, noise=0.2, seed=3)
    build = MetadataPromptBuilder().build
    liked = [Evidence(1, 2, 1), Evidence(3, 4, 1)]
    p = s.score([build(7, 9, ()), build(7, 9, liked[:1]), build(7, 9, liked), build(7, 9, [Evidence(1, 2, 0)])])
    assert p[0] < p[1] < p[2] and p[3] < p[0]
    np.testing.assert_array_equal(
        p, s.score([build(7, 9, ()), build(7, 9, liked[:1]), build(7, 9, liked), build(7, 9, [Evidence(1, 2, 0)])])
    )
    assert s.score([build(7, 9, ())])[0] != s.score([build(8, 9, ())])[0]  # a per-target offset
    with pytest.raises(CoralError):
        ScriptedScorer.from_spec("scripted:temperature=2")


def test_sb3_make_vec_env_with_registered_id_matches_batched_vec_env(dataset):
    from stable_baselines3.common.env_util import make_vec_env

    kwargs = {"config": env_config(), "resources": resources(dataset)}
    plain = make_vec_env(ENV_ID, n_envs=2, env_kwargs=kwargs, seed=0)
    batched = make_vec_env(make_env, n_envs=2, env_kwargs=kwargs, seed=0, vec_env_cls=BatchedRetrievalVecEnv)
    np.testing.assert_array_equal(plain.reset(), batched.reset())
    actions = np.random.default_rng(1).uniform(-1, 1, size=(15, 2, 8)).astype(np.float32)
    for a in actions:
        o1, r1, d1, _ = plain.step(a)
        o2, r2, d2, _ = batched.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_allclose(r1, r2)
        np.testing.assert_array_equal(d1, d2)


def test_training_episodes_come_from_the_fold_that_warm_start_and_alignment_never_saw(dataset):
    from coral.data.folds import fold_interactions, warm_start_dataset

    def pairs(rows) -> set[tuple[int, int]]:
        return {(int(u), int(i)) for u, i in zip(rows.user, rows.item, strict=False)}

    episodes, align = pairs(fold_interactions(dataset, "episodes")), pairs(fold_interactions(dataset, "align"))
    env = tiny_env(dataset, split="train")
    targets = set()
    for seed in range(40):
        env.reset(seed=seed)
        targets.add((env.user, env.item))
    assert len(targets) > 3 and targets <= episodes  # training targets: the episodes fold only
    fitted = pairs(warm_start_dataset(dataset).train)  # what the CF warm start is fitted on
    assert not fitted & episodes and not fitted & align and not align & episodes
