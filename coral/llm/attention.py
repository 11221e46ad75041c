"""Grouped-query attention on the key/value heads themselves, for scoring with a padding mask.

SmolLM2 has 9 query heads and 3 key/value heads. transformers' ``sdpa`` attention passes
``enable_gqa`` to PyTorch only when there is no attention mask (a CUDA kernel restriction);
with a mask, which every batched scoring call has (left padding), it first copies every key and
value head three times (``repeat_kv``). PyTorch's CPU kernel takes the mask and the grouped heads
together, with the same result (tested bitwise against ``sdpa``), and skips those copies: on a
2-core AMX CPU 2.1-3.1 ms instead of 5.4-6.2 ms per layer call of 8 prompts
(experiments/notes/speed.md). This registers that attention under :data:`NAME`, with
transformers' own ``sdpa`` mask, turned into a 0/-inf float mask once per forward pass (the CPU
kernel is ~20% faster with it; the same result).
"""

from __future__ import annotations

from typing import Any

import torch

#: The attention implementation name registered with transformers.
NAME = "coral_sdpa_gqa"


def sdpa_gqa_attention(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
    is_causal: bool | None = None, **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` (batch, heads, q, dim), ``key``/``value``
    (batch, kv heads, kv, dim), ``attention_mask`` as made by transformers' ``sdpa_mask``.

    :returns: (batch, q, heads, dim) attention output, and no weights.
    """
    q_length = query.shape[2]
    causal = bool(
        q_length > 1
        and attention_mask is None
        and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    )
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        attention_mask = _additive(attention_mask, query.dtype)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


_last_mask: list = [None, None]


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The boolean mask as 0 / -inf, made once per forward pass (every layer gets the same mask object)."""
    if _last_mask[0] is not mask:
        _last_mask[:] = [mask, torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, float("-inf"))]
    return _last_mask[1]


def use_gqa_attention(model: Any) -> bool:
    """Switch a transformers model from ``sdpa`` to :data:`NAME` when its attention groups heads and runs on CPU.

    :param model: a loaded transformers model (its config's ``_attn_implementation`` is changed in place).
    :returns: whether the model now uses :data:`NAME`.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    config = model.config
    grouped = getattr(config, "num_key_value_heads", None) not in (None, getattr(config, "num_attention_heads", None))
    if getattr(config, "_attn_implementation", None) != "sdpa" or not grouped or model.device.type != "cpu":
        return getattr(config, "_attn_implementation", None) == NAME
    AttentionInterface.register(NAME, sdpa_gqa_attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(NAME)
    return True
