"""The Yes/No readout: label token ids from a tokenizer, and p from logits or log-probabilities.

Each label counts with and without a leading space ("Yes" and " Yes"): after a chat template's
assistant header SmolLM2 puts its mass on "Yes", after a plain "Answer:" on " Yes". Summing the
two variants' probabilities makes the readout independent of the prompt style; with a chat
template the spaced variants carry almost no mass, so p is the paper's two-token softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from coral.errors import CoralError

DEFAULT_LABELS = ("Yes", "No")


@dataclass(frozen=True)
class LabelTokens:
    """Token ids (and strings) of the positive and the negative label, all variants."""

    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    yes_strings: tuple[str, ...]
    no_strings: tuple[str, ...]

    def describe(self) -> str:
        """A stable string for fingerprints."""
        return f"yes={list(self.yes_ids)};no={list(self.no_ids)}"


def _single_token(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def resolve_label_tokens(tokenizer: Any, labels: tuple[str, str] = DEFAULT_LABELS) -> LabelTokens:
    """Resolve the label tokens from ``tokenizer``.

    :param tokenizer: a Hugging Face tokenizer.
    :param labels: (positive, negative) label text, e.g. ("Yes", "No").
    :raises CoralError: when a label is not a single token, or both labels share a token.
    """
    resolved: list[tuple[tuple[int, ...], tuple[str, ...]]] = []
    for label in labels:
        bare = _single_token(tokenizer, label)
        if bare is None:
            pieces = tokenizer.encode(label, add_special_tokens=False)
            raise CoralError(
                f"label {label!r} is not a single token of this tokenizer (it encodes to {len(pieces)} tokens: "
                f"{pieces})"
            )
        ids, strings = [bare], [label]
        spaced = _single_token(tokenizer, " " + label)
        if spaced is not None and spaced != bare:
            ids.append(spaced)
            strings.append(" " + label)
        resolved.append((tuple(ids), tuple(strings)))
    (yes_ids, yes_s), (no_ids, no_s) = resolved
    if set(yes_ids) & set(no_ids):
        raise CoralError(f"labels {labels} share a token id")
    return LabelTokens(yes_ids, no_ids, yes_s, no_s)


def readout_from_logits(logits: "Any", labels: LabelTokens) -> tuple[np.ndarray, np.ndarray]:
    """(p_yes, yes_no_mass) from last-position logits of shape (batch, vocab).

    p = sum of the Yes variants' probabilities over that of all label variants, i.e. the softmax
    restricted to the label tokens; the mass is their total probability under the full softmax.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    yes = torch.logsumexp(logp[:, list(labels.yes_ids)], dim=-1)
    no = torch.logsumexp(logp[:, list(labels.no_ids)], dim=-1)
    p = torch.sigmoid(yes - no)
    mass = torch.exp(torch.logaddexp(yes, no))
    return p.double().cpu().numpy(), mass.double().cpu().numpy()


def readout_from_top_logprobs(top: Mapping[Any, float], yes_keys: tuple, no_keys: tuple) -> tuple[float, float]:
    """(p_yes, mass) from a next-token top-k log-probability table (token -> logprob).

    Labels absent from the table get no mass; when neither label is present p = 0.5, mass = 0.
    """
    def total(keys: tuple) -> float:
        values = [top[k] for k in keys if k in top and top[k] is not None and math.isfinite(top[k])]
        return float(np.logaddexp.reduce(values)) if values else -math.inf

    yes, no = total(yes_keys), total(no_keys)
    if yes == -math.inf and no == -math.inf:
        return 0.5, 0.0
    p = 1.0 / (1.0 + math.exp(min(no - yes, 700.0))) if yes != -math.inf else 0.0
    return p, float(math.exp(np.logaddexp(yes, no)))
