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


def test_test_mode_confirms_on_coral_runs_test_pairs_and_never_trains_or_mixes_splits(tuning, tmp_path):
    from coral.data import load_dataset
    from coral.pipeline.pairs import SharedPairs

    out = tmp_path / "test"
    args = ["--scorer", "scripted", "--dataset", "gift_cards", "--seed", "0", "--split", "test", "--rows", "40"]
    assert tuning.main([*args, "--prior-votes", "--prior", "dfm", "--only", "prior-share-dfm", "--out", str(out)]) == 0
    # coral run's shared test pairs of the split seed, and only the rows asked for (no fixed-label or told-y votes).
    rows = SharedPairs.draw(load_dataset("gift_cards"), 40, 0, 0).test
    for name in ("greedy", "prior-share-dfm"):
        assert np.array_equal(np.load(out / f"{name}.npz")["rows"], rows)
    assert sorted(p.stem for p in out.glob("*.npz")) == ["greedy", "prior-share-dfm"]
    assert "shared test pairs" in (out / "table.md").read_text()
    # A trained variant must come from validation: test mode never trains.
    with pytest.raises(SystemExit, match="never trains"):
        tuning.main([*args, "--train", 'ppo={"algo": "ppo"}', "--runs", str(tmp_path / "none"), "--out", str(out)])
    # The folder holds test results: validation rows may not be cached beside them.
    with pytest.raises(SystemExit, match="another split"):
        tuning.main([*args[:-4], "--rows", "40", "--out", str(out)])


def test_pooling_refuses_folders_of_different_splits(tmp_path):
    import json

    from coral.io import atomic_write_npz

    pool = load_experiment_script("pool_tuning")
    valid, test = tmp_path / "valid", tmp_path / "test"
    for folder, info in ((valid, {}), (test, {"split": "test"})):  # {}: a result from before --split (validation)
        folder.mkdir()
        atomic_write_npz(
            folder / "greedy.npz", labels=np.array([0, 1]), p=np.array([[0.4, 0.6]]), rows=np.array([3, 7]),
            info=np.asarray(json.dumps(info)),
        )
    with pytest.raises(SystemExit, match="different splits"):
        pool.main([str(valid), str(test)])
