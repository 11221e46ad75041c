"""bf16 linear layers inside an fp32 model: the matrix products in bf16, everything else in fp32.

Converting the whole model to bf16 (``model.to(torch.bfloat16)``) also rounds the residual
stream, the norms and the attention softmax; on the default run's scorer that moved P(Yes) by
0.038 on average (experiments/notes/speed.md). Here only the decoder's linear layers, where
almost all the time goes, take bf16 inputs and weights (fp32 accumulation in oneDNN/AMX) and hand
fp32 back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class Bf16Linear(torch.nn.Module):
    """y = W x with W stored in bf16 and x rounded to bf16; y and the bias in fp32.

    :param linear: the fp32 ``nn.Linear`` to replace.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).float()
        return y if self.bias is None else y + self.bias


class Bf16ComputeLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose weight stays fp32 (trainable: the optimiser's copy) while its product
    runs as :class:`Bf16Linear`'s: input and weight rounded to bf16, fp32 accumulation, fp32 out.

    Layers trained this way (the alignment's top layers in bf16) train for the arithmetic that the
    bfloat16 precision scores them with; the saved weights are fp32, the same state-dict keys.
    """

    #: The weight rounded to bf16 once for several forward passes (:func:`shared_bf16_weights`), else None.
    weight_bf16: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(torch.bfloat16) if self.weight_bf16 is None else self.weight_bf16
        y = torch.nn.functional.linear(x.to(torch.bfloat16), weight).float()
        return y if self.bias is None else y + self.bias


@contextmanager
def shared_bf16_weights(module: torch.nn.Module) -> Iterator[bool]:
    """Round each :class:`Bf16ComputeLinear` weight under ``module`` to bf16 once for the whole block, not once per
    forward pass: for the forward passes between two optimiser steps, whose weights do not change. The gradient is the
    same: each backward pass goes through the shared rounding into the fp32 weight's gradient, as through its own.
    Rounding 7.7M weights per tree had been the costliest memory traffic of a training step, and it ran slower on two
    threads than on one (experiments/notes/speed.md).

    Yields whether any weight is shared: the backward passes inside the block then need ``retain_graph=True``
    (the rounding is one node of every pass's graph).
    """
    linears = [m for m in module.modules() if isinstance(m, Bf16ComputeLinear)]
    for m in linears:
        m.weight_bf16 = m.weight.to(torch.bfloat16)
    try:
        yield bool(linears)
    finally:
        for m in linears:
            m.weight_bf16 = None


def compute_linears_in_bf16(module: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``module`` by a :class:`Bf16ComputeLinear` holding the same
    parameter objects (the same state-dict keys and values); returns how many."""
    todo = [(name, m) for name, m in module.named_modules() if type(m) is torch.nn.Linear]
    for name, linear in todo:
        new = Bf16ComputeLinear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        parent, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attr, new)
    return len(todo)


def convert_linears(model) -> int:
    """Replace the decoder's ``nn.Linear`` layers by :class:`Bf16Linear` in place; returns how many."""
    decoder = model.get_decoder()
    todo = [(name, m) for name, m in decoder.named_modules() if isinstance(m, torch.nn.Linear)]
    for name, linear in todo:
        parent, _, attr = name.rpartition(".")
        setattr(decoder.get_submodule(parent) if parent else decoder, attr, Bf16Linear(linear))
    return len(todo)
