"""The six CTR baselines of the paper's Table 1, each a few lines on the shared layers.

Inputs are (batch, fields) integer matrices: user id, item id, then optional item side
features (see :class:`~coral.baselines.config.FeatureFields`). Outputs are logits of P(like).
The user and item embedding tables that warm-start the retrieval policy are the d-dimensional
field embeddings of the user-id and item-id fields (CausE: the treatment item table, the one
it predicts with).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coral.baselines.config import ITEM_FIELD, USER_FIELD, BaselineConfig, FeatureFields
from coral.baselines.layers import AttentionalPooling, CrossNetwork, FieldEmbedding, FMInteraction, LinearTerm, mlp
from coral.data.dataset import Interactions


@dataclass
class TrainingSet:
    """Training rows as tensors: features, labels, loss weights, and CausE's treatment flags."""

    x: torch.Tensor
    """(N, fields) int64 features."""
    y: torch.Tensor
    """(N,) float32 labels."""
    weight: torch.Tensor
    """(N,) float32 per-row loss weights (1 except for IPS)."""
    treated: torch.Tensor
    """(N,) bool: row belongs to CausE's treatment sample (False for the other models)."""

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> "TrainingSet":
        return TrainingSet(self.x[index], self.y[index], self.weight[index], self.treated[index])


class CTRModel(nn.Module):
    """Field embeddings, a global bias, weighted log loss and the training-set builder shared by all baselines.

    Subclasses implement :meth:`score`, the logit without the global bias.
    """

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(fields.vocab_sizes, config.embedding_dim)
        self.bias = nn.Parameter(torch.zeros(1))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x) + self.bias

    def init_bias(self, positive_rate: float) -> None:
        """Start the global bias at the training log-odds: with few steps per epoch (small data)
        Adam would otherwise spend most of training moving it away from 0."""
        rate = min(max(positive_rate, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            self.bias.fill_(float(np.log(rate / (1 - rate))))

    def loss(self, batch: TrainingSet) -> torch.Tensor:
        """Weighted binary cross-entropy of the batch."""
        return F.binary_cross_entropy_with_logits(self(batch.x), batch.y, weight=batch.weight)

    def user_table(self) -> torch.Tensor:
        return self.embedding.tables[USER_FIELD].weight

    def item_table(self) -> torch.Tensor:
        return self.embedding.tables[ITEM_FIELD].weight

    @classmethod
    def training_set(
        cls, fields: FeatureFields, rows: Interactions, config: BaselineConfig, rng: np.random.Generator
    ) -> TrainingSet:
        """The rows as tensors, every weight 1, nothing treated."""
        n = len(rows)
        return TrainingSet(
            torch.from_numpy(fields.encode(rows.user, rows.item)), torch.from_numpy(rows.label.astype(np.float32)),
            torch.ones(n), torch.zeros(n, dtype=torch.bool),
        )


def _flat_width(fields: FeatureFields, config: BaselineConfig) -> int:
    return len(fields.vocab_sizes) * config.embedding_dim


class DeepFM(CTRModel):
    """DeepFM (Guo et al. 2017): first-order + FM pairwise term + an MLP over all field embeddings."""

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        self.linear = LinearTerm(fields.vocab_sizes)
        self.fm = FMInteraction()
        self.deep = mlp(_flat_width(fields, config), config.hidden_units, config.dropout)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(x)
        return self.linear(x) + self.fm(emb) + self.deep(emb.flatten(1)).squeeze(-1)


class DCN(CTRModel):
    """Deep & Cross Network (Wang et al. 2017): cross layers and an MLP in parallel, then a linear head."""

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        width = _flat_width(fields, config)
        self.cross = CrossNetwork(width, config.cross_layers)
        self.deep = mlp(width, config.hidden_units, config.dropout, out_dim=None)
        self.head = nn.Linear(width + (config.hidden_units[-1] if config.hidden_units else width), 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.embedding(x).flatten(1)
        return self.head(torch.cat([self.cross(flat), self.deep(flat)], dim=1)).squeeze(-1)


class WideDeep(CTRModel):
    """Wide & Deep (Cheng et al. 2016): a linear (wide) part over the sparse fields plus an MLP (deep) part."""

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        self.wide = LinearTerm(fields.vocab_sizes)
        self.deep = mlp(_flat_width(fields, config), config.hidden_units, config.dropout)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.wide(x) + self.deep(self.embedding(x).flatten(1)).squeeze(-1)


class AFM(CTRModel):
    """Attentional FM (Xiao et al. 2017): first-order + attention-pooled pairwise products."""

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        self.linear = LinearTerm(fields.vocab_sizes)
        self.afm = AttentionalPooling(config.embedding_dim, config.attention_dim, config.dropout)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.afm(self.embedding(x))


class MatrixFactorization(CTRModel):
    """Dot product of the user and item vectors plus user and item biases; side features add to the item vector."""

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        self.id_bias = LinearTerm(fields.vocab_sizes[:2])

    def _dot(self, x: torch.Tensor, emb: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        items = item_vectors + emb[:, 2:].sum(dim=1)
        return (emb[:, USER_FIELD] * items).sum(-1) + self.id_bias(x[:, :2])

    def score(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(x)
        return self._dot(x, emb, emb[:, ITEM_FIELD])


class IPS(MatrixFactorization):
    """Matrix factorisation trained with inverse-propensity weights (Schnabel et al. 2016).

    Propensity of item i: (training count_i / max count) ** power, clipped from below; weights
    1 / propensity, normalised to mean 1 over the training rows.
    """

    @classmethod
    def training_set(
        cls, fields: FeatureFields, rows: Interactions, config: BaselineConfig, rng: np.random.Generator
    ) -> TrainingSet:
        data = super().training_set(fields, rows, config, rng)
        data.weight = torch.from_numpy(
            ips_weights(rows.item, fields.vocab_sizes[ITEM_FIELD], config.propensity_power, config.propensity_clip)
        )
        return data


def ips_weights(items: np.ndarray, n_items: int, power: float, clip: float) -> np.ndarray:
    """Per-row inverse-propensity weights from the items' counts in ``items`` (mean 1, float32).

    :param items: item index of every training row.
    :param n_items: number of items.
    :param power: propensity = (count / max count) ** power.
    :param clip: lower bound on the propensity.
    """
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    propensity = np.maximum((counts / counts.max()) ** power, clip)
    weights = 1.0 / propensity[items]
    return (weights / weights.mean()).astype(np.float32)


class CausE(MatrixFactorization):
    """Causal embeddings (Bonner & Vasile 2018), product-level: matrix factorisation whose items
    have a control embedding, trained on the logged rows, and a treatment embedding, trained on a
    near-uniform-exposure sample, tied by ``cause_lambda * ||t_i - c_i||^2``.

    No randomised-exposure data exist here, so the treatment sample is drawn from the training
    rows with probability inverse to item popularity (Bonner & Vasile's SKEW protocol does the
    same on logged data). Predictions and the exported item table use the treatment embeddings.
    """

    def __init__(self, fields: FeatureFields, config: BaselineConfig) -> None:
        super().__init__(fields, config)
        self.treatment = FieldEmbedding([fields.vocab_sizes[ITEM_FIELD]], config.embedding_dim).tables[0]
        self.cause_lambda = config.cause_lambda

    def _treated_score(self, x: torch.Tensor, treated: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(x)
        item = torch.where(treated[:, None], self.treatment(x[:, ITEM_FIELD]), emb[:, ITEM_FIELD])
        return self._dot(x, emb, item)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self._treated_score(x, torch.ones(len(x), dtype=torch.bool))

    def loss(self, batch: TrainingSet) -> torch.Tensor:
        log_loss = F.binary_cross_entropy_with_logits(self._treated_score(batch.x, batch.treated) + self.bias, batch.y)
        items = batch.x[:, ITEM_FIELD]
        gap = (self.treatment(items) - self.embedding.tables[ITEM_FIELD](items)).pow(2).sum(-1).mean()
        return log_loss + self.cause_lambda * gap

    def item_table(self) -> torch.Tensor:
        return self.treatment.weight

    @classmethod
    def training_set(
        cls, fields: FeatureFields, rows: Interactions, config: BaselineConfig, rng: np.random.Generator
    ) -> TrainingSet:
        data = super().training_set(fields, rows, config, rng)
        inverse_popularity = ips_weights(rows.item, fields.vocab_sizes[ITEM_FIELD], 1.0, 1e-12).astype(np.float64)
        n_treated = max(1, int(round(config.cause_treatment_fraction * len(rows))))
        chosen = rng.choice(len(rows), size=n_treated, replace=False, p=inverse_popularity / inverse_popularity.sum())
        data.treated[torch.from_numpy(chosen)] = True
        return data


#: Baseline name (as in the paper's Table 1, lower-case) -> model class.
MODELS: dict[str, type[CTRModel]] = {"dfm": DeepFM, "dcn": DCN, "wdl": WideDeep, "afm": AFM, "ips": IPS, "cause": CausE}

