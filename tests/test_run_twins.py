"""coral run's input-twin stage: fitted on exactly the aligned scorer's training targets, rows named by their inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coral.align.config import AlignConfig
from coral.align.topk import evidence_index
from coral.align.twins import C_GRID, InputTwin, twin_input_sets
from coral.config import from_dict
from coral.data.folds import fold_interactions
from coral.io import atomic_write_npz
from coral.llm.aligned import TARGETS_FILE
from coral.llm.prompt import PromptConfig
from coral.pipeline.config import RunConfig
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.run import MainJob
from coral.pipeline.scores import SCORES_FILE, load_scores
from coral.pipeline.stages import run_stage
from coral.retrieval import WarmStartConfig, resolve_embeddings

TINY = {"dataset": "gift_cards", "scorer": "hf", "eval_pairs": 40, "valid_pairs": 30, "n_boot": 0}


def job(tmp_path, prompt: PromptConfig) -> MainJob:
    # Warm start "none" (seeded random tables): no CTR training, the same code path as dfm's tables.
    alignment = AlignConfig(method="topk", warm=WarmStartConfig(warm_start="none"), prompt=prompt)
    return MainJob(
        dataclasses.replace(from_dict(RunConfig, TINY), alignment=alignment), tmp_path / "out", log=lambda msg: None
    )


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    """A job with base rates and soft tokens, its dataset and pairs, and an alignment directory
    whose targets.npz names 40 rows of the align fold (what the align stage writes)."""
    monkeypatch.setenv("CORAL_CACHE_DIR", str(tmp_path / "cache"))
    run = job(tmp_path, PromptConfig(base_rates=True, cf_tokens=4))
    ds = run.dataset("gift_cards")
    pairs = SharedPairs.draw(ds, 40, 30, 0)
    fold = fold_interactions(ds, "align", run.alignment_config(0).warm.folds)
    rng = np.random.default_rng(0)
    # gift_cards is mostly liked: every negative of the fold (8) and 32 positives, so that C can be cross-validated.
    picked = np.concatenate(
        [
            np.flatnonzero(fold.label == 0),
            rng.choice(np.flatnonzero(fold.label == 1), size=40 - int((fold.label == 0).sum()), replace=False),
        ]
    )
    targets = fold.take(np.sort(picked))
    aligned = tmp_path / "aligned"
    aligned.mkdir()
    atomic_write_npz(
        aligned / TARGETS_FILE,
        train_user=targets.user,
        train_item=targets.item,
        train_label=targets.label,
        stop_user=ds.valid.user[:3],
        stop_item=ds.valid.item[:3],
        stop_label=ds.valid.label[:3],
    )
    return run, ds, pairs, fold, targets, aligned


def test_twin_stage_fits_on_exactly_the_alignment_targets(setup, monkeypatch) -> None:
    run, ds, pairs, fold, targets, aligned = setup
    seen: list[set] = []
    fit = InputTwin.fit.__func__

    def spy(cls, dataset, index, rows, *args, **kwargs):
        seen.append(set(zip(rows.user.tolist(), rows.item.tolist(), rows.label.tolist(), strict=False)))
        return fit(cls, dataset, index, rows, *args, **kwargs)

    monkeypatch.setattr(InputTwin, "fit", classmethod(spy))
    stage = run.twin_stage(ds, pairs, aligned, 0)
    directory, skipped = run_stage(stage, run.out, lambda msg: None)
    assert not skipped
    # One twin per input set, each fitted on the 40 targets of targets.npz and nothing else.
    expected = set(zip(targets.user.tolist(), targets.item.tolist(), targets.label.tolist(), strict=False))
    assert len(seen) == 4 and all(rows == expected for rows in seen)
    scores = {m.model: m for m in load_scores(directory / SCORES_FILE)}
    assert list(scores) == ["twin-rates", "twin-cf-none", "twin-rates+cf-none", "twin-rates+cf+share-none"]
    # The same P as a twin fitted by hand on those targets with the alignment's own tables.
    config = run.alignment_config(0)
    index = evidence_index(ds, resolve_embeddings(ds, config.warm, seed=config.seed))
    rounds = run.config.train.env.rounds
    for inputs, model in zip(twin_input_sets(config.prompt), scores, strict=False):
        twin = InputTwin.fit(ds, index, targets, inputs, rounds, c=None)
        assert scores[model].info["config"]["c"] == twin.c and twin.c in C_GRID
        for split, rows in (("test", pairs.test), ("valid", pairs.valid)):
            part = ds.split(split)
            got = getattr(scores[model], split)
            np.testing.assert_array_equal(got.rows, rows)
            np.testing.assert_array_equal(got.labels, part.label[rows])
            np.testing.assert_allclose(got.p[0], twin.predict(ds, index, part.user[rows], part.item[rows]), atol=1e-12)
        assert scores[model].info["config"]["n_fit"] == 40
    # A twin fitted on the whole align fold scores otherwise: the check above can fail.
    whole = InputTwin.fit(ds, index, fold, ("rates", "cf"), rounds, c=None)
    assert not np.allclose(
        scores["twin-rates+cf-none"].test.p[0],
        whole.predict(ds, index, ds.test.user[pairs.test], ds.test.item[pairs.test]),
    )


def test_twin_stage_depends_on_the_alignment_and_is_absent_without_numbers(setup, tmp_path) -> None:
    run, ds, pairs, _, _, aligned = setup
    stage = run.twin_stage(ds, pairs, aligned, 0)
    assert stage.name == "twins-seed0"
    rates_only = job(tmp_path, PromptConfig(base_rates=True)).twin_stage(ds, pairs, aligned, 0)
    assert [i for i in rates_only.config["inputs"]] == [["rates"], ["rates", "share"]]
    assert rates_only.directory(run.out) != stage.directory(run.out)
    assert job(tmp_path, PromptConfig()).twin_stage(ds, pairs, aligned, 0) is None
