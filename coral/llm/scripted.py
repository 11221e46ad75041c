"""A fast, deterministic stand-in for the LLM: P(Yes) from a prompt's metadata, not its text.

``ScriptedScorer`` makes P(Yes) rise with the liked evidence in a prompt and fall with the
disliked evidence, plus a fixed per-target offset:

    P(Yes) = sigmoid(bias + weight * (#liked - #disliked) + noise * z(user, item))

where ``z(user, item)`` is a standard-normal number derived from a hash of (seed, user, item),
so the same prompt always gets the same score. With ``evidence="target"`` only the pieces near
the target count: other users' ratings of the target item and the target user's own ratings
(the neighbourhood that nearest-neighbour retrieval reaches); any other piece leaves P(Yes)
unchanged, so a retrieval policy earns reward only by retrieving near its own target. It scores thousands of prompts per
second and
needs no model, which makes it the scorer of tests, quick experiments with the environment and
policies, and benchmarks of everything except the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, get_args

import numpy as np

from coral.errors import CoralError
from coral.evidence import Evidence
from coral.llm.base import Prompt, Scorer, ScoreResult

EvidenceMode = Literal["any", "target"]
#: Which pieces of evidence move the scripted P(Yes).
EVIDENCE_MODES: tuple[str, ...] = get_args(EvidenceMode)


@dataclass(frozen=True)
class ScriptedConfig:
    """The coefficients of :class:`ScriptedScorer`."""

    bias: float = 0.0
    """Logit of P(Yes) for a prompt without evidence and without noise."""
    weight: float = 1.0
    """Logit added per liked piece of evidence (and subtracted per disliked one)."""
    noise: float = 0.5
    """Scale of the deterministic per-(user, item) logit offset."""
    seed: int = 0
    """Seed of the per-(user, item) offsets."""
    evidence: EvidenceMode = "any"
    """Which pieces move P(Yes): any (every piece, by its label) or target (only ratings of the target item or by the
    target user)."""

    def counts(self, piece: Evidence, user: int, item: int) -> bool:
        """Whether ``piece`` moves P(Yes) for the target (user, item)."""
        return self.evidence == "any" or piece.item == item or piece.user == user


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a fast, well-mixed hash of uint64 values."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


def target_offsets(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic standard-normal numbers, one per (user, item) pair.

    :param users: user ids.
    :param items: item ids, aligned with ``users``.
    :param seed: changes every number.
    """
    with np.errstate(over="ignore"):
        key = (np.asarray(users, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.asarray(items, dtype=np.uint64)
        h1 = _mix64(key + np.uint64(seed) * np.uint64(0xD1B54A32D192ED03))
        h2 = _mix64(h1 + np.uint64(0x632BE59BD9B4E019))
    # Box-Muller on two uniforms in (0, 1) taken from the top 53 bits.
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class ScriptedScorer(Scorer):
    """P(Yes) as a deterministic function of a prompt's user, item and evidence labels.

    :param config: the coefficients (see the module docstring).
    """

    def __init__(self, config: ScriptedConfig = ScriptedConfig()) -> None:
        self.config = config
        self.fingerprint = (
            f"scripted:bias={config.bias}:weight={config.weight}:noise={config.noise}:seed={config.seed}"
            + (f":evidence={config.evidence}" if config.evidence != "any" else "")
        )
        self._calls = 0
        self._prompts = 0

    @classmethod
    def from_spec(cls, spec: str) -> "ScriptedScorer":
        """Build from a spec such as ``scripted`` or ``scripted:weight=2,noise=0.3,bias=-1,evidence=target``.

        :raises CoralError: on an unknown key, a number that is not one, or an unknown evidence mode.
        """
        name, _, args = spec.partition(":")
        if name != "scripted":
            raise CoralError(f"not a scripted scorer spec: {spec!r}")
        values: dict[str, float | int | str] = {}
        fields = ScriptedConfig.__dataclass_fields__
        for part in filter(None, (p.strip() for p in args.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in fields:
                raise CoralError(
                    f"scorer spec {spec!r}: expected key=value with keys {', '.join(fields)}, got {part!r}"
                )
            if key == "evidence":
                if value not in EVIDENCE_MODES:
                    raise CoralError(
                        f"scorer spec {spec!r}: evidence must be one of {', '.join(EVIDENCE_MODES)}, got {value!r}"
                    )
                values[key] = value
                continue
            try:
                values[key] = int(value) if key == "seed" else float(value)
            except ValueError:
                raise CoralError(f"scorer spec {spec!r}: {key} must be a number, got {value!r}") from None
        return cls(ScriptedConfig(**values))

    def logits(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """The logit of P(Yes) for each prompt."""
        c = self.config
        balance = np.array(
            [sum((1 if e.label else -1) for e in p.evidence if c.counts(e, p.user, p.item)) for p in prompts],
            dtype=np.float64,
        )
        users = np.array([p.user for p in prompts], dtype=np.int64)
        items = np.array([p.item for p in prompts], dtype=np.int64)
        return c.bias + c.weight * balance + c.noise * target_offsets(users, items, c.seed)

    def score_details(self, prompts: Sequence[Prompt]) -> ScoreResult:
        self._calls += 1
        self._prompts += len(prompts)
        if not prompts:
            return ScoreResult(np.zeros(0), np.zeros(0))
        p = 1.0 / (1.0 + np.exp(-self.logits(prompts)))
        return ScoreResult(p_yes=p, yes_no_mass=np.ones(len(prompts)))

    def stats(self) -> dict[str, float]:
        return {"calls": float(self._calls), "prompts": float(self._prompts), "cache_hits": 0.0}


class MetadataPromptBuilder:
    """A minimal prompt builder for scripted scorers: one short line per piece of evidence.

    :class:`ScriptedScorer` reads only the prompt's metadata, so the text here is for logs; use
    ``coral.llm.prompt.PromptBuilder`` for a real LLM.
    """

    def build(self, user: int, item: int, evidence: Sequence[Evidence]) -> Prompt:
        """The prompt for ``user`` and ``item`` with ``evidence`` in retrieval order."""
        lines = tuple(f"item {e.item} is {'liked' if e.label else 'disliked'} by user {e.user}\n" for e in evidence)
        return Prompt(
            segments=("context:\n", *lines, f"would user {user} like item {item}?"), user=user, item=item,
            evidence=tuple(evidence),
        )
