"""CandidateRetrieval-v0 (candidate features, stop action, piece cost) and the planted problem."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from test_env_fixtures import env_config, resources, tiny_dataset

from coral.envs import (
    CANDIDATE_ENV_ID,
    PLANTED_CANDIDATE_ENV_ID,
    PLANTED_ENV_ID,
    SCRIPTED_CANDIDATE_ENV_ID,
    CollabRetrievalEnv,
    make_env,
)
from coral.envs.candidates import CANDIDATE_FEATURES, CandidateRetrievalEnv
from coral.envs.planted import planted_config, planted_resources
from coral.errors import CoralError


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


def candidate_env(dataset, **keys) -> CandidateRetrievalEnv:
    env = make_env(env_config(action_mode="candidates", observe="candidates", **keys), resources=resources(dataset))
    assert isinstance(env, CandidateRetrievalEnv)
    return env


def check_both(env: gym.Env) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        gym_check_env(env)
        sb3_check_env(env, warn=True)


@pytest.mark.parametrize("stop_action", [False, True])
def test_candidate_env_passes_both_env_checkers(dataset, stop_action):
    env = gym.make(
        CANDIDATE_ENV_ID,
        config=env_config(action_mode="candidates", observe="candidates", stop_action=stop_action),
        resources=resources(dataset),
    )
    check_both(env.unwrapped)
    m = env.unwrapped.config.n_candidates
    assert env.observation_space.shape == (CollabRetrievalEnv.N_SCALARS + len(CANDIDATE_FEATURES) * m,)
    assert env.action_space.n == m + int(stop_action)


@pytest.mark.parametrize("env_id", [PLANTED_ENV_ID, PLANTED_CANDIDATE_ENV_ID])
def test_planted_ids_pass_both_env_checkers(env_id):
    check_both(gym.make(env_id).unwrapped)


def test_scripted_candidate_id_defaults_to_the_scripted_scorer_and_random_tables():
    spec = gym.spec(SCRIPTED_CANDIDATE_ENV_ID)
    assert spec.entry_point.endswith("make_scripted_candidate_env")
    env = gym.make(
        SCRIPTED_CANDIDATE_ENV_ID, config={"embedding_dim": 4}, resources=resources(tiny_dataset())
    ).unwrapped
    assert isinstance(env, CandidateRetrievalEnv)
    assert env.config.scorer.scorer == "scripted" and env.config.warm.warm_start == "none"


def test_candidate_features_describe_each_candidate(dataset):
    env = candidate_env(dataset)
    obs, _ = env.reset(seed=3)
    m = env.config.n_candidates
    table = obs[CollabRetrievalEnv.N_SCALARS :].reshape(m, len(CANDIDATE_FEATURES))
    pool, rows = env.index.pool, env.candidates
    n = len(rows)
    np.testing.assert_array_equal(table[:n, 0], 1.0)  # all available at the start
    np.testing.assert_array_equal(table[:n, 1], np.where(pool.label[rows] == 1, 1.0, -1.0))
    np.testing.assert_array_equal(table[:n, 2], (pool.item[rows] == env.item).astype(float))
    np.testing.assert_array_equal(table[:n, 3], (pool.user[rows] == env.user).astype(float))
    expected = np.sqrt(env.index.distances(env.target_vector)[rows])
    np.testing.assert_allclose(table[:n, 4], expected, rtol=1e-5)
    assert np.all(np.diff(table[:n, 4]) >= -1e-6)  # nearest first
    np.testing.assert_allclose(table[:n, 5], np.arange(n) / m)
    obs, *_ = env.step(2)
    assert obs[CollabRetrievalEnv.N_SCALARS + 2 * len(CANDIDATE_FEATURES)] == 0.0  # candidate 2 used
    assert env.observation_space.contains(obs)


def test_stop_action_ends_the_episode_without_scoring(dataset):
    env = candidate_env(dataset, split="test", stop_action=True)
    env.reset(seed=0)
    scored = env.prompts_scored
    _, r1, terminated, truncated, info = env.step(0)
    assert not (terminated or truncated) and env.prompts_scored == scored + 1 and not info["stopped"]
    _, r2, terminated, truncated, info = env.step(env.stop_index)
    assert terminated and not truncated and info["stopped"] and r2 == 0.0
    assert (
        env.prompts_scored == scored + 1 and len(env.trace) == 2 and len(env.evidence) == 1
    )  # the stop step is no round
    assert env.action_masks()[-1]  # stop is never masked
    with pytest.raises(CoralError, match="after the episode ended"):
        env.step(1)


def test_piece_cost_is_charged_per_piece_added(dataset):
    free, costly = candidate_env(dataset, split="test"), candidate_env(dataset, split="test", piece_cost=0.05)
    for env in (free, costly):
        env.reset(options={"index": 4})
    for k in range(3):
        _, r_free, *_ = free.step(k)
        _, r_cost, *_ = costly.step(k)
        assert r_cost == pytest.approx(r_free - 0.05)
    _, r_free, *_ = free.step(0)  # a used candidate: a no-op step, no piece, no charge
    _, r_cost, *_ = costly.step(0)
    assert r_free == 0.0 and r_cost == 0.0


def test_log_odds_reward_is_the_move_of_the_log_odds_toward_the_label(dataset):
    """reward="log_odds": each step's reward is (2y - 1) * (logit p_t - logit p_{t-1}) from the trace's scores, and
    the return telescopes to the whole episode's move; the same pieces give the abs-error rewards otherwise."""
    plain, log_odds = candidate_env(dataset, split="test"), candidate_env(dataset, split="test", reward="log_odds")
    for index in range(4):
        plain.reset(options={"index": index})
        log_odds.reset(options={"index": index})
        rewards, plain_rewards = [], []
        for k in range(3):
            rewards.append(log_odds.step(k)[1])
            plain_rewards.append(plain.step(k)[1])
        raw = [row["p"] for row in log_odds.trace]
        assert [row["p"] for row in plain.trace] == pytest.approx(raw)  # same pieces, same scores
        p = np.clip(raw, 1e-4, 1 - 1e-4)
        sign = 1.0 if log_odds.label == 1 else -1.0
        logit = np.log(p / (1 - p))
        assert rewards == pytest.approx(list(sign * np.diff(logit)))
        assert sum(rewards) == pytest.approx(sign * (logit[-1] - logit[0]))
        p_plain = np.array([row["p"] for row in plain.trace])
        assert plain_rewards == pytest.approx(list(-np.diff(np.abs(p_plain - plain.label))))


def test_candidate_observation_needs_the_candidates_action_mode(dataset):
    with pytest.raises(CoralError, match="needs action_mode candidates"):
        make_env(env_config(observe="candidates"), resources=resources(dataset))
    with pytest.raises(CoralError, match="stop_action needs observe candidates"):
        env_config(action_mode="candidates", stop_action=True)


def test_planted_greedy_retrieval_is_wrong_by_construction():
    """For most tail targets, most of greedy's K nearest pieces carry the label opposite to the target's,
    while ratings of the target item itself carry the right one."""
    res = planted_resources(0)
    env = make_env(planted_config(action_mode="candidates", observe="candidates", split="valid"), resources=res)
    wrong, right_on_item = [], []
    for j in range(len(env.episodes)):
        env.reset(options={"index": j})
        table = env.candidate_features()
        labels = (table[:, 1] > 0).astype(int)
        wrong.append(np.mean(labels[: env.config.rounds] != env.label))
        on_item = table[:, 2] == 1
        right_on_item.append(np.mean(labels[on_item] == env.label) if on_item.any() else np.nan)
    assert np.mean(np.asarray(wrong) > 0.5) > 0.7, np.mean(wrong)  # greedy's majority is wrong for most targets
    assert np.nanmean(right_on_item) > 0.75  # (5% of labels are flipped, the targets' own among them)
