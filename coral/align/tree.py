"""A target's prompts packed as one token tree, and Llama decoder layers run on it.

For one target, the prompts with 0..K pieces of several evidence sequences share their prefix, and
the prompt with j pieces shares everything but its tail with the one with j+1 pieces. The tree
holds each shared token once; an attention mask lets every token see exactly its own prompt's
earlier tokens (its ancestors), and position ids are each token's position in its own prompt. One
forward pass over the tree gives, at the last token of every tail, the hidden state that scoring
each prompt on its own gives (what prefix key/value reuse gives at scoring time): training sees
the scorer's computation, at a fraction of the tokens.

The layers' own modules are called as they are, so the same function runs the frozen trunk
(inference mode) and the trainable top layers (autograd). :class:`FrozenLayers` runs the frozen
trunk faster (the trunk pass is half of the alignment's time): q/k/v and gate/up as one product
each, optionally in bf16 linears (fp32 accumulation, as :mod:`coral.llm.bf16` scores).
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


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """A (T, T) bool attention mask as 0 / -inf floats: PyTorch's CPU attention is faster with it
    (issue 14 measured ~20%), with the same result (tested bitwise)."""
    return torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of (1, heads, T, dim) queries on (1, kv heads, T, dim) keys and values under a (T, T) mask.

    Without autograd the grouped heads go to PyTorch as they are (no copies; bitwise the same
    output). With autograd each key/value head is repeated first, as before: the gradient of a
    grouped head sums its query heads in another order (1e-7 apart), and the fp32 training stays
    bitwise what it was.
    """
    if torch.is_grad_enabled() and k.requires_grad:
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], enable_gqa=q.shape[1] != k.shape[1])


def layer_forward(
    model: Any, layer: Any, h: torch.Tensor, mask: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """One Llama decoder layer on (1, T, d) hidden states under a (T, T) attention mask (bool, or
    0/-inf floats: :func:`additive_mask`).

    :param rows: compute the output only at these token indices (every token's keys and values
        are still computed): (1, len(rows), d). The last layer's output is read at a tree's tails
        only (9 of ~290 tokens), so its attention output, o_proj and MLP (84% of its products)
        need only those rows; each row's arithmetic is the one it has in the whole layer.
    """
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
    if rows is not None:
        q, mask, h = q[:, :, rows], mask[rows], h[:, rows]
    o = _attention(q, k, v, mask)
    h = h + attn.o_proj(o.transpose(1, 2).reshape(1, q.shape[2], n_heads * head_dim))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def run_layers(
    model: Any, layers: Sequence[Any], h: torch.Tensor, tree: PromptTree, mask: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``layers`` of ``model`` in order over the tree's hidden states ``h`` (1, T, d).

    :param layers: decoder layers, or :class:`FrozenLayer` objects (called the same way).
    :param mask: the tree's attention mask, when the caller already has it (bool or additive).
    :param rows: the last layer's output only at these tokens (:func:`layer_forward`): (1, len(rows), d).
    """
    mask = additive_mask(tree.attention_mask()) if mask is None else mask
    cos_sin = model.model.rotary_emb(h, torch.tensor(tree.positions)[None])
    for j, layer in enumerate(layers):
        if isinstance(layer, FrozenLayer):
            h = layer(model, h, mask, cos_sin)
        else:
            h = layer_forward(model, layer, h, mask, cos_sin, rows if j == len(layers) - 1 else None)
    return h


#: The modules of a decoder layer, and of its attention, that the tree path computes (Llama's).
LLAMA_LAYER = frozenset({"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"})
LLAMA_ATTENTION = frozenset({"q_proj", "k_proj", "v_proj", "o_proj"})


class FrozenLayer:
    """A decoder layer for inference only: q/k/v in one product and gate/up in one, in ``dtype``.

    One product instead of three (two) reads the input once and, in bf16, converts it once; in
    fp32 the output is bitwise the layer's own (tested). bf16: the products' inputs and weights in
    bf16, fp32 accumulation and fp32 out, as :class:`coral.llm.bf16.Bf16Linear` scores.

    :param layer: a Llama-type decoder layer (Llama, or Qwen2 with its q/k/v biases); its weights are
        copied, fused; the layer is not changed.
    :param dtype: torch.float32 or torch.bfloat16.
    """

    def __init__(self, layer: Any, dtype: torch.dtype) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        with torch.no_grad():
            def weight(*linears: Any) -> torch.Tensor:
                return torch.cat([m.weight.detach() for m in linears]).to(dtype).contiguous()

            def bias(*linears: Any) -> torch.Tensor | None:
                # A fused product gets one bias: zeros where a part has none (Qwen2: q/k/v do, o does not).
                if all(m.bias is None for m in linears):
                    return None
                parts = [m.bias.detach() if m.bias is not None else torch.zeros(m.out_features) for m in linears]
                return torch.cat(parts).float().contiguous()

            qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
            self.qkv, self.qkv_bias = weight(*qkv), bias(*qkv)
            self.gate_up, self.gate_up_bias = weight(mlp.gate_proj, mlp.up_proj), bias(mlp.gate_proj, mlp.up_proj)
            self.o, self.o_bias = weight(attn.o_proj), bias(attn.o_proj)
            self.down, self.down_bias = weight(mlp.down_proj), bias(mlp.down_proj)
        self.splits = [attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features]
        self.input_norm, self.post_norm, self.head_dim, self.dtype = (
            layer.input_layernorm, layer.post_attention_layernorm, attn.head_dim, dtype,
        )
        self.act = mlp.act_fn

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.dtype == torch.float32:
            return F.linear(x, weight, bias)
        out = F.linear(x.to(self.dtype), weight).float()
        return out if bias is None else out + bias

    def __call__(
        self, model: Any, h: torch.Tensor, mask: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        T, d = h.shape[1], self.head_dim
        q, k, v = self._linear(self.input_norm(h), self.qkv, self.qkv_bias).split(self.splits, dim=-1)
        q = q.view(1, T, -1, d).transpose(1, 2)
        k = k.view(1, T, -1, d).transpose(1, 2)
        v = v.view(1, T, -1, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *cos_sin)
        o = _attention(q, k, v, mask)
        h = h + self._linear(o.transpose(1, 2).reshape(1, T, -1), self.o, self.o_bias)
        gate, up = self._linear(self.post_norm(h), self.gate_up, self.gate_up_bias).chunk(2, dim=-1)
        return h + self._linear(self.act(gate) * up, self.down, self.down_bias)


def supports_trees(model: Any) -> bool:
    """Whether ``model``'s decoder layers are exactly what :func:`layer_forward` and :class:`FrozenLayer` compute:
    a Llama-type layer (Llama, SmolLM2, Qwen2), full causal attention scaled by 1/sqrt(head_dim). Layers with more
    modules (Gemma3's extra norms, Qwen3's q/k norms) or a sliding window are refused, not computed wrongly."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or len(layers) == 0 or not hasattr(inner, "rotary_emb"):
        return False
    attn = getattr(layers[0], "self_attn", None)
    if attn is None or not hasattr(attn, "head_dim"):
        return False
    return (
        {name for name, _ in layers[0].named_children()} == LLAMA_LAYER
        and {name for name, _ in attn.named_children()} == LLAMA_ATTENTION
        and getattr(attn, "sliding_window", None) is None
        and abs(float(getattr(attn, "scaling", attn.head_dim**-0.5)) - attn.head_dim**-0.5) < 1e-9
    )
