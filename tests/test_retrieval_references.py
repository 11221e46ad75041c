"""Issue 28: learning beats greedy where greedy is wrong, the label-aware reference stays a reference,
retrieval statistics against greedy, validation on tuning rows, training curves, DDPG's start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_env_fixtures import DIM, env_config, tiny_env
from test_policies import dataset, quiet_train, resources  # noqa: F401 (the tiny dataset's module fixtures)

from coral.config import from_dict
from coral.envs.planted import PLANTED_DIM, planted_config, planted_resources
from coral.errors import CoralError
from coral.policies.config import TrainConfig
from coral.policies.evaluate import EvaluationResult, evaluate_policy, mean_return, result_rows, tuning_episodes
from coral.policies.greedy import GreedyPolicy
from coral.policies.label_aware import LabelAwarePolicy, is_reference
from coral.policies.random_policy import RandomPolicy
from coral.policies.run_dir import load_run_policy


def planted_train_config(out: Path, **keys) -> TrainConfig:
    base = dict(
        dataset="planted", warm_start="none", scorer="scripted", embedding_dim=PLANTED_DIM, out=str(out), n_envs=8,
        checkpoint_every=0, val_every=0, progress=False, threads=1, seed=0,
    )
    return from_dict(TrainConfig, base | keys)


def test_a_policy_trained_on_the_planted_problem_beats_greedy(tmp_path):
    """Greedy's nearest pieces mostly rate the target's twin of the opposite quality; MaskablePPO
    with candidate features learns to take ratings of the target item instead."""
    res = planted_resources(0)
    config = planted_train_config(tmp_path / "planted", algo="maskable_ppo", observe="candidates", timesteps=4096)
    quiet_train(config, res)
    config, policy = load_run_policy(config.out)
    assert config.model_name == "coral-maskable-ppo-features-none"
    rows = tuning_episodes(res.dataset, 0)
    learned = evaluate_policy(policy, config.env_config("valid"), res, split="valid", episodes=rows, progress=False)
    greedy = evaluate_policy(GreedyPolicy(), planted_config(), res, split="valid", episodes=rows, progress=False)
    assert mean_return(greedy) < 0 < mean_return(learned) - 0.2, (mean_return(greedy), mean_return(learned))
    from coral.metrics import binary_metrics

    assert (
        binary_metrics(learned.labels, learned.p[-1], n_boot=0)["auc"]
        > binary_metrics(greedy.labels, greedy.p[-1], n_boot=0)["auc"] + 0.3
    )


def test_label_aware_reference_is_evaluation_only(dataset, resources):
    policy = LabelAwarePolicy(n_nearest=5, n_random=5)
    train_env = tiny_env(dataset, split="train")
    obs, _ = train_env.reset(seed=0)
    with pytest.raises(CoralError, match="evaluation only"):
        policy.act(obs[None], [train_env])
    # No algorithm of coral train is a fixed policy, and the reference is no algorithm.
    with pytest.raises(CoralError, match="algo must be one of"):
        from_dict(TrainConfig, {"algo": "label-aware"})
    result = evaluate_policy(policy, env_config(), resources, split="test", rounds=2, limit=12, progress=False)
    assert result.label_aware and policy.prompts_scored > 0
    with pytest.raises(CoralError, match="must be named reference-"):
        result_rows(result, None, dataset="tiny", model="coral-label-aware", seed=0, config={}, n_boot=0)
    rows = result_rows(result, None, dataset="tiny", model="reference-label-aware-none", seed=0, config={}, n_boot=0)
    assert is_reference(rows[0]["model"])
    # It reads the label: its evidence moves P(Yes) towards y at every round it adds a piece.
    errors = np.abs(result.p - result.labels)
    assert np.all(np.diff(errors, axis=0) <= 1e-12)


def test_label_aware_rows_never_enter_the_claims(dataset, resources):
    """The claims compare coral-... methods: a reference row with the best AUC of all is not taken."""
    from coral.pipeline.compare import RunScores
    from coral.pipeline.pairs import SharedPairs
    from coral.pipeline.scores import MethodScores, SplitScores

    rng = np.random.default_rng(0)
    y_test, y_valid = rng.integers(0, 2, 40), rng.integers(0, 2, 30)
    test_rows, valid_rows = np.arange(40), np.arange(30)

    def scores(name: str, quality: float) -> MethodScores:
        def split(y, rows):
            p = np.clip(0.5 + quality * (y - 0.5) + 0.2 * rng.standard_normal((3, len(y))), 0, 1)
            return SplitScores(rows, y, p)

        return MethodScores(name, 0, split(y_test, test_rows), split(y_valid, valid_rows), {})

    methods = [
        scores("llm-only@x", 0.0), scores("coral-random@x", 0.05), scores("coral-greedy@x", 0.3),
        scores("coral-ppo-dfm@x", 0.2), scores("reference-label-aware-dfm@x", 0.9),
    ]
    pairs = {0: SharedPairs(test=test_rows, valid=valid_rows, seed=0)}
    assert RunScores(methods, pairs, n_boot=0).claims_method() == "coral-ppo-dfm@x"
    without_policy = [m for m in methods if m.model != "coral-ppo-dfm@x"]
    assert RunScores(without_policy, pairs, n_boot=0).claims_method() is None  # never the reference


def test_retrieval_statistics_against_greedy(dataset, resources):
    cfg = env_config()
    greedy = evaluate_policy(
        GreedyPolicy(), cfg, resources, split="test", limit=12, progress=False
    ).retrieval_statistics()
    assert greedy == {"greedy_jaccard": 1.0, "greedy_first_share": 1.0, "mean_abs_action": 0.0, "mean_pieces": 5.0}
    random = evaluate_policy(
        RandomPolicy(0), cfg, resources, split="test", limit=12, progress=False
    ).retrieval_statistics()
    assert random["greedy_jaccard"] < 0.5 and random["mean_abs_action"] > 0.05 and random["mean_pieces"] == 5.0
    candidates = evaluate_policy(
        GreedyPolicy(), env_config(action_mode="candidates"), resources, split="test", limit=12, progress=False
    )
    stats = candidates.retrieval_statistics()
    assert stats["greedy_jaccard"] == 1.0 and np.isnan(stats["mean_abs_action"])  # no query actions to measure


def test_retrieval_statistics_of_a_stopping_policy() -> None:
    def record(pieces, greedy):
        rounds = [{"t": 0, "p": 0.5}] + [
            {"t": k + 1, "user_index": u, "item_index": i, "label": 1, "p": 0.5} for k, (u, i) in enumerate(pieces)
        ]
        return {"rounds": rounds, "greedy": [list(g) for g in greedy]}

    records = [
        record([(1, 2)], [(1, 2), (3, 4)]),
        record([(5, 6), (1, 2), (7, 8)], [(1, 2), (3, 4)]),
        record([], [(1, 2), (3, 4)]),
    ]
    stats = EvaluationResult("valid", np.array([1, 0, 1]), np.zeros((4, 3)), records, 0, 0.0).retrieval_statistics()
    assert stats["greedy_jaccard"] == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)
    assert stats["greedy_first_share"] == pytest.approx(1 / 3) and stats["mean_pieces"] == pytest.approx(4 / 3)
    assert np.isnan(stats["mean_abs_action"])


def test_validation_on_tuning_rows_beside_greedy_and_the_training_curves(tmp_path, resources):
    from coral.policies.curves import plot_training_curves
    from coral.policies.validation import read_validation

    runs = []
    for seed in (0, 1):
        config = from_dict(
            TrainConfig,
            dict(
                dataset="tiny", warm_start="none", scorer="scripted", out=str(tmp_path / f"run{seed}"),
                embedding_dim=DIM, n_envs=4, n_steps=16, batch_size=32, checkpoint_every=0, val_every=64, val_size=8,
                progress=False, threads=1, algo="ppo", timesteps=128, seed=seed,
            ),
        )
        quiet_train(config, resources)
        points = read_validation(Path(config.out) / "validation.csv")
        assert [p["timesteps"] for p in points] == [0, 64, 128]  # the untrained policy first
        assert len({p["greedy_return"] for p in points}) == 1 and all(p["n"] == 8 for p in points)
        runs.append(Path(config.out))
    rows = tuning_episodes(resources.dataset, 8)
    assert set(rows) <= set(
        __import__("coral.data.folds", fromlist=["validation_roles"]).validation_roles(resources.dataset).tuning
    )
    png = tmp_path / "training_curves.png"
    plot_training_curves({"PPO": runs}, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ddpg_starts_at_the_zero_action(tmp_path, resources):
    from coral.envs.vector import make_batched_vec_env
    from coral.policies.sb3 import build_model

    vec = make_batched_vec_env(env_config(), n_envs=2, seed=0, resources=resources)
    model = build_model("ddpg", vec, seed=0, learning_rate=None, n_steps=8, batch_size=16)
    obs = vec.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert np.abs(actions).max() < 0.05  # greedy retrieval around the target, as PPO's start


def test_candidate_features_need_maskable_ppo():
    with pytest.raises(CoralError, match="observe candidates needs algo maskable_ppo"):
        from_dict(TrainConfig, {"algo": "ppo", "observe": "candidates"})


def test_cli_evaluates_the_label_aware_reference_on_tuning_rows(tmp_path, monkeypatch, dataset):
    import csv
    import io as text_io
    from contextlib import redirect_stdout

    from test_env_fixtures import write_dataset_csv

    from coral.cli import main

    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    data = write_dataset_csv(dataset, tmp_path / "data")
    args = [
        "evaluate", "--policy", "label-aware", "--dataset", str(data), "--scorer", "scripted", "--warm-start", "none",
        "--embedding-dim", "8", "--split", "valid", "--rows", "tuning", "--limit", "8", "--label-aware-nearest", "3",
        "--label-aware-random", "2", "--n-boot", "0", "--out", str(tmp_path / "ref"),
    ]
    printed = text_io.StringIO()
    with redirect_stdout(printed):
        assert main(args) == 0
    with open(tmp_path / "ref" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["model"] == "reference-label-aware-none" and rows[0]["split"] == "valid" and rows[0]["n_test"] == "8"
    assert "overlap with greedy retrieval" in printed.getvalue()
    assert (
        main(["evaluate", "--policy", "greedy", "--dataset", str(data), "--rows", "tuning"]) == 2
    )  # tuning rows are validation rows
