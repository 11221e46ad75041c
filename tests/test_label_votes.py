"""The label-vote heuristics of ``experiments/policy_tuning.py`` (where the label-aware reference's room lies)."""

from __future__ import annotations

import numpy as np
import pytest
from experiment_scripts import load_experiment_script
from test_env_fixtures import DIM, env_config, resources, tiny_dataset

from coral.envs import make_env
from coral.retrieval import random_embeddings


@pytest.fixture(scope="module")
def tuning():
    return load_experiment_script("policy_tuning")


def run_episode(policy, env, index: int) -> list[int]:
    """The labels of the pieces ``policy`` retrieves in one evaluation episode of ``env``."""
    env.reset(options={"index": index})
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(int(policy.act(None, [env])[0]))
        done = terminated or truncated
    return [int(ev.label) for ev in env.evidence]


def candidate_env():
    # Random tables: the fixtures' label tables put only one label among a target's nearest candidates.
    dataset = tiny_dataset()
    cfg = env_config(action_mode="candidates", observe="candidates", split="test", rounds=5, n_candidates=20)
    return make_env(cfg, resources=resources(dataset, embeddings=random_embeddings(dataset, dim=DIM, seed=0)))


def test_label_vote_takes_the_nearest_pieces_of_the_wanted_label(tuning):
    env = candidate_env()
    vote = tuning.LabelVote("reference-label-vote", lambda e: 1.0 if e.label == 1 else -1.0, reads_labels=True)
    assert vote.reads_labels
    for index in range(6):
        labels = run_episode(vote, env, index)
        pool = env.index.pool
        wanted = [row for row in env.candidates if pool.label[row] == env.label][: len(labels)]
        assert wanted
        # Every piece carries the target's label while such candidates last, nearest first.
        assert labels[: len(wanted)] == [env.label] * len(wanted)
        retrieved = [(int(ev.user), int(ev.item)) for ev in env.evidence[: len(wanted)]]
        assert retrieved == [(int(pool.user[r]), int(pool.item[r])) for r in wanted]


@pytest.mark.parametrize("p_like", [0.0, 0.3, 0.6, 1.0])
def test_prior_share_keeps_the_liked_share_of_the_pieces_at_the_prior(tuning, p_like):
    env = candidate_env()
    prior = {(u, i): p_like for u in range(env.dataset.n_users) for i in range(env.dataset.n_items)}
    share = tuning.LabelVote("prior-share", tuning.prior_rules(prior)["prior-share"])
    pool = env.index.pool
    # A target with five candidates of each label, so that every round can take the label the rule asks for.
    index = next(
        j for j in range(len(env.episodes))
        if env.reset(options={"index": j}) and min(np.sum(pool.label[env.candidates] == y) for y in (0, 1)) >= 5
    )
    labels = run_episode(share, env, index)
    assert len(labels) == 5
    for t in range(1, 6):
        assert sum(labels[:t]) == round(t * p_like)
    vote = tuning.LabelVote("prior-vote", tuning.prior_rules(prior)["prior-vote"])
    assert run_episode(vote, env, index) == [1 if p_like >= 0.5 else 0] * 5
