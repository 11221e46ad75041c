"""Batch-invariant int8 linear layers: per-token activations, per-channel weights, SmoothQuant.

torch's dynamic quantisation (``torch.ao.quantization.quantize_dynamic``, and ONNX Runtime's)
quantises each call's activations with ONE scale for the whole batch: a prompt's P(Yes) then
depends on the other prompts that share its forward (measured: |dp| up to 0.39-0.53 between a
prompt scored alone and in a batch, no correlation with fp32). It is not used.

:class:`Int8Linear` keeps fbgemm's int8 kernel but feeds it rows scaled to [-1, 1] (one scale per
token, applied back to the output) and quantised with a fixed scale, so every token's output is
independent of the other rows (int32 accumulation is exact: bitwise equal alone and batched).
Weights are int8 per output channel. SmoothQuant factors (per input channel, from a few
calibration prompts) move activation outliers into the weights before quantising.

Activations use 7 bits on CPUs without VNNI: AVX2's ``vpmaddubsw`` adds pairs of u8 x s8
products in saturating int16, and 8-bit activations measurably saturate there; with VNNI
(``vpdpbusd``, int32 accumulation) 8 bits are safe.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

#: (scale, zero point) of the fixed quint8 activation quantiser, by activation bits: the rows
#: are pre-scaled to [-1, 1], so one fixed quantiser fits every row.
_ACT_QPARAMS = {7: (1.0 / 63.5, 64), 8: (1.0 / 127.5, 128)}
#: MLP down-projections stay fp32: their input (silu(gate) * up) has the heaviest outliers, and
#: quantising them doubled the error on the embedded model.
DEFAULT_SKIP = ("down_proj",)
#: SmoothQuant migration strength.
DEFAULT_ALPHA = 0.5


def activation_bits(flags: frozenset[str]) -> int:
    """8 where the CPU accumulates u8 x s8 products in int32 (AVX512-VNNI or AVX-VNNI), else 7.

    :param flags: CPU feature flags (``/proc/cpuinfo``).
    """
    return 8 if ("avx512_vnni" in flags or "avx_vnni" in flags) else 7


class Int8Linear(torch.nn.Module):
    """y = W x with int8 weights (per output channel) and per-token int8 activations.

    :param linear: the fp32 ``nn.Linear`` to replace (its bias, if any, stays fp32).
    :param smooth: optional per-input-channel factors s: W is quantised as W * s and x divided by s.
    :param bits: activation bits, 7 or 8 (:func:`activation_bits`).
    """

    def __init__(self, linear: torch.nn.Linear, smooth: torch.Tensor | None = None, bits: int = 7) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        if smooth is not None:
            weight = weight * smooth[None, :]
            self.register_buffer("inv_smooth", (1.0 / smooth).float())
        else:
            self.inv_smooth = None
        scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            # torch 2.13 marks its quantized tensor types deprecated; fbgemm's prepacked linear
            # still needs one to build from. Pinned torch: revisit when it goes.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bits = bits
        self._x_scale, self._x_zero = _ACT_QPARAMS[bits]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        if self.inv_smooth is not None:
            x = x * self.inv_smooth
        row_scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        y = (
            torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
                x / row_scale, self._x_scale, self._x_zero, self._packed
            )
            * row_scale
        )
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        smooth = self.inv_smooth is not None
        return f"in={self.in_features}, out={self.out_features}, smooth={smooth}, act_bits={self.bits}"


def _decoder_linears(model) -> list[tuple[str, torch.nn.Linear]]:
    return [(name, m) for name, m in model.get_decoder().named_modules() if isinstance(m, torch.nn.Linear)]


@torch.inference_mode()
def activation_absmax(model, batches: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of every decoder linear layer over calibration token batches.

    :param model: an fp32 causal LM.
    :param batches: (1, T) token id tensors (real prompts).
    """
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in _decoder_linears(model):
        def hook(_mod, inputs, _out, name=name):
            m = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0)
            stats[name] = torch.maximum(stats[name], m) if name in stats else m
        hooks.append(module.register_forward_hook(hook))
    try:
        for ids in batches:
            model.get_decoder()(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return stats


def quantize_int8(
    model, bits: int, absmax: dict[str, torch.Tensor] | None = None, alpha: float = DEFAULT_ALPHA,
    skip: tuple[str, ...] = DEFAULT_SKIP,
) -> int:
    """Replace the decoder's linear layers by :class:`Int8Linear` in place; returns how many.

    :param model: an fp32 causal LM.
    :param bits: activation bits (:func:`activation_bits`).
    :param absmax: calibration statistics (:func:`activation_absmax`) for SmoothQuant; None = no smoothing.
    :param alpha: SmoothQuant strength: s = max|x|^alpha / max|W|^(1-alpha) per input channel.
    :param skip: name suffixes of layers kept fp32.
    """
    decoder = model.get_decoder()
    todo = [(name, m) for name, m in _decoder_linears(model) if not (skip and name.endswith(skip))]
    for name, linear in todo:
        smooth = None
        if absmax is not None and name in absmax:
            wmax = linear.weight.detach().abs().amax(dim=0).clamp_min(1e-5)
            smooth = (absmax[name].clamp_min(1e-5) ** alpha / wmax ** (1 - alpha)).clamp(1e-2, 1e2)
        parent_name, _, attr = name.rpartition(".")
        setattr(decoder.get_submodule(parent_name) if parent_name else decoder, attr, Int8Linear(linear, smooth, bits))
    return len(todo)


def int8_bits(model) -> int | None:
    """The activation bits of the model's :class:`Int8Linear` layers; None when it has none."""
    for module in model.modules():
        if isinstance(module, Int8Linear):
            return module.bits
    return None
