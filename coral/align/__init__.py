"""Task alignment of the small LLM scorer: LoRA or a readout head trained on the Yes/No readout.

``coral align --dataset NAME --out DIR`` trains one; ``make_scorer("aligned:DIR")`` (and so every
``--scorer aligned:DIR``) scores with it. Torch is imported only when something is trained or loaded.
"""

from __future__ import annotations

import importlib

from coral.align.config import AlignConfig

#: Public names and the module that defines each; loaded on first use so that importing
#: coral.align does not import torch.
_LAZY = {
    "load_aligned_scorer": "coral.align.artifact",
    "identity": "coral.align.artifact",
    "run_alignment": "coral.align.run",
    "evidence_diagnostics": "coral.align.diagnostics",
}

__all__ = ["AlignConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coral.align' has no attribute {name!r}")
