"""Building blocks shared by the CTR baselines (FuxiCTR style): each model is a few lines on top.

Every layer takes the (batch, fields) integer feature matrix or the (batch, fields, dim) field
embeddings and returns a (batch,) logit contribution or a hidden representation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """One embedding table per categorical field; maps (B, F) ids to (B, F, dim) vectors."""

    def __init__(self, vocab_sizes: Sequence[int], dim: int, init_std: float = 0.01) -> None:
        """
        :param vocab_sizes: rows of each field's table, in field order.
        :param dim: embedding size.
        :param init_std: standard deviation of the normal initialisation (0 gives zeros).
        """
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(int(n), dim) for n in vocab_sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=init_std) if init_std > 0 else nn.init.zeros_(table.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([table(x[:, f]) for f, table in enumerate(self.tables)], dim=1)


class LinearTerm(nn.Module):
    """First-order (wide) part: a learned weight per feature value (the global bias is the model's)."""

    def __init__(self, vocab_sizes: Sequence[int]) -> None:
        super().__init__()
        self.weights = FieldEmbedding(vocab_sizes, 1, init_std=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x).sum(dim=(1, 2))


def mlp(in_dim: int, hidden: Sequence[int], dropout: float, out_dim: int | None = 1) -> nn.Sequential:
    """ReLU perceptron with dropout; ``out_dim=None`` ends at the last hidden layer.

    :param in_dim: input width.
    :param hidden: widths of the hidden layers.
    :param dropout: dropout after every hidden layer.
    :param out_dim: width of a final linear layer without activation, or None for none.
    """
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class FMInteraction(nn.Module):
    """Factorization-machine second-order term: sum over field pairs of <e_i, e_j>, in O(F d)."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        square_of_sum = emb.sum(dim=1).pow(2)
        sum_of_square = emb.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=-1)


class CrossNetwork(nn.Module):
    """DCN (Wang et al. 2017) cross layers: x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.weights = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(n_layers))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases, strict=False):
            x = x0 * w(x) + b + x
        return x


class AttentionalPooling(nn.Module):
    """AFM (Xiao et al. 2017): attention-weighted sum of pairwise element-wise products, projected to a logit."""

    def __init__(self, dim: int, attention_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.ReLU(), nn.Linear(attention_dim, 1, bias=False)
        )
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(dim, 1, bias=False)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        left, right = torch.triu_indices(emb.shape[1], emb.shape[1], offset=1, device=emb.device)
        pairs = emb[:, left] * emb[:, right]  # (B, P, d)
        weights = torch.softmax(self.attention(pairs), dim=1)  # (B, P, 1)
        pooled = self.dropout((weights * pairs).sum(dim=1))
        return self.project(pooled).squeeze(-1)
