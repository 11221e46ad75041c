"""The CoRAL prompt (paper section 4.1) as ordered segments that allow key/value-cache reuse.

Three orders:

- ``"shared"`` (default): short wording, built for caches shared across prompts. Segments:
  [instructions: system message + user-turn opening, the same for every prompt]
  [target block: the target user's most recent liked and disliked titles, the target item and
  the question, the same for every episode and method of a target]
  (ending with the evidence header, also when there is no evidence: the target block is then
  the same text for every number of pieces) [one segment per evidence line]
  [tail: end of the user turn + the assistant header, about 6 tokens].
  A scorer computes the instructions once per process, a target block once per target and an
  evidence line once per episode, so a retrieval step costs one line plus the tail
  (:class:`coral.llm.shared.SharedPrefixScorer`). The question comes before the evidence.
  Evidence is written relative to the target (``relational_evidence``): a piece on the target
  item reads ``user 412 liked this item``, one by the target user ``this user disliked "Casino"``,
  any other names user and item.
- ``"incremental"``: the longer role-play wording; role-play, history and target item first,
  then one segment per evidence piece, then a tail with the query and the answer instruction.
  (``summarise_in_tail`` places the summarisation instruction.)
- ``"paper"``: the paper's order: role-play, collaborative block (retrieved users grouped per
  retrieved item), summarisation instruction, user history, query. Adding evidence changes the
  middle of the prompt, so only the role-play prefix is reusable.

Evidence in the shared and incremental orders is one line per piece rather than grouped per
item: grouping would rewrite an earlier line whenever a new piece hits an already-retrieved item
and so break prefix reuse; per-piece lines carry the same facts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from coral.config import added
from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.base import Prompt

#: Bump when the wording or structure below changes; the full version also hashes the texts.
TEMPLATE_REVISION = "3"

#: The "shared" order's wording (short: every token of the target block is paid once per target).
SHORT_SYSTEM = "You are a recommender system. Answer Yes or No."
SHORT_QUERY = 'Would user {user} like "{item}"?'
EVIDENCE_HEADER = "Other ratings:\n"
#: Base rates (``PromptConfig.base_rates``): the user's and the item's liked share of training ratings.
USER_RATE = "User {user} liked {percent}% of {rated} rated items."
ITEM_RATE = "This item was liked by {percent}% of {rated} raters."
NO_RATINGS = "{who} has no ratings yet."
#: Collaborative-filtering soft tokens (``PromptConfig.cf_tokens``): the line that holds their placeholders.
#: The item's number makes the text (hence every cache key) differ wherever the soft tokens do.
CF_LINE = "CF profile (item {item}): {markers}"
#: The placeholder token: a special token that ordinary text never produces, the first of these that the
#: tokenizer reads as one token (SmolLM2: ``<empty_output>``; Qwen2.5: ``<|fim_pad|>``), see :func:`cf_marker`.
CF_MARKERS = ("<empty_output>", "<|fim_pad|>")
CF_MARKER = CF_MARKERS[0]
#: ``evidence_tally``: appended to each evidence line, the liked pieces among those shown so far.
TALLY = " ({liked} of {shown} liked so far)"

ROLE_PLAY = (
    "You are a recommender system. You predict whether a user will like an item, "
    "using the user's past likes and dislikes and what other users liked and disliked."
)
SUMMARISE = (
    "First, understand from the information about other users what kinds of users typically like "
    "the target item."
)
QUERY = 'Would you recommend the item "{item}" to user {user}?'
#: The incremental order names the target item in its fixed part; its tail refers back to it,
#: which keeps the tail (recomputed at every step) short.
QUERY_SHORT = "Would you recommend the target item to user {user}?"
ANSWER = 'Answer only "Yes" or "No".'
COLLAB_HEADER = "What other users think:\n"
PLAIN_ANSWER_CUE = "Answer:"


class ItemTextDataset(Protocol):
    """What the builder reads from a :class:`~coral.data.CoralDataset`."""

    item_text: list[str]

    def history(self, user: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are written. Everything here is part of :attr:`PromptBuilder.version`."""

    order: Literal["shared", "incremental", "paper"] = "shared"
    """"shared": short wording, instructions / target block / one segment per evidence line / tiny tail (caches shared
    across prompts);
    "incremental": role-play wording, fixed part, one segment per evidence piece, query in the tail;
    "paper": the paper's order with evidence grouped per retrieved item."""
    max_history: int = 4
    """At most this many most recent liked items, and as many disliked items, of the target user."""
    max_title_chars: int = 24
    """Item titles longer than this are cut at a word boundary (no ellipsis)."""
    relational_evidence: bool = True
    """Shared order: write a piece on the target item as "user 412 liked this item" and one by the target user as 'this
    user disliked "X"'; False names user and item in every line."""
    chat_template: bool = True
    """Wrap the prompt in the tokenizer's chat template when it has one (plain text otherwise)."""
    summarise: bool = True
    """Incremental and paper orders: include the summarisation instruction (only when there is evidence to
    summarise)."""
    summarise_in_tail: bool = False
    """Incremental order: False (default) puts the summarisation instruction in the first evidence
    segment, just before the evidence, which shortens the tail recomputed at every retrieval step;
    True puts it after the evidence, the paper's relative order."""
    base_rates: bool = False
    """Shared order: the target block also states how often the user likes what they rate and how often the item is
    liked ("User 412 liked 45% of 120 rated items."), from training interactions, the pair's own left out
    (coral.baselines.rates)."""
    cf_tokens: int = 0
    """Shared order: this many placeholder tokens in the target block, where an aligned scorer adds its collaborative-
    filtering soft tokens (the warm-start user and item embeddings through a trained projection); 0 = none."""
    evidence_tally: bool = added(False)
    """Shared order: each evidence line ends with the running count of liked pieces ("(3 of 4 liked so far)"), so the
    last line states the like-share of all pieces shown; a line depends only on the pieces before it, so prompts
    still share prefixes across retrieval steps."""

    def __post_init__(self) -> None:
        from coral.config import require

        require(
            self.order in ("shared", "incremental", "paper"),
            "order",
            f"must be 'shared', 'incremental' or 'paper', got {self.order!r}",
        )
        require(self.max_history >= 0, "max_history", f"must be >= 0, got {self.max_history}")
        require(self.max_title_chars >= 4, "max_title_chars", f"must be >= 4, got {self.max_title_chars}")
        require(self.cf_tokens >= 0, "cf_tokens", f"must be >= 0, got {self.cf_tokens}")
        for name in ("base_rates", "cf_tokens", "evidence_tally"):
            require(
                self.order == "shared" or not getattr(self, name),
                name,
                f"needs the shared order, got order {self.order!r}",
            )

    def option_tags(self) -> tuple[str, ...]:
        """The later options that are on, as short tags ("rates", "cf4", "tally"): the prompt version and an aligned
        scorer's name both spell them."""
        return (
            *(("rates",) if self.base_rates else ()),
            *((f"cf{self.cf_tokens}",) if self.cf_tokens else ()),
            *(("tally",) if self.evidence_tally else ()),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PromptConfig":
        """Inverse of :func:`coral.config.to_dict` (an aligned scorer's saved prompt settings)."""
        from coral.config import from_dict

        return from_dict(cls, data, where="prompt config")


#: Settings added after template revision 3 (and those marked :func:`~coral.config.added`): they enter a version
#: only when not at their defaults, so that the prompts of the default settings keep their version (and every score
#: cache its entries).
_LATER_SETTINGS = ("base_rates", "cf_tokens")


def _settings_repr(config: PromptConfig) -> str:
    """``repr(config)`` without the later settings that are at their defaults."""
    import dataclasses

    shown = [
        f
        for f in dataclasses.fields(config)
        if (f.name not in _LATER_SETTINGS and "added_default" not in f.metadata) or getattr(config, f.name) != f.default
    ]
    return f"{type(config).__name__}({', '.join(f'{f.name}={getattr(config, f.name)!r}' for f in shown)})"


def cf_marker(tokenizer: Any) -> str:
    """The soft tokens' placeholder for ``tokenizer``: the first of :data:`CF_MARKERS` it reads as one token
    (the embedded model's when ``tokenizer`` is None).

    :raises CoralError: when it reads none of them as one token.
    """
    if tokenizer is None:
        return CF_MARKER
    for marker in CF_MARKERS:
        if len(tokenizer(marker, add_special_tokens=False).input_ids) == 1:
            return marker
    raise CoralError(
        f"soft tokens (prompt.cf_tokens) need a placeholder that the tokenizer reads as one token; "
        f"{type(tokenizer).__name__} has none of {', '.join(CF_MARKERS)}"
    )


class PromptBuilder:
    """Builds :class:`~coral.llm.base.Prompt` objects for (user, item, evidence).

    :param dataset: gives item texts and users' training histories.
    :param config: the prompt's wording and order.
    :param tokenizer: a tokenizer whose chat template wraps the prompt (system message = role-play,
        user message = the rest, then the assistant header); None or no template = plain text
        ending in "Answer:".
    """

    def __init__(self, dataset: ItemTextDataset, config: PromptConfig = PromptConfig(), tokenizer: Any = None) -> None:
        self.dataset = dataset
        self.config = config
        system = SHORT_SYSTEM if config.order == "shared" else ROLE_PLAY
        self._system = system
        self._header, self._footer = self._chat_frame(tokenizer, system) if config.chat_template else (None, None)
        #: The soft tokens' placeholder text (checked here, before anything is computed with these prompts).
        self.cf_marker = cf_marker(tokenizer) if config.cf_tokens else CF_MARKER
        texts = [
            TEMPLATE_REVISION, ROLE_PLAY, SUMMARISE, QUERY, QUERY_SHORT, ANSWER, COLLAB_HEADER, PLAIN_ANSWER_CUE,
            SHORT_SYSTEM, SHORT_QUERY, EVIDENCE_HEADER,
        ]
        if (
            config.base_rates or config.cf_tokens
        ):  # the texts of the options join the hash only when used (older versions stay as they were)
            texts += [USER_RATE, ITEM_RATE, NO_RATINGS, CF_LINE, self.cf_marker]
        if config.evidence_tally:
            texts.append(TALLY)
        digest = hashlib.sha256(
            "\x00".join([*texts, _settings_repr(config), str(self._header), str(self._footer)]).encode()
        ).hexdigest()[:10]
        style = "chat" if self._header is not None else "plain"
        #: Identity of the template: goes into every cache key and result row.
        options = "".join(f"-{tag}" for tag in config.option_tags())
        self.version = (
            f"coral-prompt-v{TEMPLATE_REVISION}-{config.order}-h{config.max_history}{options}-{style}-{digest}"
        )
        self._counts: Any = None

    @staticmethod
    def _chat_frame(tokenizer: Any, system: str) -> tuple[str | None, str | None]:
        """The chat template's text before and after the user message (None without a template)."""
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return None, None
        marker = "\x1eUSER-MESSAGE\x1e"
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": marker}],
            tokenize=False,
            add_generation_prompt=True,
        )
        if text.count(marker) != 1:
            raise CoralError(
                "the tokenizer's chat template does not keep the user message verbatim; use chat_template=False"
            )
        header, footer = text.split(marker)
        return header, footer

    # ---- text pieces ------------------------------------------------------------------------
    def item_text(self, item: int) -> str:
        """The item's title, whitespace collapsed, cut at a word boundary to ``max_title_chars``."""
        text = " ".join(str(self.dataset.item_text[int(item)]).split())
        limit = self.config.max_title_chars
        if len(text) <= limit:
            return text
        head = text[: limit + 1]
        cut = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
        return cut.rstrip(" ,;:-")

    def _recent(self, user: int, item: int) -> tuple[list[str], list[str]]:
        """Titles of the user's most recent liked and disliked training items (most recent first), never ``item``."""
        items, labels = self.dataset.history(user)
        keep = np.asarray(items) != item  # a training target must never show its own label
        items, labels = np.asarray(items)[keep], np.asarray(labels)[keep]
        n = self.config.max_history
        liked = [self.item_text(int(i)) for i in items[labels == 1][-n:][::-1]] if n else []
        disliked = [self.item_text(int(i)) for i in items[labels == 0][-n:][::-1]] if n else []
        return liked, disliked

    def _history_lines(self, user: int, item: int) -> str:
        liked, disliked = self._recent(user, item)

        def listing(texts: list[str]) -> str:
            return "; ".join(f'"{t}"' for t in texts) if texts else "none"

        return (
            f"User {user} liked these items (most recent first): {listing(liked)}.\n"
            f"User {user} disliked these items (most recent first): {listing(disliked)}.\n"
        )

    def _evidence_line(self, ev: Evidence) -> str:
        verb = "liked" if int(ev.label) == 1 else "disliked"
        return f'The item "{self.item_text(int(ev.item))}" is {verb} by user {int(ev.user)}.\n'

    def _rate_lines(self, user: int, item: int) -> str:
        """The base-rate lines of the target block (``base_rates``): the pair's own interaction left out."""
        from coral.baselines.rates import LikeCounts, percent

        if self._counts is None:
            self._counts = LikeCounts.of(self.dataset)
        user_liked, user_rated, item_liked, item_rated = self._counts.pair(user, item)
        user_line = (
            USER_RATE.format(user=user, percent=percent(user_liked, user_rated), rated=user_rated)
            if user_rated
            else NO_RATINGS.format(who=f"User {user}")
        )
        item_line = (
            ITEM_RATE.format(percent=percent(item_liked, item_rated), rated=item_rated)
            if item_rated
            else NO_RATINGS.format(who="This item")
        )
        return f"{user_line}\n{item_line}\n"

    def _short_target_block(self, user: int, item: int) -> str:
        liked, disliked = self._recent(user, item)
        rates = self._rate_lines(user, item) if self.config.base_rates else ""
        markers = self.cf_marker * self.config.cf_tokens
        cf = CF_LINE.format(item=item, markers=markers) + "\n" if self.config.cf_tokens else ""
        return (
            f"User {user} liked: {'; '.join(liked) or 'none'}.\n"
            f"User {user} disliked: {'; '.join(disliked) or 'none'}.\n"
            + rates
            + SHORT_QUERY.format(user=user, item=self.item_text(item)) + "\n"
            + cf
            + EVIDENCE_HEADER
        )

    def _short_evidence_line(self, ev: Evidence, user: int, item: int) -> str:
        verb = "liked" if ev.label == 1 else "disliked"
        if self.config.relational_evidence and ev.item == item:
            return f"user {ev.user} {verb} this item"
        if self.config.relational_evidence and ev.user == user:
            return f'this user {verb} "{self.item_text(ev.item)}"'
        return f'user {ev.user} {verb} "{self.item_text(ev.item)}"'

    def _short_evidence_lines(self, evidence: Sequence[Evidence], user: int, item: int) -> list[str]:
        """One line per piece; with ``evidence_tally`` each ends with the liked count of the pieces up to it."""
        lines = [self._short_evidence_line(ev, user, item) for ev in evidence]
        if self.config.evidence_tally:
            liked = np.cumsum([int(ev.label) == 1 for ev in evidence])
            lines = [
                line + TALLY.format(liked=int(n), shown=k + 1)
                for k, (line, n) in enumerate(zip(lines, liked, strict=True))
            ]
        return [line + "\n" for line in lines]

    def _grouped_evidence(self, evidence: Sequence[Evidence]) -> str:
        groups: dict[int, tuple[list[int], list[int]]] = {}
        for ev in evidence:  # dicts keep first-retrieval order
            liked, disliked = groups.setdefault(int(ev.item), ([], []))
            (liked if int(ev.label) == 1 else disliked).append(int(ev.user))
        lines = []
        for item, (liked, disliked) in groups.items():
            parts = []
            if liked:
                parts.append(f"liked by the users {liked}")
            if disliked:
                parts.append(f"disliked by the users {disliked}")
            lines.append(f'The item "{self.item_text(item)}" is {" and ".join(parts)}.\n')
        return "".join(lines)

    def _frame(self, user_message_parts: list[str]) -> list[str]:
        """Wrap the user message parts in the chat template (or the plain format)."""
        parts = list(user_message_parts)
        if self._header is not None:
            parts[0] = self._header + parts[0]
            parts[-1] = parts[-1] + self._footer
        else:
            parts[0] = self._system + "\n\n" + parts[0]
            parts[-1] = parts[-1] + PLAIN_ANSWER_CUE
        return parts

    def _shared_segments(self, user: int, item: int, evidence: tuple[Evidence, ...]) -> list[str]:
        """[instructions][target block][evidence line]...[tail] (the "shared" order)."""
        header, footer = (
            (self._header, self._footer) if self._header is not None else (self._system + "\n\n", PLAIN_ANSWER_CUE)
        )
        return [header, self._short_target_block(user, item), *self._short_evidence_lines(evidence, user, item), footer]

    # ---- the prompt -------------------------------------------------------------------------
    def build(self, user: int, item: int, evidence: Sequence[Evidence] = ()) -> Prompt:
        """The prompt asking whether ``user`` likes ``item``, given retrieved ``evidence``.

        :param user: target user index.
        :param item: target item index.
        :param evidence: retrieved training interactions, in retrieval order.
        :raises ValueError: when a piece of evidence is the target interaction itself.
        """
        user, item = int(user), int(item)
        evidence = tuple(Evidence(int(e.user), int(e.item), int(e.label)) for e in evidence)
        for ev in evidence:
            if ev.user == user and ev.item == item:
                raise ValueError(f"evidence {ev} is the target interaction (user {user}, item {item}): leakage")
        if self.config.order == "shared":
            return Prompt(
                tuple(self._shared_segments(user, item, evidence)),
                user=user, item=item, evidence=evidence, version=self.version,
            )
        history = self._history_lines(user, item)
        target = f'The target item is "{self.item_text(item)}".\n'
        summarise = SUMMARISE + "\n" if (evidence and self.config.summarise) else ""
        if self.config.order == "incremental":
            query = QUERY_SHORT.format(user=user) + " " + ANSWER
            static = history + target
            in_tail = self.config.summarise_in_tail
            header = COLLAB_HEADER if in_tail else COLLAB_HEADER + summarise
            middle = [
                header + self._evidence_line(ev) if k == 0 else self._evidence_line(ev) for k, ev in enumerate(evidence)
            ]
            tail = (summarise if in_tail else "") + query
            segments = self._frame([static, *middle, tail])
        else:
            query = QUERY.format(item=self.item_text(item), user=user) + " " + ANSWER
            collab = COLLAB_HEADER + self._grouped_evidence(evidence) if evidence else ""
            # The role-play prefix is its own segment: the only part shared across steps.
            body = collab + summarise + history + query
            segments = self._frame(["", body])
        return Prompt(tuple(segments), user=user, item=item, evidence=evidence, version=self.version)


def scorer_prompt_builder(dataset: ItemTextDataset, scorer: Any, config: PromptConfig | None = None) -> PromptBuilder:
    """The prompt builder for ``scorer``'s prompts: the settings it was trained with when it carries
    them (an aligned scorer's ``prompt_config``), else ``config`` (default: :class:`PromptConfig`'s
    defaults); the chat template of its tokenizer.

    Every place that builds prompts for a scorer it did not build itself (the environment, the
    controls, the diagnostics) goes through here, so that an aligned scorer is always given the
    prompts it was trained on.

    :param dataset: item texts and training histories.
    :param scorer: any :class:`~coral.llm.base.Scorer`.
    :param config: the settings for a scorer that carries none.
    """
    trained = getattr(scorer, "prompt_config", None)
    return PromptBuilder(
        dataset,
        trained if trained is not None else (config or PromptConfig()),
        tokenizer=getattr(scorer, "tokenizer", None),
    )
