"""``EnvConfig``: every setting of a retrieval environment (plain values; objects go in ``EnvResources``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from coral.config import added, from_dict, require, section
from coral.data.dataset import DataConfig
from coral.evidence import ROUNDS
from coral.llm import ScorerConfig
from coral.retrieval import WarmStartConfig

QueryOrigin = Literal["target", "center"]
# : What an observation holds: the target's and the evidence's embeddings (v1), or the candidates' features
# (CandidateRetrieval).
Observe = Literal["embeddings", "candidates"]
#: How a step is rewarded (see CollabRetrievalEnv's "Rewards").
Reward = Literal["abs_error", "log_odds"]


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a retrieval environment (plain values; objects go in
    :class:`~coral.envs.resources.EnvResources`)."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, how its files are read and its preprocessing."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The LLM that scores the prompts."""
    warm: WarmStartConfig = section(WarmStartConfig, flat=True)
    """The embeddings of observations and of the evidence search, and the tail-train folds."""
    embedding_seed: int = 0
    """Seed of the warm-start CTR model or of the random embeddings."""
    split: Literal["train", "valid", "test"] = "train"
    """Where episodes come from: train (the episodes fold of the tail-item training interactions), valid or test."""
    mode: Literal["auto", "train", "eval"] = "auto"
    """train: up to max_train_steps, stopping once |p - y| < stop_error; eval: exactly `rounds` steps; auto: train on
    the train split, else eval."""
    action_mode: Literal["query", "candidates"] = "query"
    """query: continuous [a_u, a_i] mapped to evidence by nearest neighbours; candidates: Discrete over the n_candidates
    nearest observed interactions."""
    query_origin: QueryOrigin = "target"
    """Query actions. target: query = the target's [e_u, e_i] + a * query_scale * (max - min of the tables), so a = 0 is
    greedy nearest-neighbour retrieval; center: the paper's centre of the embedding box + a * half its range."""
    query_scale: float = 1.0
    """With query_origin target: the reach of a = +-1 as a multiple of each dimension's full range (1: every observed
    interaction is reachable from every target)."""
    query_match: Literal["observed", "independent"] = "observed"
    """Query actions. observed: the nearest observed training interaction to [a_u, a_i]; independent: the nearest user
    and nearest item separately (paper Eq. 6)."""
    n_candidates: int = 20
    """Number of candidate interactions in the candidates action mode."""
    observe: Observe = "embeddings"
    """embeddings: the target's and the retrieved evidence's embeddings (CollabRetrieval-v1); candidates: each
    candidate's distance, side, label and rank instead (CandidateRetrieval-v0, candidates action mode only)."""
    stop_action: bool = False
    """With observe candidates: one more action, stop, that ends the episode without adding evidence (fewer LLM
    calls)."""
    piece_cost: float = 0.0
    """Subtracted from the reward of every step that adds a piece of evidence (a price on LLM calls, for a policy that
    may stop)."""
    reward: Reward = added("abs_error")
    """abs_error (the paper): the decrease of |p - y|; log_odds: the move of the score's log-odds toward the label,
    (2y - 1) * (logit p_t - logit p_{t-1}), which does not saturate near 0 and 1 and is on the scale a ranking metric
    reads."""
    max_train_steps: int = 10
    """Retrieval steps allowed per training episode; also the K that t and the evidence counts are divided by in every
    observation."""
    stop_error: float = 0.1
    """Training episodes terminate once |p_t - y| falls below this."""
    rounds: int = ROUNDS
    """K: retrieval steps of every evaluation episode."""

    def __post_init__(self) -> None:
        for name in ("n_candidates", "max_train_steps", "rounds"):
            require(int(getattr(self, name)) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.query_scale > 0, "query_scale", f"must be > 0, got {self.query_scale}")
        require(self.piece_cost >= 0, "piece_cost", f"must be >= 0, got {self.piece_cost}")
        require(not self.stop_action or self.observe == "candidates", "stop_action", "needs observe candidates")
        require(
            self.piece_cost == 0 or self.observe == "candidates",
            "piece_cost",
            "needs observe candidates (v1 charges nothing per piece)",
        )

    @property
    def episode_mode(self) -> str:
        """train or eval, with auto resolved from the split."""
        if self.mode != "auto":
            return self.mode
        return "train" if self.split == "train" else "eval"

    @classmethod
    def from_any(cls, config: "EnvConfig | Mapping[str, Any] | None" = None, **overrides: Any) -> "EnvConfig":
        """An EnvConfig from a config, a dict of its keys (e.g. RLlib's EnvContext) or nothing, with key overrides.

        Keys are those of ``coral.config.to_dict(EnvConfig())``: the data, scorer and warm-start
        keys (``dataset``, ``k_core``, ``scorer``, ``warm_start``, ``fold_shares``, ...) sit beside the others.

        :raises CoralError: on a key that is not a setting, or a bad value.
        """
        if isinstance(config, EnvConfig):
            return from_dict(cls, overrides, where="env config", base=config) if overrides else config
        return from_dict(cls, {**dict(config or {}), **overrides}, where="env config")
