"""coral.align: examples never leak held-out interactions, aligned scorers round-trip, resume, diagnostics, CLI.

A tiny randomly initialised llama (2 layers, hidden 32) with the embedded model's real tokenizer
stands in for the LLM, so everything here runs in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from coral.align import AlignConfig  # noqa: E402
from coral.align.examples import AlignExample, EvidenceSampler, check_no_heldout, load_examples  # noqa: E402
from coral.config import from_dict  # noqa: E402
from coral.data import load_dataset  # noqa: E402
from coral.errors import CoralError  # noqa: E402
from coral.evidence import Evidence  # noqa: E402
from coral.retrieval import WarmStartConfig  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("gift_cards")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer llama with random weights and the embedded model's tokenizer, saved as an HF directory."""
    from llm_fixtures import tiny_llama

    model, tokenizer = tiny_llama(seed=0)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def tiny_config(tiny_model: str, **changes) -> AlignConfig:
    base = dict(
        base_model=tiny_model, dtype="float32", n_train=12, grad_accum=4, rounds=2, warm_start="none", n_valid=12,
        lr=2e-2, lora_layers=0, lora_dropout=0.0, threads=1, checkpoint_steps=1,
    )
    base.update(changes)
    return from_dict(AlignConfig, base)


def _keys(users, items, n_items) -> np.ndarray:
    return np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)


# ---- examples ---------------------------------------------------------------------------------
def test_training_examples_never_include_a_validation_or_test_interaction(dataset, tiny_model, tmp_path):
    from coral.align import run_alignment

    config = tiny_config(tiny_model, n_train=64, rounds=5, warm_start="none")
    run_alignment(dataset, config, tmp_path / "run", validate=False, progress=False)
    examples = load_examples(tmp_path / "run" / "examples.jsonl")  # what training actually used
    assert len(examples) == 64
    n_items = dataset.n_items
    heldout = dataset.heldout_keys
    train_keys = dataset.train.keys(n_items)
    targets = _keys([e.user for e in examples], [e.item for e in examples], n_items)
    evidence = [ev for e in examples for ev in e.evidence]
    assert evidence, "some examples must carry evidence"
    ev_keys = _keys([ev.user for ev in evidence], [ev.item for ev in evidence], n_items)
    for keys in (targets, ev_keys):
        assert not np.isin(keys, heldout).any()
        assert np.isin(keys, train_keys).all()
    assert all((ev.user, ev.item) != (e.user, e.item) for e in examples for ev in e.evidence)
    # Labels are the interactions' own, and balancing by sampling makes half of them negatives.
    train_label = dict(zip(train_keys.tolist(), dataset.train.label.tolist(), strict=False))
    assert [e.label for e in examples] == [train_label[k] for k in targets.tolist()]
    assert sum(e.label == 0 for e in examples) == 32
    assert {e.policy for e in examples} >= {"random", "greedy", "none"}


def test_check_no_heldout_refuses_a_leaking_example(dataset):
    valid = Evidence(int(dataset.valid.user[0]), int(dataset.valid.item[0]), int(dataset.valid.label[0]))
    train = Evidence(int(dataset.train.user[0]), int(dataset.train.item[0]), int(dataset.train.label[0]))
    check_no_heldout([AlignExample(train.user, train.item, train.label, (), "none")], dataset)
    with pytest.raises(CoralError, match="validation/test"):
        check_no_heldout([AlignExample(valid.user, valid.item, valid.label, (), "none")], dataset)
    with pytest.raises(CoralError, match="validation/test"):
        check_no_heldout([AlignExample(train.user, train.item, train.label, (valid,), "random")], dataset)
    with pytest.raises(CoralError, match="own target"):
        check_no_heldout([AlignExample(train.user, train.item, train.label, (train,), "random")], dataset)


def test_greedy_evidence_is_the_nearest_observed_interactions(dataset):
    sampler = EvidenceSampler(dataset, WarmStartConfig(warm_start="none"))
    user, item = int(dataset.tail_train.user[0]), int(dataset.tail_train.item[0])
    got = sampler.draw(user, item, 4, "greedy", np.random.default_rng(0))
    index = sampler.index
    dist = index.distances(index.pair_vector(user, item))
    dist[index.row_of(user, item)] = np.inf
    expected = [
        Evidence(int(index.pool.user[r]), int(index.pool.item[r]), int(index.pool.label[r]))
        for r in np.argsort(dist, kind="stable")[:4]
    ]
    assert list(got) == expected


# ---- round trips ------------------------------------------------------------------------------
def _prompts(dataset, tokenizer, n: int = 6):
    from coral.llm.prompt import PromptBuilder

    builder = PromptBuilder(dataset, tokenizer=tokenizer)
    rows = range(n)
    return [
        builder.build(
            int(dataset.valid.user[r]),
            int(dataset.valid.item[r]),
            () if r % 2 else (Evidence(int(dataset.train.user[r]), int(dataset.train.item[r]), 1),),
        )
        for r in rows
    ]


@pytest.mark.parametrize("method", ["lora", "head"])
def test_aligned_scorer_round_trips(dataset, tiny_model, tmp_path, method):
    """Scores of the trained model in memory equal those of the saved result loaded back."""
    from coral.align.artifact import identity, load_aligned_scorer, save_result
    from coral.align.head import fit_head, hidden_features
    from coral.align.lora import attach_lora, train_lora
    from coral.llm import make_scorer
    from coral.llm.hf import HFScorer
    from coral.llm.model import load_model

    config = tiny_config(tiny_model, method=method)
    model, tokenizer = load_model(tiny_model, "float32")
    prompts = _prompts(dataset, tokenizer)
    base = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=False)
    before = base.score(prompts)
    ids = [base.token_ids(p) for p in prompts]
    labels = np.array([1, 0, 1, 0, 1, 0])
    peft_model, head = None, None
    if method == "lora":
        peft_model = attach_lora(model, config)
        train_lora(peft_model, ids, labels, base.labels, config.replace(epochs=3), tmp_path, progress=False)
        in_memory = HFScorer(peft_model, tokenizer, model_id="tiny", kv_reuse=False).score(prompts)
    else:
        head = fit_head(hidden_features(model, ids, progress=False), labels, config.replace(head_c=10.0))
        in_memory = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=False, head=head).score(prompts)
    assert np.abs(in_memory - before).max() > 1e-3, "training must change the scores"
    ident = save_result(
        tmp_path, config, peft_model=peft_model, head=head, dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint, prompt_version=prompts[0].version, summary={},
    )

    loaded = load_aligned_scorer(tmp_path, precision="float32")  # in_memory is fp32; the CPU default may be bf16
    np.testing.assert_allclose(loaded.score(prompts), in_memory, atol=1e-5)
    assert ident in loaded.fingerprint and identity(tmp_path) == ident
    assert loaded.prompt_version == prompts[0].version
    # Through the factory every --scorer option uses, with its cache: the same scores, and the
    # identity is in the fingerprint (so in every cache key).
    via_spec = make_scorer(f"aligned:{tmp_path}", cache=tmp_path / "scores.sqlite", precision="float32")
    assert ident in via_spec.fingerprint
    np.testing.assert_allclose(via_spec.score(prompts), in_memory, atol=1e-5)


def test_identity_changes_with_the_weights(dataset, tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from coral.align import identity, run_alignment

    run_alignment(dataset, tiny_config(tiny_model, method="head"), tmp_path, validate=False, progress=False)
    before = identity(tmp_path)
    state = load_file(str(tmp_path / "head.safetensors"))
    state["linear.bias"] = state["linear.bias"] + 1.0
    save_file(state, str(tmp_path / "head.safetensors"))
    assert identity(tmp_path) != before


def test_lora_training_resumes_where_it_stopped(dataset, tiny_model, tmp_path):
    """An interrupted run continued from its checkpoint ends with the adapter of an uninterrupted one."""
    from coral.align.lora import attach_lora, train_lora
    from coral.llm.hf import HFScorer
    from coral.llm.model import load_model

    config = tiny_config(tiny_model, epochs=2, grad_accum=2, checkpoint_steps=1)
    prompts = _prompts(dataset, load_model(tiny_model, "float32")[1])
    labels = np.array([1, 0, 1, 0, 1, 0])

    def fresh():
        model, tokenizer = load_model(tiny_model, "float32")
        scorer = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=False)
        return attach_lora(model, config), [scorer.token_ids(p) for p in prompts], scorer.labels

    def adapter(model) -> dict:
        return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}

    model, ids, tokens = fresh()
    train_lora(model, ids, labels, tokens, config, tmp_path / "straight", progress=False)
    expected = adapter(model)

    class Stop(Exception):
        pass

    def stop_after_four(row: dict) -> None:
        if row.get("step") == 4:
            raise Stop

    model, ids, tokens = fresh()
    with pytest.raises(Stop):
        train_lora(model, ids, labels, tokens, config, tmp_path / "resumed", progress=False, log=stop_after_four)
    state = json.loads((tmp_path / "resumed" / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 3  # the checkpoint before the interrupted step
    model, ids, tokens = fresh()
    summary = train_lora(model, ids, labels, tokens, config, tmp_path / "resumed", progress=False)
    assert summary["step"] == 6
    assert (tmp_path / "resumed" / "checkpoints" / "epoch-1").is_dir() and (
        tmp_path / "resumed" / "checkpoints" / "epoch-2"
    ).is_dir()
    got = adapter(model)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


# ---- diagnostics --------------------------------------------------------------------------------
def test_diagnostics_measure_how_evidence_moves_p(dataset):
    from coral.align.diagnostics import evidence_diagnostics
    from coral.llm.prompt import PromptBuilder
    from coral.llm.scripted import ScriptedConfig, ScriptedScorer

    builder = PromptBuilder(dataset)
    follows = evidence_diagnostics(
        ScriptedScorer(ScriptedConfig(weight=1.0)), dataset, builder, "valid", rounds=3,
        warm=WarmStartConfig(warm_start="none"), n_pairs=30, n_boot=0, progress=False,
    )
    assert follows["n_pairs"] == 30 and follows["n_negative"] == int((dataset.valid.label == 0).sum())
    assert follows["share_toward_label"] == 1.0 and follows["mean_abs_dp"] > 0.05
    assert follows["mean_dp_liked"] > 0
    deaf = evidence_diagnostics(
        ScriptedScorer(ScriptedConfig(weight=0.0)), dataset, builder, "valid", rounds=3,
        warm=WarmStartConfig(warm_start="none"), n_pairs=30, n_boot=0, progress=False,
    )
    assert deaf["mean_abs_dp"] == 0.0 and deaf["share_toward_label"] == 0.0
    # Same seed, same evidence: the LLM-only scores do not depend on the evidence weight.
    assert deaf["auc_llm_only"] == follows["auc_llm_only"]


# ---- CLI ------------------------------------------------------------------------------------------
def test_cli_align_then_score_with_the_spec(dataset, tiny_model, tmp_path, capsys):
    from coral.cli import main

    out = tmp_path / "aligned"
    common = [
        "--dataset", "gift_cards", "--base-model", tiny_model, "--dtype", "float32", "--warm-start", "none", "--rounds",
        "1", "--threads", "1", "--no-progress", "--out", str(out),
    ]
    assert main(["align", "--method", "head", "--n-train", "8", "--n-valid", "10", *common]) == 0
    printed = capsys.readouterr().out
    assert f"aligned:{out}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_pairs"] == 10 and metrics["n_negative"] == 5
    assert {"auc_llm_only", "mean_abs_dp", "share_toward_label"} <= set(metrics)
    # A second run with another config refuses to mix results in one directory.
    assert main(["align", "--method", "head", "--n-train", "10", *common]) == 2
    assert "another config" in capsys.readouterr().err
    assert (
        main(
            [
                "align-diagnostics", "--scorer", f"aligned:{out}",
                "--rounds", "1", "--n-pairs", "6", "--warm-start", "none", "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 6
