"""The label-aware reference: evidence chosen by looking at the target's label. Evaluation only.

At each round it scores, for every candidate piece of evidence, the prompt extended by that piece
and takes the piece whose P(Yes) lands nearest to the target's label y. It is greedy in the
label, so it is not an upper bound on every policy, but it shows how much room a label-free
policy has over greedy retrieval with the same scorer and candidates. It reads the one thing a
retrieval policy may never read, so:

- it refuses to act in training episodes (it cannot produce a policy's training data);
- its evaluations are flagged (:attr:`~coral.policies.evaluate.EvaluationResult.label_aware`)
  and their result rows must be named ``reference-...`` (:func:`require_reference_name`), a name
  that is no method of ``coral run`` and that the claims, which compare ``coral-...`` methods,
  never take.

Cost: (``n_nearest`` + ``n_random``) extra prompts per target and round (query mode), or one per
remaining candidate (candidates mode); run it on a few hundred pairs with the real LLM.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from coral.envs.collab_retrieval import CollabRetrievalEnv
from coral.errors import CoralError

#: Names of label-aware rows start with this; no method of ``coral run`` does.
REFERENCE_PREFIX = "reference-"


def require_reference_name(model: str) -> None:
    """Refuse to name a label-aware evaluation as a method.

    :param model: the row's model name (a scorer tag after ``@`` allowed).
    :raises CoralError: unless ``model`` starts with :data:`REFERENCE_PREFIX`.
    """
    if not model.startswith(REFERENCE_PREFIX):
        raise CoralError(
            f"a label-aware evaluation reads the targets' labels: its rows must be named {REFERENCE_PREFIX}..., not "
            f"{model!r} (it is no method and enters no claim)"
        )


def is_reference(model: str) -> bool:
    """True for rows of a label-aware reference (never a method, never in the claims)."""
    return model.startswith(REFERENCE_PREFIX)


class LabelAwarePolicy:
    """At each round, the candidate piece whose prompt's P(Yes) is nearest to the target's label.

    Candidates: query mode, the ``n_nearest`` unused observed interactions nearest to the target
    pair plus ``n_random`` uniformly drawn unused ones (seeded by (seed, episode index, round), so
    results do not depend on batching); candidates mode, the environment's unused candidates.
    Every candidate prompt of a batch of environments goes to the scorer in one call. Ties go to
    the nearer candidate.

    :param n_nearest: nearest candidates per round (query mode).
    :param n_random: random candidates per round (query mode).
    :param seed: seed of the random candidates.
    """

    name = "reference-label-aware"
    needs_embeddings = True
    #: Reads the targets' labels: evaluation only (see the module docstring).
    reads_labels = True

    def __init__(self, n_nearest: int = 50, n_random: int = 50, seed: int = 0) -> None:
        if n_nearest < 0 or n_random < 0 or n_nearest + n_random < 1:
            raise CoralError(
                f"the label-aware reference needs at least one candidate, got n_nearest={n_nearest}, "
                f"n_random={n_random}"
            )
        self.n_nearest = int(n_nearest)
        self.n_random = int(n_random)
        self.seed = int(seed)
        #: Candidate prompts this policy has had scored (on top of the environments' own prompts).
        self.prompts_scored = 0

    def candidate_rows(self, env: CollabRetrievalEnv) -> np.ndarray:
        """The evidence rows this round may take for ``env``, nearest first, then the random ones."""
        if env.config.action_mode == "candidates":
            return env.candidates[~env.used_rows[env.candidates]]
        nearest = env.index.nearest_rows(env.target_vector, env.used_rows, self.n_nearest)
        free = ~env.used_rows
        free[nearest] = False
        allowed = np.flatnonzero(free)
        rng = np.random.default_rng([self.seed, env.episode_index, env.t])
        drawn = rng.choice(allowed, size=min(self.n_random, len(allowed)), replace=False) if len(allowed) else allowed
        return np.concatenate([nearest, np.sort(drawn)]).astype(np.int64)

    def act(self, observations: np.ndarray, envs: Sequence[CollabRetrievalEnv]) -> np.ndarray:
        if any(env.config.episode_mode == "train" for env in envs):
            raise CoralError(
                "the label-aware reference is evaluation only: it reads the target's label and may not act in training "
                "episodes"
            )
        rows = [self.candidate_rows(env) for env in envs]
        prompts = [
            env.prompt_builder.build(env.user, env.item, (*env.evidence, env.index.take(int(r), env.user, env.item)))
            for env, env_rows in zip(envs, rows, strict=False)
            for r in env_rows
        ]
        scores = np.asarray(envs[0].scorer.score(prompts), dtype=np.float64) if prompts else np.zeros(0)
        self.prompts_scored += len(prompts)
        actions, start = [], 0
        for env, env_rows in zip(envs, rows, strict=False):
            errors = np.abs(scores[start : start + len(env_rows)] - env.label)
            start += len(env_rows)
            best = int(env_rows[int(np.argmin(errors))]) if len(env_rows) else -1
            actions.append(self._action(env, best))
        return np.stack(actions)

    @staticmethod
    def _action(env: CollabRetrievalEnv, row: int) -> np.ndarray:
        """The action that retrieves evidence ``row`` (-1: none left, any action)."""
        if env.config.action_mode == "candidates":
            where = np.flatnonzero(env.candidates == row)
            return np.asarray(int(where[0]) if len(where) else 0)
        target = env.index.vectors[row] if row >= 0 else env.target_vector
        return env.action_for_query(target)


__all__ = ["REFERENCE_PREFIX", "LabelAwarePolicy", "is_reference", "require_reference_name"]
