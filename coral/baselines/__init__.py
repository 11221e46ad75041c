"""CTR baselines of the paper's Table 1 (DFM, DCN, WDL, AFM, IPS, CausE) and the embedding warm start."""

from coral.baselines.config import BaselineConfig, FeatureFields
from coral.baselines.export import Embeddings, load_embeddings, save_embeddings, warm_start_embeddings
from coral.baselines.models import MODELS
from coral.baselines.train import TrainedBaseline, evaluate_baseline, train_baseline

__all__ = [
    "MODELS",
    "BaselineConfig",
    "FeatureFields",
    "TrainedBaseline",
    "train_baseline",
    "evaluate_baseline",
    "Embeddings",
    "save_embeddings",
    "load_embeddings",
    "warm_start_embeddings",
]
