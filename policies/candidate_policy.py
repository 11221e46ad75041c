"""A MaskablePPO policy for ``CoRAL/CandidateRetrieval-v0`` that scores every candidate with one shared network.

The environment's observation is 7 episode scalars followed by M rows of candidate features
(:data:`coral.envs.candidates.CANDIDATE_FEATURES`). A plain MLP over the flattened vector has to
learn a rule such as "prefer ratings of the target item" once per slot, from the few episodes that
put such a rating in that slot. Here one small network scores each candidate from its own row,
the episode scalars and the mean row of the neighbourhood (e.g. its share of liked pieces), so a
rule learned in one slot holds in every slot; the logits of the M candidates (and of stop, from
the scalars and the mean row) go to the masked categorical distribution, each plus a learned
per-slot bias that starts the policy at greedy retrieval (nearest first). The value function is
a plain MLP over the whole observation.
"""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

from coral.envs.candidates import CandidateRetrievalEnv


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])  # no activation after the output layer


class CandidateScorer(nn.Module):
    """SB3's ``mlp_extractor`` for candidate observations: the actor's latent is one logit per action.

    :param n_obs: the observation's size: n_scalars + n_candidates * n_features.
    :param n_actions: the candidates, plus one for stop when there is one.
    :param n_scalars: the episode scalars at the head of the observation.
    :param n_features: columns of a candidate's row.
    :param hidden: width of the hidden layers.
    :param slot_prior: initial logit step between neighbouring slots (0: a uniform first policy).
    """

    def __init__(
        self, n_obs: int, n_actions: int, n_scalars: int = CandidateRetrievalEnv.N_SCALARS,
        n_features: int = CandidateRetrievalEnv.N_FEATURES, hidden: int = 64, slot_prior: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_scalars, self.n_features = n_scalars, n_features
        self.n_candidates = (n_obs - n_scalars) // n_features
        if self.n_candidates * n_features + n_scalars != n_obs or not 0 <= n_actions - self.n_candidates <= 1:
            raise ValueError(
                f"observation of size {n_obs} and {n_actions} actions are not a candidates observation with "
                f"{n_features} features per candidate"
            )
        self.has_stop = n_actions > self.n_candidates
        context = n_scalars + n_features  # the scalars and the neighbourhood's mean row
        self.candidate = _mlp([n_features + context, hidden, hidden, 1])
        self.stop = _mlp([context, hidden, 1]) if self.has_stop else None
        self.value = nn.Sequential(_mlp([n_obs, hidden, hidden]), nn.Tanh())
        # A learned bias per slot, starting at -slot_prior * k: the first policy's argmax is the
        # nearest available candidate (greedy retrieval, as the zero query action of v1), and its
        # samples explore mostly the next nearest. (The rank column itself cannot carry this: it
        # is the same in every episode, so observation standardisation maps it to 0.)
        self.slot_bias = nn.Parameter(-slot_prior * torch.arange(self.n_candidates, dtype=torch.float32))
        self.stop_bias = nn.Parameter(torch.tensor(-slot_prior * self.n_candidates / 2)) if self.has_stop else None
        self.latent_dim_pi = n_actions
        self.latent_dim_vf = hidden

    def output_layers(self) -> list[nn.Linear]:
        """The layers that produce logits (initialised small, so that the first policy is near uniform)."""
        heads = [self.candidate] + ([self.stop] if self.stop is not None else [])
        return [head[-1] for head in heads]  # type: ignore[misc]

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        scalars = features[:, : self.n_scalars]
        rows = features[:, self.n_scalars :].reshape(-1, self.n_candidates, self.n_features)
        context = torch.cat([scalars, rows.mean(dim=1)], dim=1)
        per_row = torch.cat([rows, context.unsqueeze(1).expand(-1, self.n_candidates, -1)], dim=2)
        logits = self.candidate(per_row).squeeze(-1) + self.slot_bias
        if self.stop is not None:
            logits = torch.cat([logits, self.stop(context) + self.stop_bias], dim=1)
        return logits

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class CandidatePolicy(MaskableActorCriticPolicy):
    """MaskablePPO's actor-critic with :class:`CandidateScorer` (logits straight from it: no action layer).

    Takes MaskableActorCriticPolicy's arguments; ``hidden`` is the scorer's width.
    """

    def __init__(self, *args: Any, hidden: int = 64, **kwargs: Any) -> None:
        self.hidden = hidden
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = CandidateScorer(self.features_dim, int(self.action_space.n), hidden=self.hidden)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the scorer's latent is the logits
        for layer in self.mlp_extractor.output_layers():
            self.init_weights(layer, gain=0.01)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "hidden": self.hidden}


__all__ = ["CandidatePolicy", "CandidateScorer"]
