"""Gymnasium environments of coral (installed as ``coral.envs``). Importing this package registers them.

- ``CoRAL/CollabRetrieval-v1``: the retrieval MDP with the embedded LLM (scorer "hf") and a
  DFM warm start, as the paper (continuous queries in the embedding space: the faithful variant);
  ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-v1", dataset="gift_cards")``.
- ``CoRAL/CollabRetrieval-Scripted-v1``: the same MDP with the scripted scorer and random
  embeddings: thousands of steps per second, numpy and gymnasium only (no torch).
- ``CoRAL/CandidateRetrieval-v0`` and ``CoRAL/CandidateRetrieval-Scripted-v0``
  (:mod:`coral.envs.candidates`): the same episodes, choosing among the nearest candidates by
  their features (distance, side, label, rank), optionally with a stop action.
- ``CoRAL/CollabRetrieval-Planted-v1`` and ``CoRAL/CandidateRetrieval-Planted-v0``
  (:mod:`coral.envs.planted`): a planted problem, built in memory, where greedy retrieval is
  wrong by construction.

(v0 of CollabRetrieval, before the leakage-free folds, target-relative queries and the v1
observation, is not registered any more; the Version History of :class:`CollabRetrievalEnv`
lists the changes.)

All take the keys of :class:`EnvConfig` as keywords and ``render_mode="ansi"``. Their episodes
are at most ``max_train_steps`` (10) steps long; pass ``max_episode_steps=`` to ``gymnasium.make``
when you raise it.
"""

import gymnasium

from coral.envs.batch import EpisodeBatch
from coral.envs.candidates import CandidateRetrievalEnv  # registers observe="candidates" with make_env
from coral.envs.collab_retrieval import CollabRetrievalEnv, make_env, make_scripted_env
from coral.envs.config import EnvConfig
from coral.envs.resources import EnvResources
from coral.retrieval import EvidenceIndex, LeakageError, LeakageGuard, random_embeddings

ENV_ID = "CoRAL/CollabRetrieval-v1"
SCRIPTED_ENV_ID = "CoRAL/CollabRetrieval-Scripted-v1"
CANDIDATE_ENV_ID = "CoRAL/CandidateRetrieval-v0"
SCRIPTED_CANDIDATE_ENV_ID = "CoRAL/CandidateRetrieval-Scripted-v0"
PLANTED_ENV_ID = "CoRAL/CollabRetrieval-Planted-v1"
PLANTED_CANDIDATE_ENV_ID = "CoRAL/CandidateRetrieval-Planted-v0"

_ENTRY_POINTS = {
    ENV_ID: "coral.envs.collab_retrieval:make_env",
    SCRIPTED_ENV_ID: "coral.envs.collab_retrieval:make_scripted_env",
    CANDIDATE_ENV_ID: "coral.envs.candidates:make_candidate_env",
    SCRIPTED_CANDIDATE_ENV_ID: "coral.envs.candidates:make_scripted_candidate_env",
    PLANTED_ENV_ID: "coral.envs.planted:make_planted_env",
    PLANTED_CANDIDATE_ENV_ID: "coral.envs.planted:make_planted_candidate_env",
}
for _id, _entry in _ENTRY_POINTS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry, max_episode_steps=EnvConfig.max_train_steps)

__all__ = [
    "CANDIDATE_ENV_ID",
    "ENV_ID",
    "PLANTED_CANDIDATE_ENV_ID",
    "PLANTED_ENV_ID",
    "SCRIPTED_CANDIDATE_ENV_ID",
    "SCRIPTED_ENV_ID",
    "CandidateRetrievalEnv",
    "CollabRetrievalEnv",
    "EnvConfig",
    "EnvResources",
    "EpisodeBatch",
    "EvidenceIndex",
    "LeakageError",
    "LeakageGuard",
    "make_env",
    "make_scripted_env",
    "random_embeddings",
]
