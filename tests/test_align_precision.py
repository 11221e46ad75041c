"""The alignment's dtype (issue 26): the fast frozen trunk (bitwise in fp32), bf16 trunk and trained
layers, the batched evidence draw, and ``auto`` picking bf16 only by a passing parity record."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llm_fixtures import small_dataset, tiny_llama

from coral.align.config import AlignConfig
from coral.align.precision import (
    ALIGN_TOLERANCE,
    MIN_PAIRS,
    AlignParityRecord,
    default_align_dtype,
    load_align_records,
    resolve_align_dtype,
)
from coral.align.topk import (
    TopKHead,
    TreeBuilder,
    TreeSource,
    compute_trunk,
    nearest_and_random,
    predict,
    train_topk,
    tree_sources,
)
from coral.align.tree import layer_forward
from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.labels import resolve_label_tokens
from coral.llm.precision import numerics
from coral.llm.prompt import PromptBuilder, PromptConfig

torch.set_num_threads(1)

AVX2 = frozenset({"avx2", "fma"})
BF16 = AVX2 | {"avx512f", "avx512_vnni", "avx512_bf16"}


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


@pytest.fixture(scope="module")
def trees(dataset):
    model, tokenizer = tiny_llama()
    model.eval()
    builder = PromptBuilder(dataset, PromptConfig(), tokenizer)
    train = dataset.train
    pieces = [Evidence(int(a), int(b), int(c)) for a, b, c in zip(train.user, train.item, train.label, strict=False)]
    sources = []
    for row in range(6):
        u, i, y = int(dataset.valid.user[row]), int(dataset.valid.item[row]), int(dataset.valid.label[row])
        own = [e for e in pieces if (e.user, e.item) != (u, i)]
        sources.append(
            TreeSource(u, i, y, {"nearest": tuple(own[row : row + 3]), "random": tuple(own[20 + row : 22 + row])})
        )
    built = TreeBuilder(builder, tokenizer)
    return model, tokenizer, [built.tree(s) for s in sources], [s.label for s in sources]


def test_frozen_trunk_is_bitwise_the_layers_own_output_in_fp32(trees):
    """Fused q/k/v and gate/up products, grouped heads and the additive mask change nothing in fp32."""
    model, _, tree_list, labels = trees
    cache = compute_trunk(model, tree_list, labels, depth=2, store=np.float32)
    with torch.inference_mode():
        for tree, hidden in zip(tree_list, cache.hidden, strict=False):
            h = model.model.embed_tokens(torch.tensor([tree.ids]))
            cos_sin = model.model.rotary_emb(h, torch.tensor(tree.positions)[None])
            mask = tree.attention_mask()  # the boolean mask and each layer's own modules: the path before issue 26
            for layer in model.model.layers[:2]:
                h = layer_forward(model, layer, h, mask, cos_sin)
            assert np.array_equal(hidden, h[0].numpy())


def test_bf16_trunk_and_head_stay_close_to_fp32_and_train(trees):
    model, tokenizer, tree_list, labels = trees
    fp32 = compute_trunk(model, tree_list, labels, depth=1, store=np.float32)
    bf16 = compute_trunk(model, tree_list, labels, depth=1, store=np.float32, dtype=torch.bfloat16)
    scale = max(float(np.abs(h).max()) for h in fp32.hidden)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(fp32.hidden, bf16.hidden, strict=False))
    assert 0 < diff < 0.05 * scale  # computed another way, and close
    ids = resolve_label_tokens(tokenizer)
    heads = {
        dtype: TopKHead(model, 1, 1, ids.yes_ids, ids.no_ids, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)
    }
    p = {dtype: predict(head, fp32 if dtype == torch.float32 else bf16) for dtype, head in heads.items()}
    for key in p[torch.float32]:
        assert np.abs(p[torch.float32][key] - p[torch.bfloat16][key]).max() < 0.05
    # The bf16 head trains its fp32 weights, and saves them under the fp32 model's keys.
    before = {k: v.clone() for k, v in heads[torch.bfloat16].state_for_model().items()}
    log = train_topk(heads[torch.bfloat16], bf16, lambda h: 0.0, lr=1e-2, epochs=1, trees_per_step=3, seed=0)
    after = heads[torch.bfloat16].state_for_model()
    assert log.steps == 2 and set(after) == set(heads[torch.float32].state_for_model())
    assert all(v.dtype == torch.float32 for v in after.values()) and any(
        not torch.equal(before[k], after[k]) for k in after
    )


def test_bf16_weights_rounded_once_per_step_train_bitwise_as_once_per_tree(trees):
    """shared_bf16_weights (the step's trees share one bf16 copy of each weight) changes nothing but the cost: the
    trained weights are bitwise those of rounding the weight in every forward pass."""
    from coral.llm.bf16 import Bf16ComputeLinear

    model, tokenizer, tree_list, labels = trees
    bf16 = compute_trunk(model, tree_list, labels, depth=1, store=np.float32, dtype=torch.bfloat16)
    ids = resolve_label_tokens(tokenizer)
    trained = {}
    for share in (False, True):
        head = TopKHead(model, 1, 1, ids.yes_ids, ids.no_ids, dtype=torch.bfloat16)
        train_topk(head, bf16, lambda h: 0.0, lr=1e-2, epochs=2, trees_per_step=3, seed=0, share_bf16_weights=share)
        trained[share] = head.state_for_model()
        assert all(m.weight_bf16 is None for m in head.modules() if isinstance(m, Bf16ComputeLinear))  # released
    assert all(torch.equal(trained[False][k], trained[True][k]) for k in trained[False])


def test_batched_evidence_draw_equals_one_target_at_a_time(dataset):
    from coral.align.topk import evidence_index
    from coral.retrieval import random_embeddings

    index = evidence_index(dataset, random_embeddings(dataset, dim=8, seed=0))
    rows = dataset.valid
    picked = np.arange(len(rows))
    batched = tree_sources(rows, picked, index, 3, 2, seed=0)
    rng = np.random.default_rng([0, 6])
    alone = [
        TreeSource(
            int(rows.user[r]), int(rows.item[r]), int(rows.label[r]),
            nearest_and_random(index, int(rows.user[r]), int(rows.item[r]), 3, 2, rng),
        )
        for r in picked
    ]
    assert batched == alone


def _record(
    flags, low: float, high: float, pairs: int = MIN_PAIRS, method: str = "topk", date: str = "2026-12-05"
) -> AlignParityRecord:
    cell = {"auc_fp32": 0.6, "auc": 0.6 + (low + high) / 2, "delta": (low + high) / 2, "low": low, "high": high}
    return AlignParityRecord(
        dtype="bfloat16", numerics=numerics("bfloat16", flags),
        cpu_class="test", method=method, recipe="test", dataset="movielens_small", pairs=pairs,
        cells={"none": cell, "nearest-5": cell}, speedup=1.8, date=date, command="python test",
    )


def test_auto_dtype_needs_native_bf16_a_passing_record_and_method_topk():
    passing = _record(BF16, -0.006, 0.004)
    assert default_align_dtype("topk", BF16, []) == "float32"  # no record
    assert default_align_dtype("topk", BF16, [passing]) == "bfloat16"
    assert default_align_dtype("topk", AVX2, [passing]) == "float32"  # bf16 emulated there
    assert default_align_dtype("head", BF16, [passing]) == "float32"  # the whole model in bf16: never checked
    assert default_align_dtype("topk", BF16, [_record(BF16, -0.012, 0.002)]) == "float32"  # interval leaves +-0.01
    assert (
        default_align_dtype("topk", BF16, [_record(BF16, -0.002, 0.002, pairs=MIN_PAIRS - 1)]) == "float32"
    )  # too few pairs
    # The latest record decides.
    assert default_align_dtype("topk", BF16, [passing, _record(BF16, -0.02, 0.0, date="2026-12-06")]) == "float32"
    assert ALIGN_TOLERANCE == 0.01


def test_config_resolves_auto_and_refuses_unknown_dtypes(tmp_path):
    config = AlignConfig(method="topk")
    assert config.dtype == "auto" and config.resolved().dtype in ("float32", "bfloat16")
    assert config.resolved().dtype == resolve_align_dtype("auto", "topk")
    assert AlignConfig(method="head").resolved().dtype == "float32"
    assert AlignConfig(method="topk", dtype="float32").resolved().dtype == "float32"
    with pytest.raises(CoralError, match="unknown alignment dtype"):
        resolve_align_dtype("float16", "topk")
    bad = tmp_path / "parity.json"
    bad.write_text('{"records": [], "alignment": [{"dtype": "bfloat16"}]}')
    with pytest.raises(CoralError, match="not a parity record file"):
        load_align_records(bad)


def test_shipped_alignment_records_are_well_formed():
    for r in load_align_records():
        assert r.dtype == "bfloat16" and r.method == "topk" and r.command.startswith("python ") and r.cells
        assert r.passed == (
            r.pairs >= MIN_PAIRS
            and all(
                -ALIGN_TOLERANCE <= c["low"] <= c["delta"] <= c["high"] <= ALIGN_TOLERANCE for c in r.cells.values()
            )
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_frozen_layer_keeps_qwen2_biases(dtype):
    """Qwen2's q/k/v products have biases: the fused trunk adds them (bitwise the layer's own output in fp32)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from coral.align.tree import FrozenLayer, additive_mask

    config = Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    layer = model.model.layers[0]
    with torch.no_grad():
        for linear in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            linear.bias.normal_(0, 1.0)  # HF initialises them to 0, which would hide a dropped bias
    T = 7
    h = torch.randn(1, T, 32)
    mask = additive_mask(torch.tril(torch.ones(T, T, dtype=torch.bool)))
    cos_sin = model.model.rotary_emb(h, torch.arange(T)[None])
    with torch.inference_mode():
        expected = layer_forward(model, layer, h, mask, cos_sin)
        fused = FrozenLayer(layer, dtype)(model, h, mask, cos_sin)
        layer.self_attn.v_proj.bias.zero_()
        unbiased = layer_forward(model, layer, h, mask, cos_sin)
    assert float((unbiased - expected).abs().max()) > 0.05 * float(expected.abs().max())  # the biases matter here
    if dtype == torch.float32:
        assert torch.equal(fused, expected)
    else:
        assert 0 < float((fused - expected).abs().max()) < 0.05 * float(expected.abs().max())


def test_tree_path_takes_llama_and_qwen2_layers_and_refuses_gemma3():
    """Gemma3's extra norms (and its sliding window) are not computed by the tree path: refused, not run wrongly."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM

    from coral.align.tree import supports_trees

    shape = dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8,
    )
    assert supports_trees(tiny_llama()[0])
    assert supports_trees(Qwen2ForCausalLM(Qwen2Config(**shape)))
    assert not supports_trees(Gemma3ForCausalLM(Gemma3TextConfig(**shape)))
