"""``CoRAL/CandidateRetrieval-v0``: choose evidence among the nearest candidates by what each one is."""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from coral.envs.collab_retrieval import ENV_CLASSES, CollabRetrievalEnv, make_env, with_defaults
from coral.envs.config import EnvConfig
from coral.envs.resources import EnvResources
from coral.errors import CoralError

#: The columns of a candidate's row in the observation, in order.
CANDIDATE_FEATURES = ("available", "label", "on_target_item", "by_target_user", "distance", "rank")


class CandidateRetrievalEnv(CollabRetrievalEnv):
    """Retrieve collaborative evidence by choosing among the M nearest candidates, seeing what each one is.

    ## Description

    The retrieval MDP of :class:`~coral.envs.collab_retrieval.CollabRetrievalEnv` (same episodes,
    prompts, scorer, folds and leakage guard), with the candidates action mode and an observation
    that describes the candidates instead of embedding them. In ``CoRAL/CollabRetrieval-v1`` the
    policy sees the target's 2 x d embeddings and acts in the same space: its zero action is
    greedy nearest-neighbour retrieval, and nothing in the observation tells it which piece of
    evidence would say what. Here each of the M candidates (the observed training interactions
    nearest to the target pair, nearest first) is a row of features: whether it is still
    available, its label (liked or disliked), its side (a rating of the target item by another
    user, a rating by the target user of another item, or neither), its distance to the target
    pair and its rank. A policy can so learn, for example, to prefer ratings of the target item,
    or to follow the majority label of the whole neighbourhood rather than of its nearest five.
    With ``stop_action`` it can also end the episode early, saving LLM calls.

    ## Action Space

    ``Discrete(M)`` (M = ``n_candidates``): candidate k, nearest first; with ``stop_action``
    ``Discrete(M + 1)``, action M being stop. :meth:`action_masks` hides used candidates (and
    the slots of missing ones in a tiny pool); a masked action is a no-op step with reward 0.

    ## Observation Space

    ``Box(low, high, (7 + 6 M,), float32)``: p_t, p_0, then t, the liked pieces, the disliked
    pieces, the pieces on the target item and the pieces by the target user, each divided by
    K = ``max_train_steps`` (as in v1); then one row per candidate (:data:`CANDIDATE_FEATURES`):
    available (1/0), label (+1 liked, -1 disliked), on the target item (1/0), by the target
    user (1/0), Euclidean distance to the target pair in the warm-start tables (bounded by the
    diameter of the tables' box), rank / M. Missing candidates (a pool smaller than M) are rows
    of zeros. The distances are on the tables' scale: standardise observations for learning
    (``coral train`` wraps environments in SB3's ``VecNormalize``).

    ## Rewards

    r_t = |p_{t-1} - y| - |p_t - y| - ``piece_cost`` x (1 if the step added a piece); a stop
    step gets 0. With ``piece_cost`` 0 the return telescopes to |p_0 - y| - |p_T - y|.

    ## Starting State

    As v1: ``reset`` draws an interaction (or takes ``options={"index": j}``), scores p_0 without
    evidence and finds the M candidates.

    ## Episode End

    As v1 (training: terminated once |p_t - y| < ``stop_error``, truncated after
    ``max_train_steps``; evaluation: truncated after ``rounds`` steps; all candidates used:
    truncated), and terminated by the stop action (``info["stopped"]``). A stop step is not a
    round: it is not scored and adds no entry to the episode's trace.

    ## Arguments

    As :class:`~coral.envs.collab_retrieval.CollabRetrievalEnv`, with ``action_mode="candidates"``
    and ``observe="candidates"``:
    ``gymnasium.make("coral.envs:CoRAL/CandidateRetrieval-v0", dataset="movielens_small")`` (the
    embedded LLM), ``gymnasium.make("coral.envs:CoRAL/CandidateRetrieval-Scripted-v0")`` (the
    scripted scorer), ``stop_action=True`` and ``piece_cost=`` for a policy that may stop.

    ## Version History

    * v0: first version (issue 28): candidates described by availability, label, side,
      distance and rank; optional stop action and per-piece cost.
    """

    #: Columns of a candidate's row.
    N_FEATURES = len(CANDIDATE_FEATURES)

    def __init__(
        self, config: EnvConfig | Mapping[str, Any] | None = None, resources: EnvResources | None = None,
        render_mode: str | None = None,
    ) -> None:
        cfg = EnvConfig.from_any(config)
        if cfg.action_mode != "candidates" or cfg.observe != "candidates":
            raise CoralError(
                f"CandidateRetrievalEnv needs action_mode candidates and observe candidates, got {cfg.action_mode} and "
                f"{cfg.observe}"
            )
        self._stopping = False
        #: True when the episode ended by the stop action.
        self.stopped = False
        super().__init__(cfg, resources=resources, render_mode=render_mode)
        m = cfg.n_candidates
        diameter = float(np.linalg.norm(2.0 * self._half_range))
        top = max(cfg.rounds, cfg.max_train_steps) / self.k_norm
        row_low = np.array([0.0, -1.0, 0.0, 0.0, 0.0, 0.0])
        row_high = np.array([1.0, 1.0, 1.0, 1.0, diameter, 1.0])
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([np.zeros(self.N_SCALARS), np.tile(row_low, m)]).astype(np.float32),
            high=np.concatenate([[1.0, 1.0], np.full(self.N_SCALARS - 2, top), np.tile(row_high, m)]).astype(
                np.float32
            ),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.Discrete(m + int(cfg.stop_action))

    @property
    def stop_index(self) -> int | None:
        """The stop action (None without ``stop_action``)."""
        return self.config.n_candidates if self.config.stop_action else None

    def _set_target(self, j: int) -> None:
        super()._set_target(j)
        self._stopping = False
        self.stopped = False

    def candidate_features(self) -> np.ndarray:
        """(M, 6) the candidates' rows of the observation (:data:`CANDIDATE_FEATURES`); zeros for missing ones."""
        m, rows = self.config.n_candidates, self.candidates
        n = len(rows)
        table = np.zeros((m, self.N_FEATURES), dtype=np.float64)
        pool = self.index.pool
        table[:n, 0] = ~self._used[rows]
        table[:n, 1] = np.where(pool.label[rows] == 1, 1.0, -1.0)
        table[:n, 2] = pool.item[rows] == self.item
        table[:n, 3] = pool.user[rows] == self.user
        table[:n, 4] = self.candidate_distances
        table[:n, 5] = np.arange(n) / m
        return table

    def _observation(self) -> np.ndarray:
        obs = np.concatenate([[self.p, self.p0], self._evidence_counts(), self.candidate_features().ravel()]).astype(
            np.float32
        )
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def action_masks(self) -> np.ndarray:
        """(n_candidates [+ 1],) bool: candidates not yet retrieved, and stop (always allowed) when there is one."""
        mask = super().action_masks()
        return np.append(mask, True) if self.config.stop_action else mask

    def begin_step(self, action: Any, distances: np.ndarray | None = None) -> Any:
        if not self._active:
            raise CoralError("step() called before reset() or after the episode ended")
        k = int(np.asarray(action).reshape(-1)[0])
        self._stopping = k == self.stop_index
        if self._stopping:
            self._last = {"t": self.t, "user": -1, "item": -1, "label": None, "stop": True}
            return None
        return super().begin_step(action, distances)

    def end_step(self, p: float | None) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._stopping:
            self._stopping = False
            self.stopped = True
            self._active = False
            return self._observation(), 0.0, True, False, self._info() | {"evidence": self._last, "stopped": True}
        obs, reward, terminated, truncated, info = super().end_step(p)
        if self._last["label"] is not None:
            reward -= self.config.piece_cost
        return obs, float(reward), terminated, truncated, info | {"stopped": False}


ENV_CLASSES["candidates"] = CandidateRetrievalEnv

#: The settings that make a CollabRetrieval config a CandidateRetrieval one.
CANDIDATE_KEYS = {"action_mode": "candidates", "observe": "candidates"}


def make_candidate_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, **keys: Any,
) -> CollabRetrievalEnv:
    """``CoRAL/CandidateRetrieval-v0``: :func:`~coral.envs.collab_retrieval.make_env` with the
    candidates action mode and observation by default (the embedded LLM, the DFM warm start)."""
    return make_env(with_defaults(config, CANDIDATE_KEYS), render_mode=render_mode, resources=resources, **keys)


def make_scripted_candidate_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, **keys: Any,
) -> CollabRetrievalEnv:
    """``CoRAL/CandidateRetrieval-Scripted-v0``: :func:`make_candidate_env` with the scripted scorer
    and random embeddings by default (no torch)."""
    defaults = {"scorer": "scripted", "warm_start": "none", **CANDIDATE_KEYS}
    return make_env(with_defaults(config, defaults), render_mode=render_mode, resources=resources, **keys)


__all__ = [
    "CANDIDATE_FEATURES", "CANDIDATE_KEYS", "CandidateRetrievalEnv", "make_candidate_env",
    "make_scripted_candidate_env",
]
