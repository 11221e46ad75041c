"""Base rates (prompt option and counts) and the input twins, against hand computations on a small dataset."""

from __future__ import annotations

import numpy as np
import pytest
from llm_fixtures import small_dataset

from coral.align.twins import InputTwin, twin_name
from coral.baselines.rates import LikeCounts, base_rate_features, percent
from coral.data.folds import fold_interactions
from coral.llm.prompt import PromptBuilder, PromptConfig


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def hand_counts(dataset, user: int, item: int) -> tuple[int, int, int, int]:
    """Loops over the training rows, the pair's own row skipped."""
    ul = ur = il = ir = 0
    for u, i, y in zip(dataset.train.user, dataset.train.item, dataset.train.label, strict=False):
        if (int(u), int(i)) == (user, item):
            continue
        if int(u) == user:
            ur, ul = ur + 1, ul + int(y)
        if int(i) == item:
            ir, il = ir + 1, il + int(y)
    return ul, ur, il, ir


def test_like_counts_leave_the_pairs_own_interaction_out(dataset):
    counts = LikeCounts.of(dataset)
    train_pairs = list(zip(dataset.train.user[:20], dataset.train.item[:20], strict=False))
    valid_pairs = list(zip(dataset.valid.user, dataset.valid.item, strict=False))
    for u, i in train_pairs + valid_pairs:
        assert counts.pair(int(u), int(i)) == hand_counts(dataset, int(u), int(i))
    # A training pair's own label is gone: its counts equal the full counts minus its row.
    u, i, y = int(dataset.train.user[0]), int(dataset.train.item[0]), int(dataset.train.label[0])
    assert (
        counts.pair(u, i)[1] == int((dataset.train.user == u).sum()) - 1
        and counts.pair(u, i)[0] == int(dataset.train.label[dataset.train.user == u].sum()) - y
    )


def test_base_rate_prompt_lines_state_the_hand_counted_shares(dataset):
    builder = PromptBuilder(dataset, PromptConfig(base_rates=True, chat_template=False))
    plain = PromptBuilder(dataset, PromptConfig(chat_template=False))
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    ul, ur, il, ir = hand_counts(dataset, u, i)
    text = builder.build(u, i).text
    assert f"User {u} liked {round(100 * ul / ur)}% of {ur} rated items.\n" in text
    assert f"This item was liked by {round(100 * il / ir)}% of {ir} raters.\n" in text
    assert (
        text.replace(
            f"User {u} liked {round(100 * ul / ur)}% of {ur} rated items.\nThis item was liked by "
            f"{round(100 * il / ir)}% of {ir} raters.\n",
            "",
        )
        == plain.build(u, i).text
    )
    assert builder.version != plain.version and "-rates-" in builder.version
    assert (
        plain.version
        == PromptBuilder(dataset, PromptConfig(chat_template=False, base_rates=False, cf_tokens=0)).version
    )


def test_base_rate_features_are_the_prompts_numbers():
    x = base_rate_features(np.array([[9, 20, 1, 3], [0, 0, 2, 2]]))
    np.testing.assert_allclose(x[0], [0.45, np.log(21), 0, 0.33, np.log(4), 0])
    np.testing.assert_allclose(x[1], [0.5, 0.0, 1, 1.0, np.log(3), 0])  # no ratings: an unknown share and its indicator
    assert percent(1, 3) == 33 and percent(0, 0) == 0


def test_base_rate_twin_equals_a_hand_fitted_logistic_regression(dataset):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from coral.align.topk import evidence_index
    from coral.retrieval import random_embeddings

    index = evidence_index(dataset, random_embeddings(dataset, dim=4, seed=0))
    rows = fold_interactions(dataset, "align")
    twin = InputTwin.fit(dataset, index, rows, ("rates",))
    assert twin.name == "LR(base rates)" and twin.n_fit == len(rows)

    def features(users, items):
        out = []
        for u, i in zip(users, items, strict=False):
            ul, ur, il, ir = hand_counts(dataset, int(u), int(i))
            # the whole percents the prompt writes (Python's round, as "liked 45% of 120")
            out.append(
                [
                    round(100 * ul / ur) / 100 if ur else 0.5, np.log1p(ur), ur == 0,
                    round(100 * il / ir) / 100 if ir else 0.5, np.log1p(ir), ir == 0,
                ]
            )
        return np.array(out, dtype=np.float64)

    x = features(rows.user, rows.item)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), rows.label)
    users, items = dataset.valid.user, dataset.valid.item
    expected = model.predict_proba(scaler.transform(features(users, items)))[:, 1]
    np.testing.assert_allclose(twin.predict(dataset, index, users, items), expected, atol=1e-9)


def test_twin_names():
    assert twin_name(("rates", "cf", "share"), 5) == "LR(base rates + CF embeddings + like-share@5)"


def test_score_twins_fits_each_input_set_once_and_scores_every_split(dataset):
    from coral.align.topk import evidence_index
    from coral.align.twins import inputs_of, score_twins
    from coral.retrieval import random_embeddings

    index = evidence_index(dataset, random_embeddings(dataset, dim=4, seed=0))
    rows = fold_interactions(dataset, "align")
    pairs = {"test": (dataset.test.user, dataset.test.item), "valid": (dataset.valid.user, dataset.valid.item)}
    assert inputs_of(PromptConfig()) == ("share",) and inputs_of(PromptConfig(base_rates=True, cf_tokens=4)) == (
        "rates",
        "cf",
        "share",
    )
    out = score_twins(dataset, index, rows, pairs, [("rates",), ("rates", "cf", "share")])
    assert list(out) == ["LR(base rates)", "LR(base rates + CF embeddings + like-share@5)"]
    single = InputTwin.fit(dataset, index, rows, ("rates",))
    np.testing.assert_allclose(out["LR(base rates)"]["test"], single.predict(dataset, index, *pairs["test"]))
    assert out["LR(base rates + CF embeddings + like-share@5)"]["valid"].shape == (len(dataset.valid),)
