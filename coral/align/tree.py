"""A target's prompts packed as one token tree, and Llama decoder layers run on it.

For one target, the prompts with 0..K pieces of several evidence sequences share their prefix, and
the prompt with j pieces shares everything but its tail with the one with j+1 pieces. The tree
holds each shared token once; an attention mask lets every token see exactly its own prompt's
earlier tokens (its ancestors), and position ids are each token's position in its own prompt. One
forward pass over the tree gives, at the last token of every tail, the hidden state that scoring
each prompt on its own gives (what prefix key/value reuse gives at scoring time): training sees
the scorer's computation, at a fraction of the tokens.

The layers' own modules are called as they are, so the same function runs the frozen trunk
(inference mode) and the trainable top layers (autograd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class PromptTree:
    """Token ids of a target's prompt tree and where each prompt's answer is read."""

    ids: list[int] = field(default_factory=list)
    """Token ids, tree order."""
    positions: list[int] = field(default_factory=list)
    """Position of each token in its own prompt."""
    segment: list[int] = field(default_factory=list)
    """Segment index of each token."""
    parents: list[int] = field(default_factory=list)
    """Parent segment of each segment (-1 for the root)."""
    seg_end: list[int] = field(default_factory=list)
    """Position just after each segment (its prompt's length so far)."""
    outputs: list[tuple[int, str, int]] = field(default_factory=list)
    """(index of a tail's last token, branch name, pieces shown) per scored prompt."""

    def add_segment(self, ids: Sequence[int], parent: int) -> int:
        """Append a segment continuing ``parent`` (-1: the root); returns its index."""
        start = self.seg_end[parent] if parent >= 0 else 0
        s = len(self.parents)
        self.parents.append(parent)
        self.seg_end.append(start + len(ids))
        self.ids.extend(int(t) for t in ids)
        self.positions.extend(range(start, start + len(ids)))
        self.segment.extend([s] * len(ids))
        return s

    def attention_mask(self) -> torch.Tensor:
        """(T, T) bool: query token q may attend key token k (k is q itself or an ancestor of q)."""
        n_seg = len(self.parents)
        ancestor = np.zeros((n_seg, n_seg), dtype=bool)  # [s, a]: a is s or an ancestor of s
        for s in range(n_seg):
            a = s
            while a >= 0:
                ancestor[s, a] = True
                a = self.parents[a]
        seg, pos = np.asarray(self.segment), np.asarray(self.positions)
        return torch.from_numpy(ancestor[seg[:, None], seg[None, :]] & (pos[None, :] <= pos[:, None]))


def build_tree(prefix: Sequence[int], branches: dict[str, Sequence[Sequence[int]]], tail: Sequence[int]) -> PromptTree:
    """The tree of one target: the prompt without evidence, and every branch after each piece.

    :param prefix: token ids of everything before the evidence (BOS included if the scorer adds it).
    :param branches: branch name -> token ids of its evidence lines, in retrieval order.
    :param tail: token ids of the tail (end of turn + assistant header).
    """
    tree = PromptTree()
    root = tree.add_segment(prefix, -1)
    tree.add_segment(tail, root)
    tree.outputs.append((len(tree.ids) - 1, "none", 0))
    for name, lines in branches.items():
        parent = root
        for j, line in enumerate(lines):
            parent = tree.add_segment(line, parent)
            tree.add_segment(tail, parent)
            tree.outputs.append((len(tree.ids) - 1, name, j + 1))
    return tree


def layer_forward(model: Any, layer: Any, h: torch.Tensor, mask: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One Llama decoder layer on (1, T, d) hidden states under a (T, T) bool attention mask."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    attn = layer.self_attn
    n_heads, n_kv = model.config.num_attention_heads, model.config.num_key_value_heads
    head_dim = attn.head_dim
    T = h.shape[1]
    x = layer.input_layernorm(h)
    q = attn.q_proj(x).view(1, T, n_heads, head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(1, T, n_kv, head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(1, T, n_kv, head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, *cos_sin)
    repeat = n_heads // n_kv
    k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])
    h = h + attn.o_proj(o.transpose(1, 2).reshape(1, T, n_heads * head_dim))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def run_layers(model: Any, layers: Sequence[Any], h: torch.Tensor, tree: PromptTree, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``layers`` of ``model`` in order over the tree's hidden states ``h`` (1, T, d).

    :param mask: the tree's attention mask, when the caller already has it.
    """
    mask = tree.attention_mask() if mask is None else mask
    cos_sin = model.model.rotary_emb(h, torch.tensor(tree.positions)[None])
    for layer in layers:
        h = layer_forward(model, layer, h, mask, cos_sin)
    return h


def supports_trees(model: Any) -> bool:
    """Whether ``model`` is a Llama-type decoder whose layers :func:`layer_forward` can run."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    return layers is not None and len(layers) > 0 and hasattr(layers[0], "self_attn") and hasattr(inner, "rotary_emb") and hasattr(layers[0].self_attn, "q_proj")
