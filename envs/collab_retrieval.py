"""``CoRAL/CollabRetrieval-v1``: retrieving collaborative evidence for an LLM as an MDP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

import gymnasium as gym
import numpy as np

from coral.data.folds import fold_interactions
from coral.envs.config import EnvConfig
from coral.envs.resources import EnvResources, resolve_dataset, resolve_embeddings, resolve_index, resolve_scorer
from coral.errors import CoralError
from coral.evidence import Evidence
from coral.retrieval import EmbeddingTables, EvidenceIndex

if TYPE_CHECKING:
    from coral.llm.base import Prompt, Scorer


class PromptBuilderLike(Protocol):
    """What the environment needs from a prompt builder (``coral.llm.prompt.PromptBuilder``)."""

    def build(self, user: int, item: int, evidence: Sequence[Evidence]) -> "Prompt": ...


def score_prompts(scorer: "Scorer", prompts: Sequence["Prompt | None"]) -> list[float | None]:
    """Score the prompts that are not None in one scorer call; None stays None (nothing changed).

    :param scorer: the scorer.
    :param prompts: one entry per environment.
    """
    todo = [j for j, p in enumerate(prompts) if p is not None]
    out: list[float | None] = [None] * len(prompts)
    if todo:
        scores = scorer.score([prompts[j] for j in todo])
        for j, p in zip(todo, scores, strict=False):
            out[j] = float(p)
    return out


#: Scores are clipped to [LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP] before the log-odds reward reads them.
LOG_ODDS_CLIP = 1e-4


def step_reward(p_before: float, p_after: float, label: int, reward: str = "abs_error") -> float:
    """One step's reward: the decrease of |p - y| (``abs_error``) or the log-odds move toward y (``log_odds``).

    :param p_before: p_{t-1}.
    :param p_after: p_t.
    :param label: y in {0, 1}.
    :param reward: ``EnvConfig.reward``.
    """
    if reward == "log_odds":
        before, after = (float(np.clip(p, LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP)) for p in (p_before, p_after))
        move = np.log(after / (1 - after)) - np.log(before / (1 - before))
        return float(move if label == 1 else -move)
    return abs(p_before - label) - abs(p_after - label)


class CollabRetrievalEnv(gym.Env):
    """Retrieve collaborative evidence, one interaction per step, to correct an LLM's P(Yes).

    ## Description

    CoRAL (Wu et al., KDD 2024) asks a frozen LLM whether a user would like a long-tail item and
    lets a policy add collaborative evidence to the prompt: observed training interactions
    ("the item X is liked/disliked by the users ..."). An episode is one (user, item, label)
    interaction, drawn with the environment's seeded generator from the chosen split's
    tail-item interactions (for training: the ``episodes`` fold, see "Leakage"). Each step
    retrieves one interaction, extends the prompt and scores it again; the reward is the
    decrease of the LLM's absolute error.

    ## Action Space

    ``action_mode="query"`` (the paper): ``Box(-1, 1, (2d,), float32)``, a query in the
    [user, item] embedding space. With ``query_origin="target"`` (default) the query is
    ``[e_u, e_i] + a * query_scale * (max - min)`` per dimension, around the target's own pair:
    the zero action retrieves the nearest neighbours of the target (greedy retrieval) and a
    policy learns deviations from it; with the default ``query_scale`` 1 every observed
    interaction is reachable from every target. With ``query_origin="center"`` (the paper's
    literal reading) the query is ``center + a * half_range`` of the embedding box, the same for
    every target unless the policy reads its target from the observation.
    With ``query_match="observed"`` (default) the retrieved evidence is the observed training
    interaction whose [user, item] embedding is nearest to the query and not yet retrieved in
    this episode, so every step adds a real like/dislike. With ``query_match="independent"``
    (the paper's Eq. 6) the nearest user and the nearest item are found separately; if that pair
    is an observed training interaction not yet retrieved, it is added with its label, otherwise
    the step is "unobserved": the prompt stays as it was (an empty line), p_t = p_{t-1} with no
    LLM call, reward 0, and only the state's means move.

    ``action_mode="candidates"``: ``Discrete(M)`` over the M observed training interactions
    nearest to the target pair (nearest first). :meth:`action_masks` hides used candidates
    (for sb3-contrib's MaskablePPO); a masked action is a no-op step with reward 0.

    ## Observation Space

    ``Box(low, high, (4d + 7,), float32)``, in this order: the target user's and item's
    embeddings (2d), the mean embedding of the users and of the items retrieved so far (2d,
    zeros before any), p_t, p_0, then t, the liked pieces, the disliked pieces, the pieces on
    the target item and the pieces by the target user, each divided by K = ``max_train_steps``
    (one fixed K in training and evaluation episodes, so a step reads the same in both).
    The bounds are the embedding tables' per-dimension ranges (zero is clipped into them before
    any retrieval), [0, 1] for p_t and p_0, and [0, max(rounds, K) / K] for the counts.
    The embeddings are on the tables' scale: a learned policy should standardise observations
    (``coral train`` wraps its environments in SB3's ``VecNormalize``).

    ## Rewards

    ``reward="abs_error"`` (default, the paper): r_t = |p_{t-1} - y| - |p_t - y|, so the
    undiscounted return is |p_0 - y| - |p_T - y|. ``reward="log_odds"``: r_t = (2y - 1) *
    (logit p_t - logit p_{t-1}), p clipped to [1e-4, 1 - 1e-4], so the return is the move of the
    log-odds toward the label: unsaturated near 0 and 1, on the scale a ranking metric reads.

    ## Starting State

    ``reset`` draws an interaction (or takes ``options={"index": j}``, row j of the episode
    pool), builds the prompt without collaborative evidence and scores p_0.

    ## Episode End

    Training mode (``split="train"``): terminated when |p_t - y| < ``stop_error`` (0.1),
    truncated after ``max_train_steps`` (10). Evaluation mode (valid/test): truncated after
    exactly ``rounds`` (5) steps; never terminated. Running out of evidence (all candidates
    used) also truncates.

    ## Arguments

    One :class:`EnvConfig`, a dict of its keys, or its keys as keywords, and optionally
    :class:`~coral.envs.resources.EnvResources` (a loaded dataset, a scorer object, embedding
    tables, a prompt builder) that replace the config's names:
    ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-v1", dataset="gift_cards")`` uses the
    embedded LLM (scorer "hf") and the DFM warm start;
    ``gymnasium.make("coral.envs:CoRAL/CollabRetrieval-Scripted-v1")`` the scripted scorer and
    random embeddings (no torch).

    ## Rendering

    ``render_mode="ansi"``: :meth:`render` returns the current prompt's evidence block as text.

    ## Leakage

    Evidence comes from the whole training split and passes the leakage guard
    (:class:`coral.retrieval.LeakageGuard`): the target interaction and every validation/test
    interaction are refused with an error. Labels reach a training episode through nothing
    else: tail-train is divided into three disjoint seeded folds (:mod:`coral.data.folds`,
    ``fold_shares``, 1/3 each by default): the CF warm start (the observation's embeddings and
    the evidence search) is fitted on the head interactions plus the ``warm_start`` fold, the
    scorer's alignment takes its targets from the ``align`` fold, and training episodes are
    drawn from the ``episodes`` fold only. No training target's label was seen by the warm start
    or by the aligned scorer, as for validation and test targets.

    ## Version History

    * v1 (later argument, default unchanged): ``reward="log_odds"``.
    * v1: training episodes from the ``episodes`` fold of tail-train (no label leakage through
      the warm start or the aligned scorer); query actions around the target by default
      (``query_origin``); observation 4d + 7 with p_0, evidence counts and t divided by one
      fixed K; warm-start tables rescaled to unit RMS row norm by default.
    * v0: first version (dropped: observations 4d + 2 with t divided by the episode's own step
      limit, queries around the centre of the embedding box, episodes from all of tail-train).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    #: Entries of the observation after the 4d embedding entries.
    N_SCALARS = 7

    def __init__(
        self, config: EnvConfig | Mapping[str, Any] | None = None, resources: EnvResources | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise CoralError(
                f"render_mode must be one of {', '.join(self.metadata['render_modes'])} or None, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.config = EnvConfig.from_any(config)
        self.resources = resources or EnvResources()
        cfg, res = self.config, self.resources
        self.dataset = res.dataset if res.dataset is not None else resolve_dataset(cfg.data)
        self.scorer = res.scorer if res.scorer is not None else resolve_scorer(cfg.scorer)
        #: The user and item embedding tables (observations and evidence search).
        self.embeddings: EmbeddingTables = (
            res.embeddings
            if res.embeddings is not None
            else resolve_embeddings(self.dataset, cfg.warm, seed=cfg.embedding_seed)
        )
        self.index: EvidenceIndex = resolve_index(self.dataset, self.embeddings)
        if cfg.split == "train":
            self.episodes = fold_interactions(self.dataset, "episodes", cfg.warm.folds)
        else:
            self.episodes = self.dataset.split(cfg.split)
        if len(self.episodes) == 0:
            raise CoralError(
                f"dataset {self.dataset.name!r}: split {cfg.split!r} has no tail interactions to draw episodes from"
            )
        if res.prompt_builder is None:
            from coral.llm.prompt import scorer_prompt_builder

            # The settings an aligned scorer was trained with (defaults otherwise), the chat template of its tokenizer.
            self.prompt_builder: PromptBuilderLike = scorer_prompt_builder(self.dataset, self.scorer)
        else:
            self.prompt_builder = res.prompt_builder

        d = self.index.dim
        self.dim = d
        training = cfg.episode_mode == "train"
        self.max_steps = cfg.max_train_steps if training else cfg.rounds
        self.stop_error: float | None = cfg.stop_error if training else None
        #: The one K that t and the evidence counts are divided by, in training and evaluation alike.
        self.k_norm = float(cfg.max_train_steps)
        # Bounds: embeddings and their means lie within the tables' ranges; p in [0, 1]; counts / K
        # up to the longest episode / K.
        u_lo, u_hi = self.index.user_emb.min(axis=0), self.index.user_emb.max(axis=0)
        i_lo, i_hi = self.index.item_emb.min(axis=0), self.index.item_emb.max(axis=0)
        top = max(cfg.rounds, cfg.max_train_steps) / self.k_norm
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([u_lo, i_lo, u_lo, i_lo, np.zeros(self.N_SCALARS)]).astype(np.float32),
            high=np.concatenate([u_hi, i_hi, u_hi, i_hi, [1.0, 1.0], np.full(self.N_SCALARS - 2, top)]).astype(
                np.float32
            ),
            dtype=np.float32,
        )
        if cfg.action_mode == "query":
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2 * d,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.Discrete(cfg.n_candidates)
        lo = np.concatenate([u_lo, i_lo]).astype(np.float64)
        hi = np.concatenate([u_hi, i_hi]).astype(np.float64)
        self._center, self._half_range = (hi + lo) / 2.0, (hi - lo) / 2.0
        # Per-dimension reach of a = +-1 around the origin of a query.
        self._reach = self._half_range if cfg.query_origin == "center" else cfg.query_scale * (hi - lo)

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
        #: Euclidean distance of each candidate to the target pair (candidates mode).
        self.candidate_distances = np.zeros(0, dtype=np.float64)
        if self.config.action_mode == "candidates":
            distances = self.index.distances(self.target_vector)
            self.candidates = self.index.nearest_rows(
                self.target_vector, self._used, self.config.n_candidates, distances=distances
            )
            self.candidate_distances = np.sqrt(np.maximum(distances[self.candidates], 0.0))

    @property
    def target_vector(self) -> np.ndarray:
        """The target pair's [user, item] embedding (2d,): the origin of ``query_origin="target"`` queries."""
        return self.index.pair_vector(self.user, self.item)

    def _evidence_counts(self) -> list[float]:
        """t, liked, disliked, on the target item, by the target user: each divided by K."""
        ev = self.evidence
        counts = [
            self.t, sum(e.label == 1 for e in ev), sum(e.label != 1 for e in ev), sum(e.item == self.item for e in ev),
            sum(e.user == self.user for e in ev),
        ]
        return [c / self.k_norm for c in counts]

    def _observation(self) -> np.ndarray:
        n = max(self._n_retrieved, 1)
        obs = np.concatenate(
            [
                self.index.user_emb[self.user], self.index.item_emb[self.item], self._sum_users / n,
                self._sum_items / n, [self.p, self.p0], self._evidence_counts(),
            ]
        ).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _info(self) -> dict[str, Any]:
        return {
            "p": self.p, "label": self.label, "abs_error": abs(self.p - self.label), "t": self.t,
            "episode_index": self.episode_index,
        }

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

    @property
    def matches_observed_queries(self) -> bool:
        """True when a step's action is a query matched to the nearest observed interaction (the
        distances from the query to the whole index decide the step)."""
        return self.config.action_mode == "query" and self.config.query_match == "observed"

    def _query_origin(self) -> np.ndarray:
        return self._center if self.config.query_origin == "center" else self.target_vector.astype(np.float64)

    def query_vector(self, action: np.ndarray) -> np.ndarray:
        """The embedding-space query (2d,) of a normalised query action in [-1, 1]^(2d)."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return self._query_origin() + a * self._reach

    def action_for_query(self, query: np.ndarray) -> np.ndarray:
        """The normalised action whose query is ``query`` (clipped to [-1, 1]: exact for any point
        of the embedding box with the default reach)."""
        a = (np.asarray(query, dtype=np.float64) - self._query_origin()) / np.where(self._reach > 0, self._reach, 1.0)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    # ---- two-phase reset and step, so that a vector of environments can batch the scoring ----
    def begin_reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> "Prompt":
        """Start an episode; returns the evidence-free prompt whose score is p_0."""
        super().reset(seed=seed)
        if options and "index" in options:
            j = int(options["index"])
            if not 0 <= j < len(self.episodes):
                raise CoralError(
                    f"episode index {j} out of range: split {self.config.split!r} has {len(self.episodes)} interactions"
                )
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

    def begin_step(self, action: Any, distances: np.ndarray | None = None) -> "Prompt | None":
        """Retrieve evidence for ``action``; returns the extended prompt, or None if nothing was added.

        :param action: the step's action.
        :param distances: ``index.distances(query_vector(action))`` when the caller computed it (an
            :class:`~coral.envs.batch.EpisodeBatch` does, for all its environments in one product).
        """
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
            if self.matches_observed_queries:
                rows = self.index.nearest_rows(query, self._used, 1, distances=distances)
                row = int(rows[0]) if len(rows) else -1
            else:
                ret_user, ret_item = (
                    self.index.nearest_user(query[: self.dim]),
                    self.index.nearest_item(query[self.dim :]),
                )
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
        reward = step_reward(prev, self.p, self.label, self.config.reward)
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
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
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


#: The environment class of each ``EnvConfig.observe`` (CandidateRetrievalEnv adds itself on import).
ENV_CLASSES: dict[str, type[CollabRetrievalEnv]] = {"embeddings": CollabRetrievalEnv}


def make_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, **keys: Any,
) -> CollabRetrievalEnv:
    """Build a :class:`CollabRetrievalEnv` (a :class:`~coral.envs.candidates.CandidateRetrievalEnv`
    with ``observe="candidates"``): the one factory for gymnasium.make, SB3, RLlib and evaluation.

    :param config: an :class:`EnvConfig`, a dict of its keys (RLlib's ``EnvContext``), or None.
    :param render_mode: None or "ansi" (SB3's ``make_vec_env`` passes "rgb_array" through
        ``gymnasium.make``, which is taken as None: there are no pictures to draw).
    :param resources: objects replacing the config's names (a loaded dataset, a scorer, ...).
    :param keys: :class:`EnvConfig` keys overriding ``config`` (what ``gymnasium.make`` passes).
    """
    cfg = EnvConfig.from_any(config, **keys)
    if cfg.observe not in ENV_CLASSES:  # registered by their modules, which coral.envs imports
        raise CoralError(f"no environment class observes {cfg.observe!r} (import coral.envs to register them all)")
    return ENV_CLASSES[cfg.observe](
        cfg, resources=resources, render_mode=None if render_mode == "rgb_array" else render_mode
    )


def make_scripted_env(
    config: EnvConfig | Mapping[str, Any] | None = None, render_mode: str | None = None,
    resources: EnvResources | None = None, **keys: Any,
) -> CollabRetrievalEnv:
    """:func:`make_env` whose defaults are the scripted scorer and random embeddings: cheap, and without torch.

    An :class:`EnvConfig` object is taken as it is; in a dict or keywords, ``scorer`` and
    ``warm_start`` given explicitly (e.g. ``scorer="scripted:weight=2"``) still apply.
    """
    return make_env(
        with_defaults(config, {"scorer": "scripted", "warm_start": "none"}), render_mode=render_mode,
        resources=resources, **keys,
    )


def with_defaults(
    config: EnvConfig | Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> EnvConfig | dict[str, Any]:
    """The config of a registered variant: an :class:`EnvConfig` object as it is; a dict (or None)
    over ``defaults`` (keys given explicitly still apply)."""
    return config if isinstance(config, EnvConfig) else {**defaults, **dict(config or {})}


__all__ = [
    "CollabRetrievalEnv", "EnvConfig", "PromptBuilderLike", "make_env", "make_scripted_env", "score_prompts",
    "with_defaults",
]
