"""Task alignment of the small LLM scorer: LoRA or a readout head trained on the Yes/No readout.

``coral align --dataset NAME --out DIR`` trains one; ``make_scorer("aligned:DIR")`` (and so every
``--scorer aligned:DIR``) scores with it. Torch is imported only when something is trained or loaded.
"""

from __future__ import annotations

import importlib

from coral.align.config import AlignConfig
from coral.align.run import run_alignment
from coral.llm.aligned import identity, load_aligned_scorer

#: Names loaded on first use (scikit-learn and scipy come with the metrics).
_LAZY = {"evidence_diagnostics": "coral.align.diagnostics"}

__all__ = ["AlignConfig", "identity", "load_aligned_scorer", "run_alignment", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coral.align' has no attribute {name!r}")
