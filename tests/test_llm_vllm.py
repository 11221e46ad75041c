"""The vLLM backend without a GPU: the request it builds and its readout, against tests/vllm_double.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from llm_fixtures import embedded_tokenizer, pseudo_p, tiny_llama
from vllm_double import SamplingParams, make_fake_vllm

from coral.errors import CoralError
from coral.llm import make_scorer
from coral.llm.base import Prompt
from coral.llm.labels import resolve_label_tokens

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _prompts() -> list[Prompt]:
    """Chat-format prompts that share their leading segments, as a retrieval episode's steps do."""
    head = "<|im_start|>system\nYou predict ratings.<|im_end|>\n<|im_start|>user\nUser 3 rated:\n"
    evidence = [f"- Gift card {k} in a red box: liked\n" for k in range(3)]
    tail = "Will user 3 like the blue box? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
    return [Prompt((head, *evidence[:n], tail)) for n in range(4)] + [Prompt(("Answer:",))]


def _labels():
    return resolve_label_tokens(embedded_tokenizer())


def _label_logits(p_of_ids, *, competitors: int = 0):
    """Logits where P(Yes variants) : P(No variants) = p : 1 - p, split unevenly across each label's
    two variants; with ``competitors`` > 0, that many other tokens rank above every label token."""
    tok, labels = embedded_tokenizer(), _labels()
    vocab = len(tok)

    def logits(ids: list[int]) -> np.ndarray:
        x = np.random.default_rng(len(ids)).normal(0.0, 1.0, vocab)  # the rest of the vocabulary
        p = p_of_ids(ids)
        (y0, y1), (n0, n1) = labels.yes_ids, labels.no_ids
        x[[y0, y1, n0, n1]] = np.log([0.7 * p, 0.3 * p, 0.6 * (1 - p), 0.4 * (1 - p)]) + (
            8.0 if not competitors else -2.0
        )
        if competitors:
            others = [t for t in range(vocab) if t not in (y0, y1, n0, n1)][:competitors]
            x[others] = 6.0
        return x

    return logits


def _true_p(logits_fn, ids: list[int]) -> float:
    """The exact restricted softmax over the label tokens (what the hf backend computes)."""
    x, labels = logits_fn(ids), _labels()
    yes, no = np.logaddexp.reduce(x[list(labels.yes_ids)]), np.logaddexp.reduce(x[list(labels.no_ids)])
    return float(1.0 / (1.0 + np.exp(no - yes)))


def _install(monkeypatch, logits_fn):
    module = make_fake_vllm(embedded_tokenizer(), logits_fn)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_the_request_is_the_hf_backends_tokens_one_greedy_token_restricted_to_the_labels(monkeypatch):
    from coral.llm.hf import HFScorer
    from coral.llm.vllm_backend import VLLMScorer

    fake = _install(monkeypatch, _label_logits(lambda ids: pseudo_p(str(ids))))
    scorer = VLLMScorer(MODEL, dtype="bfloat16")
    prompts = _prompts()
    scorer.score(prompts)

    assert fake.recorder.llm_options == [
        {"model": MODEL, "enable_prefix_caching": True, "logprobs_mode": "processed_logprobs", "dtype": "bfloat16"}
    ]
    [(sent, params, options)] = fake.recorder.generate_calls
    label_ids = [*_labels().yes_ids, *_labels().no_ids]
    assert (params.max_tokens, params.temperature, params.logprobs) == (1, 0.0, len(label_ids))
    assert sorted(params.allowed_token_ids) == sorted(label_ids) and options == {"use_tqdm": False}
    model, tok = tiny_llama()
    hf = HFScorer(model, tok, model_id="tiny")
    assert [s["prompt_token_ids"] for s in sent] == [hf.token_ids(p) for p in prompts]
    # Each step extends the previous prompt's tokens, so vLLM's prefix cache serves the shared part.
    steps = [s["prompt_token_ids"] for s in sent[:4]]
    tail = len(tok(prompts[0].segments[-1], add_special_tokens=False).input_ids)
    for shorter, longer in zip(steps, steps[1:], strict=False):
        assert len(longer) > len(shorter) and longer[: len(shorter) - tail] == shorter[:-tail]
    assert scorer.stats() == {"llm_calls": 1, "prompts": len(prompts)}
    assert "vllm|" + MODEL + "|bfloat16|" in scorer.fingerprint


def test_p_is_the_exact_label_softmax(monkeypatch):
    from coral.llm.vllm_backend import VLLMScorer

    logits = _label_logits(lambda ids: pseudo_p(str(ids)))
    _install(monkeypatch, logits)
    scorer = VLLMScorer(MODEL)
    prompts = _prompts()
    result = scorer.score_details(prompts)
    expected = [_true_p(logits, scorer.token_ids(p)) for p in prompts]
    np.testing.assert_allclose(result.p_yes, expected, rtol=0, atol=1e-9)
    assert len(set(np.round(expected, 6))) == len(prompts)  # the check is not vacuous
    np.testing.assert_allclose(result.yes_no_mass, 1.0, atol=1e-9)  # restricted: 1 by construction


def test_a_label_outside_the_top_20_still_gets_its_exact_probability(monkeypatch):
    """The bug this backend had: raw top-20 log-probabilities, "No" at rank 41 -> p read as 1.0."""
    from coral.llm.vllm_backend import VLLMScorer

    logits = _label_logits(lambda ids: 0.3, competitors=40)
    fake = _install(monkeypatch, logits)
    scorer = VLLMScorer(MODEL)
    prompt = _prompts()[2]
    ids = scorer.token_ids(prompt)
    raw = make_fake_vllm(embedded_tokenizer(), logits).LLM(MODEL)
    ranks = (
        raw.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, temperature=0.0, logprobs=20))[0]
        .outputs[0]
        .logprobs[0]
    )
    assert not set(ranks) & set(scorer._label_ids)  # no label among the raw top 20
    p = scorer.score([prompt])[0]
    assert p == pytest.approx(_true_p(logits, ids), abs=1e-9) and p == pytest.approx(0.3, abs=1e-9)
    assert fake.recorder.generate_calls[-1][1].allowed_token_ids is not None


def test_an_engine_reporting_raw_logprobs_is_an_error_not_a_wrong_p(monkeypatch):
    from coral.llm.vllm_backend import VLLMScorer

    fake = _install(monkeypatch, _label_logits(lambda ids: 0.3, competitors=40))
    with pytest.raises(CoralError, match="logprobs_mode must be 'processed_logprobs'"):
        VLLMScorer(MODEL, llm_options={"logprobs_mode": "raw_logprobs"})
    scorer = VLLMScorer(MODEL, llm_options={"gpu_memory_utilization": 0.3})
    fake.llms[-1].logprobs_mode = "raw_logprobs"  # an engine that ignored the option
    with pytest.raises(CoralError, match="not restricted to the label tokens"):
        scorer.score(_prompts()[:1])


def test_a_vllm_without_logprobs_mode_is_a_clear_error(monkeypatch):
    import vllm_double

    from coral.llm.vllm_backend import VLLMScorer

    _install(monkeypatch, _label_logits(lambda ids: 0.3))
    monkeypatch.setattr(vllm_double, "LLM_OPTIONS", vllm_double.LLM_OPTIONS - {"logprobs_mode"})
    with pytest.raises(CoralError, match="no logprobs_mode engine argument"):
        VLLMScorer(MODEL)


def test_the_double_is_as_strict_as_vllm():
    tok = embedded_tokenizer()
    vllm = make_fake_vllm(tok, lambda ids: np.zeros(len(tok)))
    with pytest.raises(TypeError):
        vllm.SamplingParams(max_tokens=1, top_logprobs=5)
    with pytest.raises(TypeError):
        vllm.LLM(MODEL, enable_prefix_cache=True)
    llm = vllm.LLM(MODEL)
    ok = {"prompt_token_ids": [1, 2, 3]}
    for prompt, params, error in [
        (ok, vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=21), ValueError),
        (ok, vllm.SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[]), ValueError),
        (ok, vllm.SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[len(tok)]), ValueError),
        ("Answer:", vllm.SamplingParams(max_tokens=1, temperature=0.0), TypeError),
        ({"prompt_token_ids": [1, len(tok)]}, vllm.SamplingParams(max_tokens=1, temperature=0.0), ValueError),
        ({"prompt_token_ids": []}, vllm.SamplingParams(max_tokens=1, temperature=0.0), ValueError),
    ]:
        with pytest.raises(error):
            llm.generate([prompt], params, use_tqdm=False)


def test_make_scorer_builds_it_with_the_layout_as_dtype_and_caches_its_scores(monkeypatch, tmp_path):
    fake = _install(monkeypatch, _label_logits(lambda ids: pseudo_p(str(ids))))
    with pytest.raises(CoralError, match="not int8"):
        make_scorer(f"vllm:{MODEL}", precision="int8", cache=False)
    scorer = make_scorer(f"vllm:{MODEL}", precision="float32", cache=tmp_path / "scores.sqlite")
    assert fake.recorder.llm_options[-1]["dtype"] == "float32"
    prompts = _prompts()
    first = scorer.score_details(prompts)
    again = scorer.score_details(prompts)
    np.testing.assert_array_equal(first.p_yes, again.p_yes)
    assert len(fake.recorder.generate_calls) == 1 and scorer.stats()["cache_hits"] == len(prompts)
    make_scorer(f"vllm:{MODEL}", precision="auto", cache=False)
    assert "dtype" not in fake.recorder.llm_options[-1]
