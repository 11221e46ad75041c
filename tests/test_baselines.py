"""CTR baselines: planted signal is learned, noise is not, seeds reproduce, exports round-trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from coral.baselines import (
    MODELS,
    BaselineConfig,
    evaluate_baseline,
    load_embeddings,
    save_embeddings,
    train_baseline,
    warm_start_embeddings,
)
from coral.baselines.config import MODEL_NAMES
from coral.baselines.models import ips_weights
from coral.baselines.runner import run_baselines
from coral.data.dataset import DataConfig, RawData, build_dataset
from coral.errors import CoralError
from coral.results import COLUMNS, read_rows

#: Small and quick: a few epochs of d=16 models on ~6k rows take well under a second each.
FAST = BaselineConfig(embedding_dim=16, hidden_units=(32,), epochs=12, patience=3, batch_size=256, threads=1)


def planted_dataset(
    shuffle_labels: bool = False, seed: int = 0, noise: float = 0.05, with_features: bool = False, split_seed: int = 0
):
    """Users and items in two hidden groups; a user likes an item of its own group (``noise`` flipped).

    Item popularity is skewed so that head and tail items exist. With ``shuffle_labels`` the
    ratings are permuted over all rows, which destroys every user/item signal.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, per_user = 300, 120, 25
    user_group, item_group = rng.integers(0, 2, n_users), rng.integers(0, 2, n_items)
    popularity = 0.5 * rng.dirichlet(np.full(n_items, 0.3)) + 0.5 / n_items
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False, p=popularity) for _ in range(n_users)])
    like = (user_group[users] == item_group[items]) ^ (rng.random(len(users)) < noise)
    ratings = np.where(like, 5.0, 1.0)
    if shuffle_labels:
        ratings = rng.permutation(ratings)
    # A side feature unrelated to the labels, to exercise the extra fields.
    meta = {f"i{i}": {"brand": f"b{i % 7}"} for i in range(n_items) if i % 5} if with_features else {}
    raw = RawData(
        users=np.char.add("u", users.astype(str)), items=np.char.add("i", items.astype(str)), ratings=ratings,
        timestamps=np.arange(len(users)), item_text={f"i{i}": f"item number {i}" for i in range(n_items)},
        item_meta=meta,
    )
    return build_dataset(
        raw, DataConfig(k_core=2, split_seed=split_seed), name="planted-shuffled" if shuffle_labels else "planted"
    )


@pytest.fixture(scope="module")
def planted():
    return planted_dataset()


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def test_cli_model_names_match_the_registry():
    assert tuple(MODELS) == MODEL_NAMES


@pytest.mark.parametrize("model", list(MODELS))
def test_planted_signal_is_learned(planted, model):
    trained = train_baseline(planted, dataclasses.replace(FAST, model=model))
    metrics = evaluate_baseline(trained, planted, n_boot=0)
    assert metrics["auc"] > 0.9, (model, metrics)
    assert trained.best_epoch >= 1 and len(trained.history) <= FAST.epochs
    # Early stopping keeps the epoch with the lowest validation log loss (not the noisier AUC).
    assert trained.history[trained.best_epoch - 1] == min(trained.history)
    assert trained.user_embeddings().shape == (planted.n_users, FAST.embedding_dim)
    assert trained.item_embeddings().shape == (planted.n_items, FAST.embedding_dim)


@pytest.mark.parametrize("model", list(MODELS))
def test_shuffled_labels_give_chance_auc(model):
    noise = planted_dataset(shuffle_labels=True)
    metrics = evaluate_baseline(train_baseline(noise, dataclasses.replace(FAST, model=model)), noise, n_boot=0)
    assert abs(metrics["auc"] - 0.5) < 0.1, (model, metrics)


@pytest.mark.parametrize("model", ["dfm", "cause"])
def test_same_seed_reproduces_and_other_seed_differs(planted, model):
    config = dataclasses.replace(FAST, model=model, epochs=3)
    first, again = train_baseline(planted, config), train_baseline(planted, config)
    other = train_baseline(planted, dataclasses.replace(config, seed=1))
    test = planted.test
    assert evaluate_baseline(first, planted, n_boot=0)["auc"] == evaluate_baseline(again, planted, n_boot=0)["auc"]
    np.testing.assert_array_equal(first.predict(test.user, test.item), again.predict(test.user, test.item))
    assert not np.allclose(first.predict(test.user, test.item), other.predict(test.user, test.item))


def test_metrics_carry_interval_and_both_f1s(planted):
    metrics = evaluate_baseline(
        train_baseline(planted, dataclasses.replace(FAST, model="wdl", epochs=4)), planted, n_boot=200
    )
    assert metrics["auc_ci_low"] <= metrics["auc"] <= metrics["auc_ci_high"]
    assert metrics["n_test"] == len(planted.test)
    assert 0.0 < metrics["f1"] <= 1.0 and 0.0 < metrics["f1_at_05"] <= 1.0 and metrics["logloss"] > 0


def test_side_features_and_head_only():
    data = planted_dataset(with_features=True)
    trained = train_baseline(data, dataclasses.replace(FAST, model="afm", use_side_features=True, epochs=3))
    assert trained.fields.names == ("user", "item", "brand")
    assert trained.predict(data.test.user, data.test.item).shape == (len(data.test),)
    head = train_baseline(data, dataclasses.replace(FAST, model="dfm", head_only=True, epochs=2))
    tail_items = np.flatnonzero(~data.is_head)
    full = train_baseline(data, dataclasses.replace(FAST, model="dfm", epochs=2))
    # Head-only training never touches tail-item rows, so their embeddings keep the seeded initialisation.
    init = train_baseline(data, dataclasses.replace(FAST, model="dfm", epochs=1, lr=1e-12, weight_decay=0.0))
    np.testing.assert_allclose(head.item_embeddings()[tail_items], init.item_embeddings()[tail_items], atol=1e-6)
    assert not np.allclose(full.item_embeddings()[tail_items], init.item_embeddings()[tail_items], atol=1e-6)
    with pytest.raises(CoralError, match="side features"):
        train_baseline(planted_dataset(), dataclasses.replace(FAST, use_side_features=True))


def test_ips_weights_are_inverse_to_popularity_and_clipped():
    items = np.array([0] * 100 + [1] * 20 + [2])
    w = ips_weights(items, 3, power=1.0, clip=0.05)
    assert w.mean() == pytest.approx(1.0)
    assert w[0] < w[100] < w[120]
    assert w[100] / w[0] == pytest.approx(100 / 20)
    assert w[120] / w[0] == pytest.approx(1 / 0.05)  # item 2: propensity 0.01 clipped to 0.05


def test_config_rejects_unknown_model():
    with pytest.raises(CoralError, match="model must be one of dfm, dcn, wdl, afm, ips, cause, got 'xgboost'"):
        BaselineConfig(model="xgboost")


def test_embedding_export_round_trips(planted, tmp_path):
    trained = train_baseline(planted, dataclasses.replace(FAST, model="dcn", epochs=2))
    save_embeddings(tmp_path / "emb", trained, planted)
    loaded = load_embeddings(tmp_path / "emb", planted)
    np.testing.assert_array_equal(loaded.user, trained.user_embeddings())
    np.testing.assert_array_equal(loaded.item, trained.item_embeddings())
    assert loaded.user.dtype == np.float32
    assert loaded.user_ids == planted.user_ids and loaded.item_ids == planted.item_ids
    assert loaded.meta["dataset_fingerprint"] == planted.fingerprint and loaded.meta["config"]["model"] == "dcn"
    with pytest.raises(CoralError, match="id maps"):
        load_embeddings(tmp_path / "emb", dataclasses.replace(planted, item_ids=planted.item_ids[::-1]))
    with pytest.raises(CoralError, match="could leak"):
        load_embeddings(tmp_path / "emb", planted_dataset(split_seed=7))  # same ids, another split
    with pytest.raises(CoralError, match="no embedding export"):
        load_embeddings(tmp_path / "missing")


def test_warm_start_is_cached(planted, tmp_path, monkeypatch):
    first = warm_start_embeddings(planted, BaselineConfig(model="ips", embedding_dim=8))
    import coral.baselines.export as export

    def no_training(*args, **kwargs):
        raise AssertionError("warm start retrained instead of reading its cache")

    monkeypatch.setattr(export, "train_baseline", no_training)
    second = warm_start_embeddings(
        planted, BaselineConfig(model="ips", embedding_dim=8, threads=None)
    )  # threads are not part of the key
    np.testing.assert_array_equal(first.item, second.item)
    assert first.user.shape == (planted.n_users, 8)
    assert list((tmp_path / "cache" / "embeddings").iterdir())


def test_run_baselines_writes_rows_and_resumes(planted, tmp_path):
    template = dataclasses.replace(FAST, epochs=2)
    rows = run_baselines(
        planted, ["dfm", "ips"], [0, 1], tmp_path / "out",
        template, export_embeddings=True, show_progress=False, n_boot=50,
    )
    written = read_rows(tmp_path / "out" / "results.csv")
    assert len(rows) == len(written) == 4
    assert {(r["model"], r["seed"]) for r in written} == {("dfm", "0"), ("dfm", "1"), ("ips", "0"), ("ips", "1")}
    required = {
        "dataset", "model", "seed", "auc", "auc_ci_low", "auc_ci_high", "f1", "f1_at_05", "logloss", "n_test",
        "positive_rate", "train_seconds", "config_hash", "versions",
    }
    assert required <= set(written[0]) and set(COLUMNS) <= set(written[0])
    assert all(float(r["auc"]) > 0.5 for r in written)
    load_embeddings(tmp_path / "out" / "embeddings" / "ips-seed1", planted)
    again = run_baselines(planted, ["dfm"], [0], tmp_path / "out", template, show_progress=False, n_boot=50)
    assert again[0]["train_seconds"] == written[0]["train_seconds"]  # resumed from the CSV, not retrained


def test_cli_writes_results_and_rejects_bad_input(planted, tmp_path, capsys):
    from coral.cli import main

    lines = ["user,item,rating,timestamp"] + [
        f"{planted.user_ids[u]},{planted.item_ids[i]},{r},{t}"
        for split in (planted.train, planted.valid, planted.test)
        for u, i, r, t in zip(split.user, split.item, split.rating, split.timestamp, strict=False)
    ]
    data_dir = tmp_path / "csvdata"
    data_dir.mkdir()
    (data_dir / "interactions.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "cli-out"
    argv = [
        "baselines", "--dataset", str(data_dir), "--k-core", "2", "--models", "wdl,cause", "--seeds", "3",
        "--embedding-dim", "8", "--epochs", "2", "--threads", "1", "--n-boot", "20", "--no-progress", "--out", str(out),
    ]
    assert main(argv) == 0
    written = read_rows(out / "results.csv")
    assert [(r["model"], r["seed"]) for r in written] == [("wdl", "3"), ("cause", "3")]
    assert "cause" in capsys.readouterr().out
    assert main(["baselines", "--models", "dfm,xgboost", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --models:") and "xgboost" in err and err.count("\n") == 1
    assert main(["baselines", "--dataset", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
