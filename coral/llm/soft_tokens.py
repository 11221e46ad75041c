"""Collaborative-filtering soft tokens: user and item embeddings put into the LLM's hidden states.

A prompt written with ``PromptConfig.cf_tokens = m`` holds m placeholder tokens
(:data:`coral.llm.prompt.CF_MARKER`) in its target block. At the input of one decoder layer (the
first fine-tuned layer of a top-k scorer, :mod:`coral.align.topk`), a trained projection of the
pair's warm-start embeddings [e_u, e_i, e_u * e_i] is added to the hidden states of those m
positions (CoLLM's "collaborative embeddings as tokens", injected above the frozen trunk so that
the trunk's output can still be computed once per training target). The layers below see the
placeholders as ordinary text; every layer from the injection up sees the soft tokens.

Training (:class:`coral.align.topk.TopKHead`) and scoring (:class:`coral.llm.hf.HFScorer` with a
:class:`SoftTokens`) add the same vectors at the same positions of the same layer, so the scorer
computes exactly what was trained (tested). The embedding tables travel with the projection in
the aligned scorer's files, so its fingerprint covers them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from coral.errors import CoralError


class CFProjection(torch.nn.Module):
    """[e_u, e_i, e_u * e_i] -> ``n_tokens`` vectors of width ``width`` (two layers; the output layer starts at zero).

    :param user_table: (n_users, d) user embeddings.
    :param item_table: (n_items, d) item embeddings.
    :param n_tokens: soft tokens per prompt.
    :param width: the LLM's hidden size.
    :param hidden: hidden units of the projection.
    """

    def __init__(
        self, user_table: np.ndarray | torch.Tensor, item_table: np.ndarray | torch.Tensor, n_tokens: int, width: int,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.register_buffer("user_table", torch.as_tensor(np.asarray(user_table, dtype=np.float32)))
        self.register_buffer("item_table", torch.as_tensor(np.asarray(item_table, dtype=np.float32)))
        d = self.user_table.shape[1]
        if self.item_table.shape[1] != d:
            raise CoralError(f"user and item embeddings differ in width ({d} vs {self.item_table.shape[1]})")
        self.n_tokens, self.width = int(n_tokens), int(width)
        self.inner = torch.nn.Linear(3 * d, hidden)
        self.outer = torch.nn.Linear(hidden, self.n_tokens * self.width)
        torch.nn.init.zeros_(self.outer.weight)
        torch.nn.init.zeros_(self.outer.bias)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], n_tokens: int) -> "CFProjection":
        """A projection with the weights of ``state`` (what :meth:`state_dict` saved)."""
        hidden, width = state["inner.weight"].shape[0], state["outer.weight"].shape[0] // n_tokens
        projection = cls(state["user_table"], state["item_table"], n_tokens, width, hidden)
        projection.load_state_dict(state)
        return projection

    def features(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(b, 3d) inputs of the projection."""
        eu, ei = self.user_table[users], self.item_table[items]
        return torch.cat([eu, ei, eu * ei], dim=-1)

    def forward(self, users: Sequence[int] | torch.Tensor, items: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """(b, n_tokens, width) soft-token vectors of the pairs."""
        users, items = torch.as_tensor(users, dtype=torch.long), torch.as_tensor(items, dtype=torch.long)
        if len(users) and (int(users.min()) < 0 or int(items.min()) < 0):
            raise CoralError(
                "soft tokens need each prompt's user and item (a prompt built by coral.llm.prompt.PromptBuilder)"
            )
        x = torch.nn.functional.gelu(self.inner(self.features(users, items)))
        return self.outer(x).view(-1, self.n_tokens, self.width)


def marker_positions(ids: torch.Tensor, marker_id: int, n_tokens: int) -> list[torch.Tensor]:
    """Per row of ``ids`` (b, T), the positions of the placeholder tokens: all ``n_tokens`` of them, or none
    (a prefix whose key/value cache already holds the soft tokens).

    :raises CoralError: when a row holds another number of placeholders.
    """
    out = []
    for row in ids:
        pos = torch.nonzero(row == marker_id).flatten()
        if len(pos) not in (0, n_tokens):
            raise CoralError(
                f"a prompt holds {len(pos)} soft-token placeholders, expected {n_tokens} (or none in a cached prefix)"
            )
        out.append(pos)
    return out


class SoftTokens:
    """What a scorer needs to add the soft tokens: the projection, the placeholder's token id and the layer.

    :param projection: the trained :class:`CFProjection`.
    :param marker_id: token id of the placeholder.
    :param layer: index of the decoder layer at whose input the vectors are added.
    """

    def __init__(self, projection: CFProjection, marker_id: int, layer: int) -> None:
        self.projection = projection.eval()
        self.marker_id, self.layer = int(marker_id), int(layer)

    @contextmanager
    def added(self, model: Any, input_ids: torch.Tensor, users: Sequence[int], items: Sequence[int]) -> Iterator[None]:
        """Within the block, a forward pass of ``model`` on ``input_ids`` (b, T) gets the pairs' soft tokens
        added at the input of layer :attr:`layer` at the placeholder positions.

        :param users: the user of each row.
        :param items: the item of each row.
        """
        positions = marker_positions(input_ids, self.marker_id, self.projection.n_tokens)
        rows = [r for r, pos in enumerate(positions) if len(pos)]
        if not rows:
            yield
            return
        with torch.no_grad():
            vectors = self.projection([users[r] for r in rows], [items[r] for r in rows])

        def add(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = hidden.clone()
            for k, r in enumerate(rows):
                hidden[r, positions[r]] += vectors[k].to(hidden.dtype)
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}

        handle = model.model.layers[self.layer].register_forward_pre_hook(add, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def marker_token_id(tokenizer: Any, marker: str) -> int:
    """The token id of the placeholder text ``marker``.

    :raises CoralError: when the tokenizer does not map it to exactly one token.
    """
    ids = list(tokenizer(marker, add_special_tokens=False).input_ids)
    if len(ids) != 1:
        raise CoralError(
            f"the soft-token placeholder {marker!r} is {len(ids)} tokens for this tokenizer, not one: soft tokens need "
            "a model whose tokenizer has it as a special token"
        )
    return int(ids[0])
