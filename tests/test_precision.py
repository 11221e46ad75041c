"""Weight precisions (fp32 / int8 / bf16): the choice per CPU and parity record, P(Yes) against fp32,
the precision in the fingerprint, and shared-prefix scoring equal to full scoring."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from llm_fixtures import evidence_episodes, small_dataset, tiny_llama

from coral.errors import CoralError
from coral.llm.cache import prompt_key
from coral.llm.hf import HFScorer
from coral.llm.precision import (
    PRECISIONS,
    ParityRecord,
    apply_precision,
    default_precision,
    load_parity_records,
    numerics,
    precision_tag,
    resolve_precision,
)
from coral.llm.prompt import PromptBuilder

torch.set_num_threads(1)

AVX2 = frozenset({"avx2", "fma"})
VNNI = AVX2 | {"avx512f", "avx512_vnni"}
AMX = VNNI | {"avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama()


def _record(layout: str, flags, d_auc: float, speedup: float = 1.5) -> ParityRecord:
    return ParityRecord(
        precision=layout, numerics=numerics(layout, flags),
        cpu_class="test", scorer="test", dataset="movielens_small", pairs=70, prompt_version="v", auc_fp32=0.6,
        auc=0.6 + d_auc, mean_abs_dp=0.01, max_abs_dp=0.05, speedup=speedup, date="2026-11-24", command="test",
    )


def test_default_layout_needs_a_native_kernel_and_a_passing_record_for_its_numerics():
    assert default_precision(AVX2, []) == "float32"  # no record: fp32
    assert default_precision(AVX2, [_record("int8", AVX2, d_auc=0.004)]) == "int8"
    assert default_precision(AVX2, [_record("int8", AVX2, d_auc=-0.006)]) == "float32"  # failed the 0.005 rule
    # A record of 7-bit activations (AVX2) says nothing about VNNI's 8-bit numerics, and vice versa.
    assert default_precision(VNNI, [_record("int8", AVX2, d_auc=0.0)]) == "float32"
    assert default_precision(VNNI, [_record("int8", VNNI, d_auc=0.0)]) == "int8"
    # bf16 passes its record but is emulated without AMX/AVX512-BF16: never the default there.
    bf16 = _record("bfloat16", AMX, d_auc=0.001, speedup=2.0)
    assert default_precision(VNNI, [bf16]) == "float32"
    assert default_precision(AMX, [bf16, _record("int8", AMX, d_auc=0.0, speedup=1.3)]) == "bfloat16"
    assert default_precision(AMX, [_record("bfloat16", AMX, d_auc=0.02)]) == "float32"


def test_unknown_layout_and_a_corrupt_parity_file_are_clear_errors(tmp_path):
    with pytest.raises(CoralError, match="unknown precision 'int4'"):
        resolve_precision("int4")
    assert resolve_precision("bfloat16") == "bfloat16" and resolve_precision("auto") in PRECISIONS
    bad = tmp_path / "parity.json"
    bad.write_text('{"records": [{"layout": "int8"}]}')
    with pytest.raises(CoralError, match="not a parity record file"):
        load_parity_records(bad)


def test_shipped_parity_records_are_well_formed():
    records = load_parity_records()
    for r in records:
        assert (
            r.precision in PRECISIONS
            and r.pairs > 0
            and 0 <= r.mean_abs_dp <= r.max_abs_dp
            and r.command.startswith("python ")
        )
        assert r.passed == (abs(r.auc - r.auc_fp32) <= 0.005)


@pytest.mark.parametrize("layout,tolerance", [("int8", 0.05), ("bfloat16", 0.05)])
def test_layout_scores_close_to_fp32_and_is_in_the_fingerprint(dataset, tiny, layout, tolerance, tmp_path):
    model, tok = tiny
    builder = PromptBuilder(dataset, tokenizer=tok)
    prompts = [
        builder.build(u, i, ev[: k % 4]) for k, (u, i, ev) in enumerate(evidence_episodes(dataset, 8, steps=4, seed=0))
    ]
    ref = HFScorer(model, tok, model_id="tiny", kv_reuse=False)
    converted = apply_precision(copy.deepcopy(model), layout)
    other = HFScorer(converted, tok, model_id="tiny", kv_reuse=False)
    p_ref, p = ref.score(prompts), other.score(prompts)
    assert p_ref.std() > 1e-3
    dp = np.abs(p - p_ref)
    assert dp.max() <= tolerance and dp.max() > 0  # close, and really computed another way
    # The layout is part of the fingerprint, so of every score-cache key and result row.
    assert precision_tag(converted).startswith(layout[:4]) and other.precision == precision_tag(converted)
    assert other.fingerprint != ref.fingerprint and f"|{other.precision}|" in other.fingerprint
    assert prompt_key(other.fingerprint, prompts[0]) != prompt_key(ref.fingerprint, prompts[0])


def test_int8_scores_do_not_depend_on_the_batch(dataset, tiny):
    # torch's dynamic quantisation shares one activation scale per batch; coral's int8 layer must not.
    model, tok = tiny
    builder = PromptBuilder(dataset, tokenizer=tok)
    prompts = [
        builder.build(u, i, ev[: k % 4]) for k, (u, i, ev) in enumerate(evidence_episodes(dataset, 8, steps=4, seed=0))
    ]
    int8 = apply_precision(copy.deepcopy(model), "int8")
    alone = np.concatenate(
        [HFScorer(int8, tok, model_id="tiny", kv_reuse=False, batch_size=1).score([p]) for p in prompts]
    )
    batched = HFScorer(int8, tok, model_id="tiny", kv_reuse=False, batch_size=8).score(prompts)
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)


def test_shared_prefix_scoring_equals_full_scoring_across_episodes_and_targets(dataset, tiny):
    """Episodes of the same targets with other evidence, and other targets, read the stored
    instruction/target-block prefixes; P(Yes) equals scoring every prompt whole (fp32, 1e-5)."""
    model, tok = tiny
    builder = PromptBuilder(dataset, tokenizer=tok)
    full = HFScorer(model, tok, model_id="tiny", kv_reuse=False, batch_size=4)
    shared = HFScorer(model, tok, model_id="tiny", kv_reuse=True, batch_size=4)
    first, again = evidence_episodes(dataset, 6, steps=4, seed=0), evidence_episodes(dataset, 6, steps=4, seed=1)
    for episodes in (first, again, again[::-1][:3] + first[:3]):
        for step in range(5):
            prompts = [builder.build(u, i, ev[:step]) for u, i, ev in episodes]
            np.testing.assert_allclose(shared.score(prompts), full.score(prompts), atol=1e-5, rtol=0)
    stats = shared.stats()
    assert stats["tokens_reused"] > 2 * stats["tokens_computed"]
    # The resets of the second round of episodes computed only the answer tail: the target block was stored.
    reset = [builder.build(u, i) for u, i, _ in again]
    before = shared.stats()["tokens_computed"]
    shared.score(reset)
    tail = len(shared._ids(reset[0].segments[-1]))
    assert shared.stats()["tokens_computed"] - before == tail * len(reset)
    # A target never seen before reads the stored instructions and computes the rest.
    new = [builder.build(int(dataset.valid.user[k]), int(dataset.valid.item[k])) for k in range(8, 11)]
    before = shared.stats()["tokens_computed"]
    np.testing.assert_allclose(shared.score(new), full.score(new), atol=1e-5, rtol=0)
    instructions = len(shared.token_ids(new[0])) - sum(len(shared._ids(seg)) for seg in new[0].segments[1:])
    assert shared.stats()["tokens_computed"] - before == sum(
        len(shared.token_ids(p)) for p in new
    ) - instructions * len(new)


@pytest.mark.slow
def test_eligible_layouts_match_their_record_on_the_embedded_model(dataset):
    """Every layout that its shipped record makes eligible (on some CPU) stays within that record's
    largest |dp| on fixed prompts of the embedded model."""
    from coral.llm.model import load_embedded_model
    from coral.llm.precision import cpu_flags, record_for, supported

    eligible = [r for r in load_parity_records() if r.passed and r.numerics == numerics(r.precision, cpu_flags())]
    if not eligible:
        pytest.skip("no shipped parity record passes for this CPU's numerics: every CPU like this one scores in fp32")
    model, tok = load_embedded_model("float32")
    builder = PromptBuilder(dataset, tokenizer=tok)
    prompts = [
        builder.build(u, i, ev[: k % 4]) for k, (u, i, ev) in enumerate(evidence_episodes(dataset, 8, steps=4, seed=0))
    ]
    p_ref = HFScorer(model, tok, model_id="embedded", kv_reuse=False).score(prompts)
    for record in eligible:
        assert record_for(record.precision, cpu_flags(), eligible) is not None
        if not supported(record.precision):
            continue
        other, _ = load_embedded_model(record.precision)
        p = HFScorer(other, tok, model_id="embedded", kv_reuse=False).score(prompts)
        assert np.abs(p - p_ref).max() <= record.max_abs_dp, record.precision


def test_pipeline_stage_identity_carries_the_resolved_layout(tmp_path):
    from coral.pipeline.config import RunConfig
    from coral.pipeline.run import MainJob

    job = MainJob(RunConfig(), tmp_path, log=lambda _: None)
    assert job.scorer_config("hf").precision == default_precision()
    assert job.scorer_config("aligned:/x").precision == default_precision()
    assert job.scorer_config("scripted").precision is None
    pinned = MainJob(
        dataclasses.replace(RunConfig(), scorer=dataclasses.replace(RunConfig().scorer, precision="int8")),
        tmp_path,
        log=lambda _: None,
    )
    assert pinned.scorer_config("hf").precision == "int8"
    json.dumps(dataclasses.asdict(pinned.scorer_config("hf")))
