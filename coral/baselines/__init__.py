"""CTR baselines of the paper's Table 1 (DFM, DCN, WDL, AFM, IPS, CausE) and the embedding warm start.

Torch and scikit-learn are imported on first use of a name below, so that ``coral --help``
and the sub-commands that never train a model start fast.
"""

from __future__ import annotations

import importlib

from coral.baselines.config import MODEL_NAMES, BaselineConfig, FeatureFields

#: Public names that need torch, and the module that defines each.
_LAZY = {
    "Embeddings": "coral.baselines.export",
    "load_embeddings": "coral.baselines.export",
    "save_embeddings": "coral.baselines.export",
    "warm_start_embeddings": "coral.baselines.export",
    "MODELS": "coral.baselines.models",
    "TrainedBaseline": "coral.baselines.train",
    "evaluate_baseline": "coral.baselines.train",
    "train_baseline": "coral.baselines.train",
    "run_baselines": "coral.baselines.runner",
}

__all__ = ["MODEL_NAMES", "BaselineConfig", "FeatureFields", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coral.baselines' has no attribute {name!r}")
