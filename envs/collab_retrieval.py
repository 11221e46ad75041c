"""``CoRAL/CollabRetrieval-v0``: retrieving collaborative evidence for an LLM as an MDP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Protocol, Sequence

import gymnasium as gym
import numpy as np

from coral.config import from_dict, require, section
from coral.data.dataset import DataConfig
from coral.errors import CoralError
from coral.evidence import ROUNDS, Evidence
from coral.llm import ScorerConfig
from coral.retrieval import EmbeddingTables, EvidenceIndex, WarmStartConfig

from coral.envs.resources import EnvResources, resolve_dataset, resolve_embeddings, resolve_index, resolve_scorer

if TYPE_CHECKING:
    from coral.llm.base import Prompt, Scorer


class PromptBuilderLike(Protocol):
    """What the environment needs from a prompt builder (``coral.llm.prompt.PromptBuilder``)."""

    def build(self, user: int, item: int, evidence: Sequence[Evidence]) -> "Prompt": ...


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a retrieval environment (plain values; objects go in :class:`~coral.envs.resources.EnvResources`)."""

    data: DataConfig = section(DataConfig, flat=True)
    """The dataset, its layout and its preprocessing."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The LLM that scores the prompts."""
    warm: WarmStartConfig = section(WarmStartConfig, flat=True)
    """The embeddings of observations and of the evidence search."""
    embedding_seed: int = 0
    """Seed of the warm-start CTR model or of the random embeddings."""
    split: Literal["train", "valid", "test"] = "train"
    """Where episodes come from: train (the tail-item training interactions), valid or test."""
    mode: Literal["auto", "train", "eval"] = "auto"
    """train: up to max_train_steps, stopping once |p - y| < stop_error; eval: exactly `rounds` steps; auto: train on the train split, else eval."""
    action_mode: Literal["query", "candidates"] = "query"
    """query: continuous [a_u, a_i] mapped to evidence by nearest neighbours; candidates: Discrete over the n_candidates nearest observed interactions."""
    query_match: Literal["observed", "independent"] = "observed"
    """Query actions. observed: the nearest observed training interaction to [a_u, a_i]; independent: the nearest user and nearest item separately (paper Eq. 6)."""
    n_candidates: int = 20
    """Number of candidate interactions in the candidates action mode."""
    max_train_steps: int = 10
    """Retrieval steps allowed per training episode."""
    stop_error: float = 0.1
    """Training episodes terminate once |p_t - y| falls below this."""
    rounds: int = ROUNDS
    """K: retrieval steps of every evaluation episode."""

    def __post_init__(self) -> None:
        for name in ("n_candidates", "max_train_steps", "rounds"):
            require(int(getattr(self, name)) >= 1, name, f"must be >= 1, got {getattr(self, name)}")

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
        keys (``dataset``, ``k_core``, ``scorer``, ``warm_start``, ...) sit beside the others.

        :raises CoralError: on a key that is not a setting, or a bad value.
        """
        if isinstance(config, EnvConfig):
            return from_dict(cls, overrides, where="env config", base=config) if overrides else config
        return from_dict(cls, {**dict(config or {}), **overrides}, where="env config")


def score_prompts(scorer: "Scorer", prompts: Sequence["Prompt | None"]) -> list[float | None]:
    """Score the prompts that are not None in one scorer call; None stays None (nothing changed).

    :param scorer: the scorer.
    :param prompts: one entry per environment.
    """
    todo = [j for j, p in enumerate(prompts) if p is not None]
    out: list[float | None] = [None] * len(prompts)
    if todo:
        scores = scorer.score([prompts[j] for j in todo])
        for j, p in zip(todo, scores):
            out[j] = float(p)
    return out


class CollabRetrievalEnv(gym.Env):
    """Retrieve collaborative evidence, one interaction per step, to correct an LLM's P(Yes).

    ## Description

    CoRAL (Wu et al., KDD 2024) asks a frozen LLM whether a user would like a long-tail item and
    lets a policy add collaborative evidence to the prompt: observed training interactions
    ("the item X is liked/disliked by the users ..."). An episode is one (user, item, label)
    interaction, drawn with the environment's seeded generator from the chosen split's
    tail-item interactions. Each step retrieves one interaction, extends the prompt and scores
    it again; the reward is the decrease of the LLM's absolute error.

    ## Action Space

    ``action_mode="query"`` (the paper): ``Box(-1, 1, (2d,), float32)``, a query [a_u, a_i]
    rescaled per dimension onto the range of the user and item embeddings
    (``center + a * half_range``). With ``query_match="observed"`` (default) the retrieved
    evidence is the observed training interaction whose [user, item] embedding is nearest to
    the query and not yet retrieved in this episode, so every step adds a real like/dislike.
    With ``query_match="independent"`` (the paper's Eq. 6) the nearest user and the nearest item
    are found separately; if that pair is an observed training interaction not yet retrieved,
    it is added with its label, otherwise the step is "unobserved": the prompt stays as it was
    (an empty line), p_t = p_{t-1} with no LLM call, reward 0, and only the state's means move.

    ``action_mode="candidates"``: ``Discrete(M)`` over the M observed training interactions
    nearest to the target pair (nearest first). :meth:`action_masks` hides used candidates
    (for sb3-contrib's MaskablePPO); a masked action is a no-op step with reward 0.

    ## Observation Space

    ``Box(low, high, (4d + 2,), float32)``: the target user's and item's embeddings, the mean
    embedding of the users and of the items retrieved so far (zeros before any), p_t, and t / K
    (K = the episode's step limit). The bounds are the embedding tables' per-dimension ranges
    (zero is clipped into them before any retrieval) and [0, 1] for p_t and t / K.

    ## Rewards

    r_t = |p_{t-1} - y| - |p_t - y|, so the undiscounted return is |p_0 - y| - |p_T - y|.

    ## Starting State

    ``reset`` draws an interaction (or takes ``options={"index": j}``, row j of the split),
    builds the prompt without collaborative evidence and scores p_0.

    ## Episode End

    Training mode (``split="train"``): terminated when |p_t - y| < ``stop_error`` (0.1),
    truncated after ``max_train_steps`` (10). Evaluation mode (valid/test): truncated after
    exactly ``rounds`` (5) steps; never terminated. Running out of evidence (all candidates
    used) also truncates.

    ## Arguments

    One :class:`EnvConfig`, a dict of its keys, or its keys as keywords, and optionally
    :class:`~coral.envs.resources.EnvResources` (a loaded dataset, a scorer object, embedding
    tables, a prompt builder) that replace the config's names:
    ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-v0", dataset="gift_cards")`` uses the
    embedded LLM (scorer "hf") and the DFM warm start;
    ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-Scripted-v0")`` the scripted scorer and
    random embeddings (no torch).

    ## Rendering

    ``render_mode="ansi"``: :meth:`render` returns the current prompt's evidence block as text.

    ## Leakage

    Evidence comes from the training split only and passes the leakage guard
    (:class:`coral.retrieval.LeakageGuard`): the target interaction and every validation/test
    interaction are refused with an error.

    ## Version History

    * v0: first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: EnvConfig | Mapping[str, Any] | None = None, resources: EnvResources | None = None, render_mode: str | None = None) -> None:
        super().__init__()
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise CoralError(f"render_mode must be one of {', '.join(self.metadata['render_modes'])} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = EnvConfig.from_any(config)
        self.resources = resources or EnvResources()
        cfg, res = self.config, self.resources
        self.dataset = res.dataset if res.dataset is not None else resolve_dataset(cfg.data)
        self.scorer = res.scorer if res.scorer is not None else resolve_scorer(cfg.scorer)
        #: The user and item embedding tables (observations and evidence search).
        self.embeddings: EmbeddingTables = res.embeddings if res.embeddings is not None else resolve_embeddings(self.dataset, cfg.warm, seed=cfg.embedding_seed)
        self.index: EvidenceIndex = resolve_index(self.dataset, self.embeddings)
        self.episodes = self.dataset.split("tail_train" if cfg.split == "train" else cfg.split)
        if len(self.episodes) == 0:
            raise CoralError(f"dataset {self.dataset.name!r}: split {cfg.split!r} has no tail interactions to draw episodes from")
        if res.prompt_builder is None:
            from coral.llm.prompt import PromptBuilder, PromptConfig

            # The scorer's tokenizer (if it has one) supplies the chat template the LLM expects.
            tokenizer = getattr(self.scorer, "tokenizer", None)
            self.prompt_builder: PromptBuilderLike = PromptBuilder(self.dataset, PromptConfig(), tokenizer=tokenizer)
        else:
            self.prompt_builder = res.prompt_builder

        d = self.index.dim
        self.dim = d
        training = cfg.episode_mode == "train"
        self.max_steps = cfg.max_train_steps if training else cfg.rounds
        self.stop_error: float | None = cfg.stop_error if training else None
        # Bounds: embeddings and their means lie within the tables' ranges; p and t/K in [0, 1].
        u_lo, u_hi = self.index.user_emb.min(axis=0), self.index.user_emb.max(axis=0)
        i_lo, i_hi = self.index.item_emb.min(axis=0), self.index.item_emb.max(axis=0)
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([u_lo, i_lo, u_lo, i_lo, [0.0, 0.0]]).astype(np.float32),
            high=np.concatenate([u_hi, i_hi, u_hi, i_hi, [1.0, 1.0]]).astype(np.float32),
            dtype=np.float32,
        )
        if cfg.action_mode == "query":
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2 * d,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.Discrete(cfg.n_candidates)
        lo = np.concatenate([u_lo, i_lo]).astype(np.float64)
        hi = np.concatenate([u_hi, i_hi]).astype(np.float64)
        self._center, self._half_range = (hi + lo) / 2.0, (hi - lo) / 2.0

        #: Prompts this environment has had scored (its share of LLM calls).
        self.prompts_scored = 0
        #: The prompt of the current state (None before the first reset).
        self.prompt: "Prompt | None" = None
        self._used = np.zeros(len(self.index), dtype=bool)
        self._active = False
        self._set_target(0)

    # ---- episode state ---------------------------------------------------------------------
    def _set_target(self, j: int) -> None:
        self.episode_index = int(j)
        self.user = int(self.episodes.user[j])
        self.item = int(self.episodes.item[j])
        self.label = int(self.episodes.label[j])
        self.t = 0
        self.p = self.p0 = float("nan")
        self.evidence: list[Evidence] = []
        self.trace: list[dict[str, Any]] = []
        self._sum_users = np.zeros(self.dim, dtype=np.float64)
        self._sum_items = np.zeros(self.dim, dtype=np.float64)
        self._n_retrieved = 0
        self._used[:] = False
        target_row = self.index.row_of(self.user, self.item)
        if target_row >= 0:
            self._used[target_row] = True  # the target is never retrievable
        self.candidates = np.zeros(0, dtype=np.int64)
        if self.config.action_mode == "candidates":
            self.candidates = self.index.nearest_rows(self.index.pair_vector(self.user, self.item), self._used, self.config.n_candidates)

    def _observation(self) -> np.ndarray:
        n = max(self._n_retrieved, 1)
        obs = np.concatenate(
            [
                self.index.user_emb[self.user],
                self.index.item_emb[self.item],
                self._sum_users / n,
                self._sum_items / n,
                [self.p, self.t / self.max_steps],
            ]
        ).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _info(self) -> dict[str, Any]:
        return {"p": self.p, "label": self.label, "abs_error": abs(self.p - self.label), "t": self.t, "episode_index": self.episode_index}

    @property
    def active(self) -> bool:
        """True between a reset and the end of its episode."""
        return self._active

    @property
    def used_rows(self) -> np.ndarray:
        """(len(index),) bool: evidence rows that may not be retrieved now (the target, already retrieved)."""
        return self._used

    def action_masks(self) -> np.ndarray:
        """(n_candidates,) bool: True for candidates not yet retrieved in this episode (candidates mode)."""
        if self.config.action_mode != "candidates":
            raise CoralError("action_masks() exists only in the candidates action mode")
        mask = np.zeros(self.config.n_candidates, dtype=bool)
        mask[: len(self.candidates)] = ~self._used[self.candidates]
        return mask

    def query_vector(self, action: np.ndarray) -> np.ndarray:
        """The embedding-space query (2d,) of a normalised query action in [-1, 1]^(2d)."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return self._center + a * self._half_range

    def action_for_query(self, query: np.ndarray) -> np.ndarray:
        """The normalised action whose query is ``query`` (clipped to the embedding range)."""
        a = (np.asarray(query, dtype=np.float64) - self._center) / np.where(self._half_range > 0, self._half_range, 1.0)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    # ---- two-phase reset and step, so that a vector of environments can batch the scoring ----
    def begin_reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> "Prompt":
        """Start an episode; returns the evidence-free prompt whose score is p_0."""
        super().reset(seed=seed)
        if options and "index" in options:
            j = int(options["index"])
            if not 0 <= j < len(self.episodes):
                raise CoralError(f"episode index {j} out of range: split {self.config.split!r} has {len(self.episodes)} interactions")
        else:
            j = int(self.np_random.integers(len(self.episodes)))
        self._set_target(j)
        self._active = True
        self.prompt = self.prompt_builder.build(self.user, self.item, ())
        return self.prompt

    def end_reset(self, p0: float) -> tuple[np.ndarray, dict[str, Any]]:
        """Finish a reset with the score of :meth:`begin_reset`'s prompt."""
        self.prompts_scored += 1
        self.p = self.p0 = float(p0)
        self.trace.append({"t": 0, "p": self.p})
        return self._observation(), self._info()

    def begin_step(self, action: Any) -> "Prompt | None":
        """Retrieve evidence for ``action``; returns the extended prompt, or None if nothing was added."""
        if not self._active:
            raise CoralError("step() called before reset() or after the episode ended")
        self.t += 1
        row, ret_user, ret_item = -1, -1, -1
        if self.config.action_mode == "candidates":
            k = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
            if 0 <= k < len(self.candidates) and not self._used[self.candidates[k]]:
                row = int(self.candidates[k])
        else:
            query = self.query_vector(action)
            if self.config.query_match == "observed":
                rows = self.index.nearest_rows(query, self._used, 1)
                row = int(rows[0]) if len(rows) else -1
            else:
                ret_user, ret_item = self.index.nearest_user(query[: self.dim]), self.index.nearest_item(query[self.dim :])
                found = self.index.row_of(ret_user, ret_item)
                row = found if found >= 0 and not self._used[found] else -1
        ev: Evidence | None = None
        if row >= 0:
            ev = self.index.take(row, self.user, self.item)
            self._used[row] = True
            self.evidence.append(ev)
            ret_user, ret_item = ev.user, ev.item
        if ret_user >= 0:
            self._sum_users += self.index.user_emb[ret_user]
            self._sum_items += self.index.item_emb[ret_item]
            self._n_retrieved += 1
        self._last = {"t": self.t, "user": ret_user, "item": ret_item, "label": None if ev is None else ev.label}
        if ev is None:
            return None
        self.prompt = self.prompt_builder.build(self.user, self.item, tuple(self.evidence))
        return self.prompt

    def end_step(self, p: float | None) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Finish a step with the new prompt's score (None: the prompt did not change)."""
        prev = self.p
        if p is not None:
            self.prompts_scored += 1
            self.p = float(p)
        reward = abs(prev - self.label) - abs(self.p - self.label)
        self.trace.append({**self._last, "p": self.p})
        terminated = self.stop_error is not None and abs(self.p - self.label) < self.stop_error
        exhausted = self._exhausted()
        truncated = not terminated and (self.t >= self.max_steps or exhausted)
        self._active = not (terminated or truncated)
        info = self._info() | {"evidence": self._last}
        return self._observation(), float(reward), bool(terminated), bool(truncated), info

    def _exhausted(self) -> bool:
        if self.config.action_mode == "candidates":
            return bool(self._used[self.candidates].all())
        return bool(self._used.all())

    # ---- the Gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        prompt = self.begin_reset(seed=seed, options=options)
        return self.end_reset(score_prompts(self.scorer, [prompt])[0])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        prompt = self.begin_step(action)
        return self.end_step(score_prompts(self.scorer, [prompt])[0])

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the current prompt's evidence block (its segments between
        the fixed part and the tail, one per piece of evidence; "" before the first piece), or the whole prompt text for
        prompt orders that do not keep evidence in segments of their own."""
        if self.render_mode != "ansi":
            return None
        if self.prompt is None:
            return ""
        segments, n = self.prompt.segments, len(self.evidence)
        if n == 0:
            return ""
        if len(segments) >= n + 2:  # ...[one segment per piece][tail]
            return "".join(segments[-(n + 1):-1])
        return self.prompt.text


def make_env(config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None, resources: EnvResources | None = None, **keys: Any) -> CollabRetrievalEnv:
    """Build a :class:`CollabRetrievalEnv`: the one factory for gymnasium.make, SB3 and RLlib.

    :param config: an :class:`EnvConfig`, a dict of its keys (RLlib's ``EnvContext``), or None.
    :param render_mode: None or "ansi" (SB3's ``make_vec_env`` passes "rgb_array" through
        ``gymnasium.make``, which is taken as None: there are no pictures to draw).
    :param resources: objects replacing the config's names (a loaded dataset, a scorer, ...).
    :param keys: :class:`EnvConfig` keys overriding ``config`` (what ``gymnasium.make`` passes).
    """
    return CollabRetrievalEnv(EnvConfig.from_any(config, **keys), resources=resources, render_mode=None if render_mode == "rgb_array" else render_mode)


def make_scripted_env(config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None, resources: EnvResources | None = None, **keys: Any) -> CollabRetrievalEnv:
    """:func:`make_env` whose defaults are the scripted scorer and random embeddings: cheap, and without torch.

    An :class:`EnvConfig` object is taken as it is; in a dict or keywords, ``scorer`` and
    ``warm_start`` given explicitly (e.g. ``scorer="scripted:weight=2"``) still apply.
    """
    if not isinstance(config, EnvConfig):
        config = {"scorer": "scripted", "warm_start": "none", **dict(config or {})}
    return make_env(config, render_mode=render_mode, resources=resources, **keys)
