"""The CoRAL prompt builder: order, segments for KV reuse, history, leakage guard, version."""

from __future__ import annotations

import pytest
from llm_fixtures import embedded_tokenizer, small_dataset

from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.prompt import COLLAB_HEADER, ROLE_PLAY, SUMMARISE, PromptBuilder, PromptConfig


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def _evidence(dataset, n: int, skip: tuple[int, int]) -> list[Evidence]:
    out = []
    for u, i, y in zip(dataset.train.user, dataset.train.item, dataset.train.label):
        if (int(u), int(i)) != skip:
            out.append(Evidence(int(u), int(i), int(y)))
        if len(out) == n:
            return out
    raise AssertionError("not enough training rows")


def test_chat_prompt_parts_and_order(dataset):
    tok = embedded_tokenizer()
    builder = PromptBuilder(dataset, PromptConfig(), tok)
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    ev = _evidence(dataset, 3, (u, i))
    prompt = builder.build(u, i, ev)
    text = prompt.text
    assert text.startswith("<|im_start|>system\n" + ROLE_PLAY)
    assert text.endswith("<|im_start|>assistant\n")
    assert "SmolLM" not in text  # the role-play replaces the template's default system prompt
    # Incremental order: history, target, evidence lines, then summarisation + query last.
    assert text.index(f"User {u} liked") < text.index("The target item is") < text.index(COLLAB_HEADER) < text.index(SUMMARISE) < text.index("Would you recommend")
    assert len(prompt.segments) == 1 + len(ev) + 1
    for k, e in enumerate(ev):
        assert f"by user {e.user}." in prompt.segments[1 + k]
        assert ("is liked" if e.label else "is disliked") in prompt.segments[1 + k]
    assert prompt.version == builder.version and prompt.evidence == tuple(ev)
    # The chat template's framing (user message end + assistant header) lives in the tail only.
    assert prompt.segments[-1].endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_no_evidence_means_no_collaborative_block(dataset):
    builder = PromptBuilder(dataset, PromptConfig(), embedded_tokenizer())
    prompt = builder.build(int(dataset.valid.user[0]), int(dataset.valid.item[0]))
    assert COLLAB_HEADER not in prompt.text and SUMMARISE not in prompt.text
    assert len(prompt.segments) == 2


def test_each_step_extends_the_previous_prefix(dataset):
    builder = PromptBuilder(dataset, PromptConfig(), embedded_tokenizer())
    u, i = int(dataset.valid.user[1]), int(dataset.valid.item[1])
    ev = _evidence(dataset, 5, (u, i))
    prompts = [builder.build(u, i, ev[:t]) for t in range(6)]
    for before, after in zip(prompts, prompts[1:]):
        assert after.segments[: len(before.segments) - 1] == before.segments[:-1]
        assert len(after.segments) == len(before.segments) + 1


def test_paper_order_groups_evidence_per_item(dataset):
    builder = PromptBuilder(dataset, PromptConfig(order="paper"), embedded_tokenizer())
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    others = [x for x in range(dataset.n_users) if x != u][:3]
    target_item = (i + 1) % dataset.n_items
    ev = [Evidence(others[0], target_item, 1), Evidence(others[1], target_item, 1), Evidence(others[2], target_item, 0)]
    text = builder.build(u, i, ev).text
    assert f"liked by the users [{others[0]}, {others[1]}] and disliked by the users [{others[2]}]" in text
    # Paper order: collaborative block, summarisation, history, query.
    assert text.index(COLLAB_HEADER) < text.index(SUMMARISE) < text.index(f"User {u} liked") < text.index("Would you recommend")
    assert builder.version != PromptBuilder(dataset, PromptConfig(), embedded_tokenizer()).version


def test_history_is_capped_recent_and_excludes_the_target(dataset):
    u = int(dataset.train.user[0])
    items, labels = dataset.history(u)
    target = int(items[-1])  # a training pair as target, as in RL training episodes
    builder = PromptBuilder(dataset, PromptConfig(max_history=2), None)
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
    builder = PromptBuilder(dataset, PromptConfig(), None)
    prompt = builder.build(0, 1)
    assert prompt.text.startswith(ROLE_PLAY) and prompt.text.endswith("Answer:")
    assert "-plain-" in builder.version
    assert "-chat-" in PromptBuilder(dataset, PromptConfig(), embedded_tokenizer()).version
    assert PromptBuilder(dataset, PromptConfig(chat_template=False), embedded_tokenizer()).build(0, 1).text == prompt.text


def test_bad_config_is_a_clear_error():
    with pytest.raises(CoralError, match="order"):
        PromptConfig(order="random")
    with pytest.raises(CoralError, match="max_history"):
        PromptConfig(max_history=-1)


def test_summarisation_can_precede_the_evidence(dataset):
    builder = PromptBuilder(dataset, PromptConfig(summarise_in_tail=False), embedded_tokenizer())
    u, i = int(dataset.valid.user[0]), int(dataset.valid.item[0])
    ev = _evidence(dataset, 3, (u, i))
    prompts = [builder.build(u, i, ev[:t]) for t in range(4)]
    assert SUMMARISE in prompts[1].segments[1] and SUMMARISE not in prompts[1].segments[-1]
    for before, after in zip(prompts, prompts[1:]):
        assert after.segments[: len(before.segments) - 1] == before.segments[:-1]
    assert SUMMARISE not in prompts[0].text
