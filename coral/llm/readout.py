"""The Yes-vs-No logit at the last position, differentiable, and the linear readout head.

The scorer's p is the softmax restricted to the label tokens (:func:`coral.llm.labels.readout_from_logits`):
p = sigmoid(logsumexp(Yes-variant logits) - logsumexp(No-variant logits)). Training needs only that
logit difference, so only the label rows of the output embedding are multiplied.
"""

from __future__ import annotations

from typing import Any

import torch

from coral.llm.labels import LabelTokens


def last_hidden(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """The final (normalised) hidden state at the last position, (batch, hidden).

    :param model: a causal LM (or a peft model wrapping one: its adapters are in the decoder's modules).
    :param input_ids: (batch, length) token ids without padding.
    """
    out = model.get_decoder()(input_ids=input_ids, use_cache=False)
    return out.last_hidden_state[:, -1]


def yes_no_logit(model: Any, hidden: torch.Tensor, labels: LabelTokens) -> torch.Tensor:
    """logit of P(Yes) under the label-token softmax, (batch,), float32.

    :param hidden: last-position hidden states from :func:`last_hidden`.
    """
    weight = model.get_output_embeddings().weight
    yes = torch.logsumexp((hidden @ weight[list(labels.yes_ids)].T).float(), dim=-1)
    no = torch.logsumexp((hidden @ weight[list(labels.no_ids)].T).float(), dim=-1)
    return yes - no


class LinearReadout(torch.nn.Module):
    """A logistic readout on the last hidden state: (batch, hidden) -> (batch,) Yes-vs-No logits, in float32.

    :param hidden_size: the LLM's hidden size.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1, dtype=torch.float32)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).reshape(-1)
