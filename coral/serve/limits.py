"""Prompt lengths in tokens, counted before a request reaches the engine.

A prompt longer than the server's maximum is refused with a 400 before any model computation:
the model's context is a few thousand tokens, and one absurd prompt (50k tokens) would otherwise
hold the engine for many minutes and grow the server's memory by gigabytes. Counting stays cheap
whatever the body: a long text is tokenized piece by piece and counting stops as soon as the
maximum is passed, so a 4 MB prompt costs about as much as a prompt at the limit.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from typing import Any, Sequence

from coral.llm.base import Prompt
from coral.serve.protocol import RequestError

#: Characters per piece when a long segment is counted piece by piece (cut at whitespace).
PIECE_CHARS = 8192
_PIECE_END = re.compile(r"\s")


def _pieces(text: str) -> list[str]:
    """``text`` cut into pieces of about :data:`PIECE_CHARS` characters, each ending before whitespace where
    possible."""
    pieces, start = [], 0
    while len(text) - start > PIECE_CHARS:
        match = _PIECE_END.search(text, start + PIECE_CHARS, start + 2 * PIECE_CHARS)
        end = match.start() if match else start + PIECE_CHARS
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


class PromptTokenLimit:
    """Counts a prompt's tokens as the scorer tokenizes it, and refuses prompts over ``max_tokens``.

    The count is the scorer's: its start-of-text tokens plus every segment tokenized on its own
    (:meth:`coral.llm.hf.HFScorer.token_ids`). It runs in the handler threads on a copy of the
    tokenizer behind a lock (a fast tokenizer is not safe to call from several threads, and the
    engine thread uses the original).

    :param tokenizer: the scorer's tokenizer (copied).
    :param start_tokens: tokens the scorer puts before the first segment (a BOS token, or none).
    :param max_tokens: the longest prompt accepted.
    """

    def __init__(self, tokenizer: Any, start_tokens: int, max_tokens: int) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()
        self.start_tokens = int(start_tokens)
        self.max_tokens = int(max_tokens)

    def _count(self, text: str) -> int:
        with self._lock:
            return len(self._tokenizer(text, add_special_tokens=False).input_ids)

    def _segment_tokens(self, segment: str, budget: int) -> int:
        """Tokens of ``segment``, exact up to ``budget``; a count above ``budget`` may be a lower bound."""
        if len(segment) <= PIECE_CHARS:
            return self._count(segment)
        total = 0
        for cuts, piece in enumerate(_pieces(segment)):
            total += self._count(piece)
            if total > budget + 2 * cuts:  # over by more than the cuts between pieces can add: stop counting
                return total - 2 * cuts
        return self._count(segment)  # no more than the budget: count it whole, exactly

    def tokens(self, prompt: Prompt) -> int:
        """The prompt's length in tokens, exact up to :attr:`max_tokens` (above it: at least that many).

        :param prompt: the prompt, as segments.
        """
        total = self.start_tokens
        for segment in prompt.segments:
            total += self._segment_tokens(segment, self.max_tokens - total)
            if total > self.max_tokens:
                return total
        return total

    def check(self, prompts: Sequence[Prompt]) -> list[int]:
        """Each prompt's length in tokens; refuses the request when one is over :attr:`max_tokens`.

        :param prompts: the request's prompts.
        :raises RequestError: 400 naming the first prompt that is too long.
        """
        lengths = []
        for index, prompt in enumerate(prompts):
            n = self.tokens(prompt)
            if n > self.max_tokens:
                which = "the prompt" if len(prompts) == 1 else f"prompt {index}"
                # (n is exact up to the limit, a lower bound beyond it)
                raise RequestError(
                    400,
                    f"{which} is too long: at least {n} tokens; this server accepts at most {self.max_tokens} "
                    "(--max-prompt-tokens)",
                    "prompt",
                )
            lengths.append(n)
        return lengths


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library, loaded once (finding it may run ``ldconfig``); None where there is none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    A forward pass over long prompts allocates activations of tens to hundreds of MB, and a
    rejected 4 MB body is parsed and tokenized in a handler thread's heap; glibc keeps freed blocks
    below its (adaptive) mmap threshold, so without a trim the server's resident memory stays at
    its largest request's level.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
