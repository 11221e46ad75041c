"""The validation split's three uses (thresholds, early stopping, tuning) never share a row."""

from __future__ import annotations

import numpy as np
from llm_fixtures import small_dataset

from coral.data.folds import VALIDATION_ROLES, validation_roles
from coral.pipeline.pairs import SharedPairs


def test_roles_are_disjoint_cover_validation_and_keep_both_classes():
    dataset = small_dataset()
    roles = validation_roles(dataset)
    parts = [set(roles.rows(r).tolist()) for r in VALIDATION_ROLES]
    assert all(not (a & b) for k, a in enumerate(parts) for b in parts[k + 1:])
    assert set().union(*parts) == set(range(len(dataset.valid)))
    labels = np.asarray(dataset.valid.label)
    for role in VALIDATION_ROLES:
        assert set(labels[roles.rows(role)].tolist()) == {0, 1}, role
    # the same roles in every process: seeded by the split seed only
    again = validation_roles(small_dataset())
    assert all(np.array_equal(roles.rows(r), again.rows(r)) for r in VALIDATION_ROLES)


def test_shared_validation_pairs_come_from_the_threshold_role_only():
    dataset = small_dataset()
    roles = validation_roles(dataset)
    pairs = SharedPairs.draw(dataset, 20, 10, seed=3)
    assert set(pairs.valid.tolist()) <= set(roles.threshold.tolist())
    whole = SharedPairs.draw(dataset, 20, 0, seed=3)
    assert np.array_equal(whole.valid, roles.threshold)


def test_a_class_of_three_rows_reaches_every_role():
    from coral.data.folds import _cut_each_nonempty

    for n in range(3, 12):
        sizes = [len(part) for part in _cut_each_nonempty(np.arange(n), (0.25, 0.25, 0.5))]
        assert sum(sizes) == n and min(sizes) >= 1, (n, sizes)
    assert [len(p) for p in _cut_each_nonempty(np.arange(2), (0.25, 0.25, 0.5))] == [0, 1, 1]
