"""The CoRAL prompt builder: order, segments for KV reuse, history, leakage guard, version."""

from __future__ import annotations

import pytest
from llm_fixtures import embedded_tokenizer, small_dataset

from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.prompt import (
    COLLAB_HEADER,
    EVIDENCE_HEADER,
    ROLE_PLAY,
    SHORT_SYSTEM,
    SUMMARISE,
    PromptBuilder,
    PromptConfig,
)


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def _evidence(dataset, n: int, skip: tuple[int, int]) -> list[Evidence]:
    out = []
    for u, i, y in zip(dataset.train.user, dataset.train.item, dataset.train.label, strict=False):
        if (int(u), int(i)) != skip:
            out.append(Evidence(int(u), int(i), int(y)))
        if len(out) == n:
            return out
    raise AssertionError("not enough training rows")


INCREMENTAL = PromptConfig(order="incremental", max_history=10)


def test_shared_order_is_the_default_and_short(dataset):
    tok = embedded_tokenizer()
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    others = [x for x in range(dataset.n_users) if x != u]
    items = [x for x in range(dataset.n_items) if x != i]
    ev = [Evidence(others[0], i, 1), Evidence(u, items[0], 0), Evidence(others[1], items[1], 1)]
    prompt = builder.build(u, i, ev)
    # [instructions][target block][one line per piece][tail]
    assert len(prompt.segments) == 2 + len(ev) + 1
    instructions, block, *lines, tail = prompt.segments
    assert instructions == "<|im_start|>system\n" + SHORT_SYSTEM + "<|im_end|>\n<|im_start|>user\n"
    assert block.startswith(f"User {u} liked: ") and f"Would user {u} like" in block
    assert block.endswith(EVIDENCE_HEADER)  # the question comes before the evidence
    # Evidence relative to the target: this item / this user / both named.
    assert lines[0] == f"user {others[0]} liked this item\n"
    assert lines[1] == f'this user disliked "{builder.item_text(items[0])}"\n'
    assert lines[2] == f'user {others[1]} liked "{builder.item_text(items[1])}"\n'
    assert tail == "<|im_end|>\n<|im_start|>assistant\n"
    # The instructions and the target block do not depend on the evidence: shared by every prompt.
    assert builder.build(u, i).segments[:2] == prompt.segments[:2]
    assert builder.build(others[2], i).segments[0] == instructions


def test_titles_are_cut_at_a_word_boundary(dataset):
    builder = PromptBuilder(dataset, PromptConfig(max_title_chars=10), None)
    for item in range(dataset.n_items):
        text = builder.item_text(item)
        full = " ".join(str(dataset.item_text[item]).split())
        assert len(text) <= 10 and full.startswith(text)
        if len(full) > 10 and " " in full[:11]:
            assert full[len(text)] in " ,;:-"


def test_chat_prompt_parts_and_order(dataset):
    tok = embedded_tokenizer()
    builder = PromptBuilder(dataset, INCREMENTAL, tok)
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    ev = _evidence(dataset, 3, (u, i))
    prompt = builder.build(u, i, ev)
    text = prompt.text
    assert text.startswith("<|im_start|>system\n" + ROLE_PLAY)
    assert text.endswith("<|im_start|>assistant\n")
    assert "SmolLM" not in text  # the role-play replaces the template's default system prompt
    # Incremental order: history, target, evidence lines, then summarisation + query last.
    assert (
        text.index(f"User {u} liked")
        < text.index("The target item is")
        < text.index(COLLAB_HEADER)
        < text.index(SUMMARISE)
        < text.index("Would you recommend")
    )
    assert len(prompt.segments) == 1 + len(ev) + 1
    for k, e in enumerate(ev):
        assert f"by user {e.user}." in prompt.segments[1 + k]
        assert ("is liked" if e.label else "is disliked") in prompt.segments[1 + k]
    assert prompt.version == builder.version and prompt.evidence == tuple(ev)
    # The chat template's framing (user message end + assistant header) lives in the tail only.
    assert prompt.segments[-1].endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_no_evidence_means_no_collaborative_block(dataset):
    builder = PromptBuilder(dataset, INCREMENTAL, embedded_tokenizer())
    prompt = builder.build(int(dataset.valid.user[0]), int(dataset.valid.item[0]))
    assert COLLAB_HEADER not in prompt.text and SUMMARISE not in prompt.text
    assert len(prompt.segments) == 2


def test_each_step_extends_the_previous_prefix(dataset):
    builder = PromptBuilder(dataset, PromptConfig(), embedded_tokenizer())
    u, i = int(dataset.valid.user[1]), int(dataset.valid.item[1])
    ev = _evidence(dataset, 5, (u, i))
    prompts = [builder.build(u, i, ev[:t]) for t in range(6)]
    for before, after in zip(prompts, prompts[1:], strict=False):
        assert after.segments[: len(before.segments) - 1] == before.segments[:-1]
        assert len(after.segments) == len(before.segments) + 1


def test_evidence_tally_counts_the_liked_pieces_so_far(dataset):
    plain = PromptBuilder(dataset, PromptConfig(), embedded_tokenizer())
    builder = PromptBuilder(dataset, PromptConfig(evidence_tally=True), embedded_tokenizer())
    u, i = int(dataset.valid.user[1]), int(dataset.valid.item[1])
    others = [x for x in range(dataset.n_users) if x != u]
    ev = [Evidence(others[0], i, 1), Evidence(others[1], i, 0), Evidence(others[2], i, 1)]
    lines = list(builder.build(u, i, ev).segments[2:-1])
    assert lines == [
        f"user {others[0]} liked this item (1 of 1 liked so far)\n",
        f"user {others[1]} disliked this item (1 of 2 liked so far)\n",
        f"user {others[2]} liked this item (2 of 3 liked so far)\n",
    ]
    # Each step still extends the previous prompt's prefix (prefix reuse at scoring time stays valid).
    prompts = [builder.build(u, i, ev[:t]) for t in range(4)]
    for before, after in zip(prompts, prompts[1:], strict=False):
        assert after.segments[: len(before.segments) - 1] == before.segments[:-1]
    # Without evidence the prompt is the plain one; the setting names itself in the version only when on.
    assert builder.build(u, i).segments == plain.build(u, i).segments
    assert "-tally-" in builder.version and "tally" not in plain.version
    assert plain.version == PromptBuilder(dataset, PromptConfig(evidence_tally=False), embedded_tokenizer()).version
    with pytest.raises(CoralError, match="evidence_tally"):
        PromptConfig(order="paper", evidence_tally=True)


def test_paper_order_groups_evidence_per_item(dataset):
    builder = PromptBuilder(dataset, PromptConfig(order="paper"), embedded_tokenizer())
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    others = [x for x in range(dataset.n_users) if x != u][:3]
    target_item = (i + 1) % dataset.n_items
    ev = [Evidence(others[0], target_item, 1), Evidence(others[1], target_item, 1), Evidence(others[2], target_item, 0)]
    text = builder.build(u, i, ev).text
    assert f"liked by the users [{others[0]}, {others[1]}] and disliked by the users [{others[2]}]" in text
    # Paper order: collaborative block, summarisation, history, query.
    assert (
        text.index(COLLAB_HEADER)
        < text.index(SUMMARISE)
        < text.index(f"User {u} liked")
        < text.index("Would you recommend")
    )
    assert builder.version != PromptBuilder(dataset, PromptConfig(), embedded_tokenizer()).version


def test_history_is_capped_recent_and_excludes_the_target(dataset):
    u = int(dataset.train.user[0])
    items, labels = dataset.history(u)
    target = int(items[-1])  # a training pair as target, as in RL training episodes
    builder = PromptBuilder(dataset, PromptConfig(order="incremental", max_history=2), None)
    static = builder.build(u, target).segments[0]
    liked_line = next(line for line in static.splitlines() if line.startswith(f"User {u} liked"))
    expected = [int(x) for x in items[:-1][labels[:-1] == 1][-2:][::-1]]
    shown = [x for x in range(dataset.n_items) if f'"{builder.item_text(x)}"' in liked_line]
    assert sorted(shown) == sorted(expected)
    assert f'"{builder.item_text(target)}"' not in liked_line or target in expected


def test_target_interaction_as_evidence_is_refused(dataset):
    builder = PromptBuilder(dataset, PromptConfig(), None)
    with pytest.raises(ValueError, match="leakage"):
        builder.build(3, 4, [Evidence(3, 4, 1)])


def test_plain_prompt_without_tokenizer(dataset):
    builder = PromptBuilder(dataset, INCREMENTAL, None)
    prompt = builder.build(0, 1)
    assert prompt.text.startswith(ROLE_PLAY) and prompt.text.endswith("Answer:")
    assert "-plain-" in builder.version
    assert "-chat-" in PromptBuilder(dataset, INCREMENTAL, embedded_tokenizer()).version
    plain = PromptConfig(order="incremental", max_history=10, chat_template=False)
    assert PromptBuilder(dataset, plain, embedded_tokenizer()).build(0, 1).text == prompt.text
    shared = PromptBuilder(dataset, PromptConfig(), None).build(0, 1)
    assert shared.text.startswith(SHORT_SYSTEM) and shared.text.endswith("Answer:")


def test_bad_config_is_a_clear_error():
    with pytest.raises(CoralError, match="order"):
        PromptConfig(order="random")
    with pytest.raises(CoralError, match="max_history"):
        PromptConfig(max_history=-1)


def test_summarisation_can_precede_the_evidence(dataset):
    builder = PromptBuilder(dataset, PromptConfig(order="incremental", summarise_in_tail=False), embedded_tokenizer())
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    ev = _evidence(dataset, 3, (u, i))
    prompts = [builder.build(u, i, ev[:t]) for t in range(4)]
    assert SUMMARISE in prompts[1].segments[1] and SUMMARISE not in prompts[1].segments[-1]
    for before, after in zip(prompts, prompts[1:], strict=False):
        assert after.segments[: len(before.segments) - 1] == before.segments[:-1]
    assert SUMMARISE not in prompts[0].text


class _SpecialTokens:
    """A tokenizer stub: each character is a token, except the special tokens it knows."""

    def __init__(self, *special: str) -> None:
        self.special = special

    def __call__(self, text: str, add_special_tokens: bool = False):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=[0] if text in self.special else list(range(len(text))))


def test_cf_marker_is_the_first_placeholder_the_tokenizer_reads_as_one_token():
    from coral.llm.prompt import CF_MARKERS, cf_marker

    assert cf_marker(_SpecialTokens("<|fim_pad|>")) == "<|fim_pad|>"  # Qwen2.5's
    assert cf_marker(_SpecialTokens(*CF_MARKERS)) == "<empty_output>"  # SmolLM2's comes first
    with pytest.raises(CoralError, match="placeholder"):
        cf_marker(_SpecialTokens("<pad>"))
