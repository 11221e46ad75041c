"""The transformers backend: label tokens, batching, incremental KV reuse, the embedded model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from llm_fixtures import embedded_tokenizer, evidence_episodes, small_dataset, tiny_llama

from coral.errors import CoralError
from coral.llm.hf import HFScorer, PrefixKVStore, prefix_keys, prefix_length
from coral.llm.labels import resolve_label_tokens
from coral.llm.prompt import PromptBuilder, PromptConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama()


def test_label_tokens_resolve_on_the_embedded_tokenizer():
    tok = embedded_tokenizer()
    labels = resolve_label_tokens(tok)
    assert [tok.decode([t]) for t in labels.yes_ids] == ["Yes", " Yes"]
    assert [tok.decode([t]) for t in labels.no_ids] == ["No", " No"]
    assert labels.yes_ids == (10539, 9230) and labels.no_ids == (5230, 2838)  # the ids the notes measured
    with pytest.raises(CoralError, match="not a single token"):
        resolve_label_tokens(tok, ("Absolutely", "No"))


def test_batch_of_one_equals_batch_of_eight(dataset, tiny):
    model, tok = tiny
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    # Different lengths (0-4 evidence pieces) so the batch is padded.
    prompts = [
        builder.build(u, i, ev[: k % 5]) for k, (u, i, ev) in enumerate(evidence_episodes(dataset, 8, steps=5, seed=1))
    ]
    assert len({len(p.text) for p in prompts}) > 4
    one = np.concatenate(
        [HFScorer(model, tok, model_id="tiny", kv_reuse=False, batch_size=1).score([p]) for p in prompts]
    )
    eight = HFScorer(model, tok, model_id="tiny", kv_reuse=False, batch_size=8).score_details(prompts)
    np.testing.assert_allclose(eight.p_yes, one, atol=1e-4, rtol=0)
    assert one.std() > 1e-3  # the comparison means something: p differs between prompts
    assert np.all((eight.yes_no_mass > 0) & (eight.yes_no_mass <= 1))


def test_incremental_scoring_equals_full_scoring_across_batched_calls(dataset, tiny):
    model, tok = tiny
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    episodes = evidence_episodes(dataset, 6, steps=5, seed=1)
    full = HFScorer(model, tok, model_id="tiny", kv_reuse=False, batch_size=4)
    inc = HFScorer(model, tok, model_id="tiny", kv_reuse=True, batch_size=4)
    for step in range(6):  # one call per step, one prompt per parallel episode, like the env
        prompts = [builder.build(u, i, ev[:step]) for u, i, ev in episodes]
        np.testing.assert_allclose(inc.score(prompts), full.score(prompts), atol=1e-3, rtol=0)
    stats = inc.stats()
    # Step 0 computed whole prompts; each later step only its new evidence segment and the tail.
    expected = 0
    for u, i, ev in episodes:
        expected += len(inc.token_ids(builder.build(u, i)))
        for step in range(1, 6):
            segments = builder.build(u, i, ev[:step]).segments
            expected += sum(len(inc._ids(s)) for s in segments[-2:])
    assert stats["tokens_computed"] == expected
    assert stats["tokens_computed"] < full.stats()["tokens_computed"] / 2 and stats["tokens_reused"] > 0


def test_prefilled_cache_scores_exactly_as_transformers_dynamic_cache(dataset, tiny):
    """The preallocated prefix cache changes where keys/values are written, not their values."""
    model, tok = tiny
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    episodes = evidence_episodes(dataset, 6, steps=3, seed=2)
    fast = HFScorer(model, tok, model_id="tiny", kv_reuse=True, batch_size=4)
    reference = HFScorer(model, tok, model_id="tiny", kv_reuse=True, batch_size=4)
    reference.prefilled_cache = False
    for step in range(4):  # pasts of different lengths in one batch from step 1 on
        prompts = [builder.build(u, i, ev[:step]) for u, i, ev in episodes[: 3 + step]]
        np.testing.assert_array_equal(fast.score(prompts), reference.score(prompts))
    assert fast.stats()["tokens_reused"] > 0 and fast.stats() == reference.stats()


def test_grouped_attention_scores_exactly_as_transformers_sdpa(dataset):
    """coral's attention on grouped key/value heads (no repeat_kv copies) changes no bit of P(Yes)."""
    from coral.llm.attention import NAME

    episodes = evidence_episodes(dataset, 5, steps=3, seed=4)
    scores = {}
    for grouped in (False, True):
        model, tok = tiny_llama()  # 4 query heads, 2 key/value heads; a fresh model: the switch is in place
        builder = PromptBuilder(dataset, PromptConfig(), tok)
        scorer = type("S", (HFScorer,), {"grouped_attention": grouped})(model, tok, model_id="tiny", batch_size=3)
        assert (model.config._attn_implementation == NAME) == grouped
        scores[grouped] = [scorer.score([builder.build(u, i, ev[:step]) for u, i, ev in episodes]) for step in range(4)]
    np.testing.assert_array_equal(np.array(scores[True]), np.array(scores[False]))


def test_a_stored_step_shares_the_chunks_of_the_prefix_it_extends(dataset, tiny):
    """Storing the next step's prefix copies only its new tokens; the earlier ones stay shared."""
    model, tok = tiny
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    (u, i, ev), = evidence_episodes(dataset, 1, steps=3, seed=5)
    scorer = HFScorer(model, tok, model_id="tiny")
    prefixes = []
    for step in range(4):
        prompt = builder.build(u, i, ev[:step])
        scorer.score([prompt])
        prefixes.append(scorer.kv_store.get(prefix_keys(prompt.segments[:-1])[-1]))
    for earlier, later in zip(prefixes[1:], prefixes[2:], strict=False):
        assert len(later) == len(earlier) + 1 and all(a is b for a, b in zip(earlier, later, strict=False))
    assert prefix_length(prefixes[-1]) == len(scorer.token_ids(builder.build(u, i, ev[:3]))) - len(
        scorer._ids(builder.build(u, i, ev[:3]).segments[-1])
    )


def test_prefix_store_is_bounded_lru():
    kv = (
        torch.zeros(1, 2, 1, 6, 4),
        torch.zeros(1, 2, 1, 4, 4),
    )  # 320 bytes: chunks of (layers, keys|values, kv heads, length, head dim)
    store = PrefixKVStore(max_bytes=700)
    store.put("a", kv)
    store.put("b", kv)
    assert store.get("a") is not None  # a is now the most recent
    store.put("c", kv)
    assert "b" not in store and "a" in store and "c" in store and store.bytes == 640


def test_readout_head_and_fingerprint(dataset, tiny):
    model, tok = tiny
    head = torch.nn.Linear(32, 1)
    torch.nn.init.constant_(head.weight, 0.0)
    torch.nn.init.constant_(head.bias, 2.0)
    plain = HFScorer(model, tok, model_id="tiny")
    with_head = HFScorer(model, tok, model_id="tiny", head=head, fingerprint_extra="adapter=test")
    prompt = PromptBuilder(dataset, PromptConfig(), tok).build(0, 1)
    np.testing.assert_allclose(with_head.score([prompt]), [1 / (1 + np.exp(-2.0))], atol=1e-6)
    assert plain.fingerprint != with_head.fingerprint and "adapter=test" in with_head.fingerprint
    assert "float32" in plain.fingerprint and "yes=[10539, 9230]" in plain.fingerprint


def test_embedded_model_scores_real_prompts(dataset):
    from coral.llm.model import load_embedded_model, resolve_model_dir

    resolve_model_dir(None)  # the one-time GGUF conversion (about 35 s) is not the load time
    start = time.perf_counter()
    model, tok = load_embedded_model("float32")
    load_seconds = time.perf_counter() - start
    assert load_seconds < 10  # the safetensors copy, not the GGUF parse (~35 s)
    scorer = HFScorer(model, tok, model_id="embedded")
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    (u, i, ev), = evidence_episodes(dataset, 1, steps=2, seed=1)
    prompts = [builder.build(u, i), builder.build(u, i, ev)]
    together = scorer.score_details(prompts)
    alone = np.concatenate([HFScorer(model, tok, model_id="embedded", kv_reuse=False).score([p]) for p in prompts])
    np.testing.assert_allclose(together.p_yes, alone, atol=1e-4)
    assert np.all((together.p_yes > 0.01) & (together.p_yes < 0.99))
    # After the chat template's assistant header the model answers with a label token.
    assert together.yes_no_mass.min() > 0.1
