"""Retrieval policies: random/greedy evaluation, PPO learning, DDPG/MaskablePPO, checkpoints and resume, CLI."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from test_env_fixtures import DIM, env_config, tiny_dataset, tiny_env, write_dataset_csv
from test_env_fixtures import resources as tiny_resources

from coral.config import from_dict
from coral.policies.callbacks import latest_checkpoint
from coral.policies.config import TrainConfig
from coral.policies.evaluate import evaluate_policy, result_rows, round_metrics
from coral.policies.greedy import GreedyPolicy
from coral.policies.random_policy import RandomPolicy
from coral.policies.run_dir import load_policy, load_run_policy
from coral.policies.train import train


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


@pytest.fixture(scope="module")
def resources(dataset):
    return tiny_resources(dataset)


def quick_config(out: Path, **keys) -> TrainConfig:
    base = dict(
        dataset="tiny", warm_start="none", scorer="scripted", out=str(out), embedding_dim=DIM, n_envs=4, n_steps=32,
        batch_size=64, checkpoint_every=0, val_every=0, progress=False, threads=1,
    )
    return from_dict(TrainConfig, base | keys)


def quiet_train(config: TrainConfig, resources, resume: bool = False) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        return train(config, resources, resume=resume)


def mean_return(result) -> float:
    """Mean undiscounted episode return |p_0 - y| - |p_K - y| of an evaluation."""
    return float(np.mean(np.abs(result.p[0] - result.labels) - np.abs(result.p[-1] - result.labels)))


def test_evaluate_policy_random_and_greedy(dataset, resources):
    cfg = env_config()
    res = evaluate_policy(RandomPolicy(seed=1), cfg, resources, split="test", batch_size=7)
    n = len(dataset.test)
    assert res.p.shape == (6, n) and res.labels.shape == (n,) and len(res.records) == n
    rec = res.records[0]
    assert [r["t"] for r in rec["rounds"]] == [0, 1, 2, 3, 4, 5]
    assert all(r["label"] in (0, 1) for r in rec["rounds"][1:])
    # records name users and items by the dataset's own ids, with the indices beside them
    assert rec["user"] == dataset.user_ids[rec["user_index"]] and rec["item"] == dataset.item_ids[rec["item_index"]]
    assert all(
        r["user"] == dataset.user_ids[r["user_index"]] and r["item"] == dataset.item_ids[r["item_index"]]
        for r in rec["rounds"][1:]
    )
    # random evidence does not depend on how the evaluation is batched
    again = evaluate_policy(RandomPolicy(seed=1), cfg, resources, split="test", batch_size=16)
    np.testing.assert_array_equal(res.p, again.p)
    other = evaluate_policy(RandomPolicy(seed=2), cfg, resources, split="test")
    assert not np.array_equal(res.p, other.p)
    # greedy retrieves the observed interactions nearest to the target pair, nearest first
    greedy = evaluate_policy(GreedyPolicy(), cfg, resources, split="test", rounds=3, limit=5)
    env = tiny_env(dataset, split="test")
    for rec in greedy.records:
        env.reset(options={"index": rec["episode_index"]})
        expected = env.index.nearest_rows(env.index.pair_vector(rec["user_index"], rec["item_index"]), env.used_rows, 3)
        got = [env.index.row_of(r["user_index"], r["item_index"]) for r in rec["rounds"][1:]]
        assert got == expected.tolist()
    rows = round_metrics(res, other, n_boot=0)
    assert [r["round"] for r in rows] == list(range(6)) and all(0 <= r["auc"] <= 1 for r in rows)
    csv_rows = result_rows(
        res, None, dataset="tiny", model="coral-random", seed=1, config={"policy": "random"}, n_boot=0
    )
    assert [r["round"] for r in csv_rows] == list(range(6)) and csv_rows[0]["model"] == "coral-random"


def test_ppo_learns_to_beat_random_and_acts_on_the_target(tmp_path, dataset, resources):
    # SB3's own step sizes: the tiny tables' query action has 2 x 4 dimensions, not the 2 x 128 that
    # coral train's defaults (lr 1e-4, 4 epochs) are set for.
    config = quick_config(tmp_path / "ppo", algo="ppo", timesteps=1024, seed=0, learning_rate=3e-4, n_epochs=10)
    quiet_train(config, resources)
    _, policy = load_run_policy(config.out)
    assert policy.obs_normalizer is not None  # VecNormalize statistics travel with the policy
    assert json.loads((Path(config.out) / "train_summary.json").read_text())["policy_updates"] == 1024 // (4 * 32)
    cfg = config.env_config("test")
    result = evaluate_policy(policy, cfg, resources, split="test")
    trained = mean_return(result)
    random = mean_return(evaluate_policy(RandomPolicy(0), cfg, resources, split="test"))
    assert trained > random + 0.1, (trained, random)
    # The scripted scorer's reward depends on the target's label, so a policy that learned from it
    # acts on the target: its first query differs between targets and so does its evidence.
    # (The untrained network is no reference here: its zero query lands on the target's nearest
    # neighbours, the greedy policy.)
    envs = [tiny_env(dataset, split="test") for _ in range(len(dataset.test))]
    first = np.stack([env.reset(options={"index": j})[0] for j, env in enumerate(envs)])
    actions = policy.act(first, envs)
    assert float(np.mean(np.std(actions, axis=0))) > 0.05, actions
    assert result.evidence_diversity()["evidence_diversity"] >= 0.9


def test_training_is_deterministic_under_a_seed(tmp_path, resources):
    params = []
    for name in ("a", "b"):
        config = quick_config(tmp_path / name, algo="ppo", timesteps=256, seed=3)
        quiet_train(config, resources)
        _, model = load_policy(config.out)
        params.append(np.concatenate([p.detach().numpy().ravel() for p in model.policy.parameters()]))
    np.testing.assert_array_equal(params[0], params[1])


@pytest.mark.parametrize("algo", ["ppo", "ddpg"])
def test_resume_continues_from_checkpoint_timestep(tmp_path, resources, algo):
    config = quick_config(tmp_path / algo, algo=algo, timesteps=128, checkpoint_every=64)
    quiet_train(config, resources)
    first = latest_checkpoint(tmp_path / algo / "checkpoints")
    assert first["timesteps"] == 128 and first["config"]["algo"] == algo
    if algo == "ddpg":
        assert "replay_buffer" in first
    with pytest.raises(Exception, match="--resume"):
        quiet_train(config, resources)  # refuses to start over a run with checkpoints
    longer = dataclasses.replace(TrainConfig.load(tmp_path / algo / "config.json"), timesteps=256)
    assert longer == dataclasses.replace(config, timesteps=256)  # the saved config reads back whole
    quiet_train(longer, resources, resume=True)
    state = latest_checkpoint(tmp_path / algo / "checkpoints")
    assert state["timesteps"] == 256
    # The observation statistics resume with the model: they keep counting from the first segment.
    from coral.policies.run_dir import load_obs_normalizer

    stats = [
        load_obs_normalizer(tmp_path / algo / "checkpoints" / s["vecnormalize"]).obs_rms.count for s in (first, state)
    ]
    assert stats[1] > stats[0] > 0
    with open(tmp_path / algo / "logs" / "segment1" / "progress.csv") as f:
        steps = [int(float(r["time/total_timesteps"])) for r in csv.DictReader(f) if r.get("time/total_timesteps")]
    assert steps and min(steps) > 128  # counted on from the checkpoint
    # PPO logs after every rollout, so its last row is the last step; DDPG logs at episode ends.
    assert max(steps) == 256 if algo == "ppo" else max(steps) <= 256
    _, model = load_policy(tmp_path / algo)
    assert model.num_timesteps == 256
    if algo == "ddpg":  # the last checkpoint's buffer holds both segments' transitions (per env: 256 / 4)
        model.load_replay_buffer(tmp_path / algo / "checkpoints" / state["replay_buffer"])
        assert model.replay_buffer.size() == 256 // config.n_envs
    summary = json.loads((tmp_path / algo / "train_summary.json").read_text())
    assert summary["timesteps"] == 256 and summary["segments"] == 2


def test_maskable_ppo_trains_on_candidates(tmp_path, dataset, resources):
    config = quick_config(tmp_path / "mppo", algo="maskable_ppo", timesteps=128, n_candidates=8)
    quiet_train(config, resources)
    _, policy = load_run_policy(config.out)
    cfg = config.env_config("test")
    assert cfg.action_mode == "candidates"
    res = evaluate_policy(policy, cfg, resources, split="test", limit=10)
    for rec in res.records:  # masks keep every round on a new candidate
        pairs = [(r["user_index"], r["item_index"]) for r in rec["rounds"][1:]]
        assert len(set(pairs)) == 5


def test_metrics_and_validation_auc_are_logged(tmp_path, resources):
    config = quick_config(tmp_path / "log", algo="ppo", timesteps=256, val_every=128, val_size=20)
    quiet_train(config, resources)
    with open(tmp_path / "log" / "logs" / "segment0" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    for key in (
        "coral/reward", "coral/abs_error", "coral/llm_calls", "coral/val_auc", "rollout/ep_rew_mean", "train/loss",
    ):
        assert any(r.get(key) not in (None, "") for r in rows), key
    # TensorBoard is an optional extra: its event file is written exactly when it is installed.
    events = list((tmp_path / "log" / "logs" / "segment0").glob("events.out.tfevents*"))
    assert bool(events) == (importlib.util.find_spec("tensorboard") is not None)


def test_cli_train_and_evaluate(tmp_path, monkeypatch, dataset):
    from coral.cli import main

    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    data = write_dataset_csv(dataset, tmp_path / "data")
    run = tmp_path / "run"
    args = [
        "train", "--dataset", str(data), "--algo", "ppo", "--warm-start", "none", "--timesteps", "64", "--seed", "1",
        "--out", str(run), "--scorer", "scripted:weight=0.6", "--n-envs", "2", "--embedding-dim", "8", "--val-every",
        "0", "--no-progress",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
        assert main(["evaluate", "--run", str(run), "--split", "test", "--limit", "12", "--n-boot", "0"]) == 0
        assert (
            main(
                [
                    "evaluate", "--policy", "random", "--dataset", str(data), "--scorer", "scripted", "--out",
                    str(tmp_path / "base"),
                    "--limit", "12", "--n-boot", "0",
                ]
            )
            == 0
        )
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["round"] for r in rows] == [str(k) for k in range(6)] and rows[0]["model"] == "coral-ppo-none"
    episodes = [json.loads(line) for line in (run / "eval_test.jsonl").read_text().splitlines()]
    assert len(episodes) == 12 and len(episodes[0]["rounds"]) == 6
    assert {e["user"] for e in episodes} <= set(dataset.user_ids)  # the file's own ids
    # coral explain finds an episode by the dataset's own ids and names the evidence by them too.
    first = episodes[0]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert (
            main(
                ["explain", "--run", str(run), "--dataset", str(data), "--user", first["user"], "--item", first["item"]]
            )
            == 0
        )
    account = text.getvalue()
    assert f"user {first['user']} (index {first['user_index']})" in account
    assert all(f"user {r['user']} " in account for r in first["rounds"][1:] if r.get("label") is not None)
    assert (tmp_path / "base" / "results.csv").is_file()
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2  # a one-line error, exit 2


def test_evidence_diversity_counts_distinct_sequences_and_the_common_first_piece() -> None:
    from coral.policies.evaluate import EvaluationResult

    def record(*pieces):
        rounds = [{"t": 0, "p": 0.5}] + [
            {"t": k + 1, "user_index": u, "item_index": i, "p": 0.5} for k, (u, i) in enumerate(pieces)
        ]
        return {"rounds": rounds}

    records = [record((1, 2), (3, 4)), record((1, 2), (3, 4)), record((1, 2), (5, 6)), record((7, 8), (-1, -1))]
    result = EvaluationResult("test", np.array([1, 0, 1, 0]), np.zeros((3, 4)), records, 0, 0.0)
    figures = result.evidence_diversity()
    assert figures["evidence_diversity"] == 3 / 4  # the failed retrieval (-1) is no piece
    assert figures["top_first_piece_share"] == 3 / 4
