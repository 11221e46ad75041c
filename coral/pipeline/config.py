"""The main job's configuration: one nested dataclass, read from YAML or flags (``coral.config``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from coral.align.config import AlignConfig
from coral.baselines.config import MODEL_NAMES, BaselineConfig, BaselineName
from coral.config import load_yaml, require, section, to_dict
from coral.data.dataset import DataConfig
from coral.llm import ScorerConfig
from coral.llm.prompt import PromptConfig
from coral.policies.config import TrainConfig
from coral.retrieval import WarmStart

Method = Literal["llm-only", "coral-random", "coral-greedy", "coral-ppo", "coral-ddpg", "coral-maskable_ppo"]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``coral run`` does: which data, which methods, and each method's settings."""

    data: DataConfig = section(lambda: DataConfig(dataset="movielens_small"), flat=True)
    """The dataset (the main job's default: the embedded movielens_small), how its files are read, its preprocessing."""
    datasets: tuple[str, ...] = ()
    """Run on each of these datasets (names or paths) in turn, with the data section's other settings, each in
    OUT/<name>/; empty: only `dataset`."""
    skip_missing: bool = False
    """Skip datasets whose files are absent instead of failing (the paper grid uses this)."""
    seeds: tuple[int, ...] = (0,)
    """Run seeds: each seeds the CTR baselines, the alignment and the policies (and the split, with `vary_split`)."""
    vary_split: bool = True
    """Run seed s also splits the data with split_seed + s and draws its own evaluation pairs, so that seeds vary the
    split, the alignment and the policies together; off: one split and one set of pairs for every seed."""
    baselines: tuple[BaselineName, ...] = MODEL_NAMES
    """CTR baselines to train and evaluate."""
    baseline: BaselineConfig = section(BaselineConfig, skip=("model", "seed"))
    """The CTR baselines' settings (each baseline and seed of `baselines` and `seeds`)."""
    side_feature_baselines: bool = False
    """Also train every CTR baseline with the dataset's item side features (rows `dfm+side`, ...: "DFM + side
    features"), so that the best CTR baseline is chosen by validation AUC among baselines with and without them
    (about as long again as the baselines; off in the 20-minute default, on in experiments/benchmark.yaml)."""
    scorer: ScorerConfig = section(ScorerConfig, flat=True)
    """The zero-shot LLM."""
    align: bool = True
    """Align the scorer (`coral align`) and add rows that use it."""
    alignment: AlignConfig = section(
        lambda: AlignConfig(method="topk", n_train=256, prompt=PromptConfig(base_rates=True, cf_tokens=4))
    )
    """The alignment's settings: method topk (the top two layers fine-tuned on prompts with evidence, the scorer that
    reads it), its prompts with the user's and item's base rates and 4 collaborative soft tokens (chosen on the
    validation split's stop role: experiments/notes/align.md, issue 27); method head is the probe (256 prompts here)."""
    methods: tuple[Method, ...] = ("llm-only", "coral-random", "coral-greedy", "coral-ppo")
    """LLM methods, run with the aligned scorer when `align` is on, else with `scorer` (coral-greedy: the K nearest
    observed interactions, the zero action, the strongest simple alternative a learned policy must beat; add coral-ddpg
    for the paper's faithful variant: about 5 more minutes)."""
    zero_shot_methods: tuple[Method, ...] = ()
    """LLM methods also run with the zero-shot `scorer` when `align` is on (e.g. llm-only for the LLM as shipped: 2.5
    more minutes, left out of the 20-minute default; experiments/movielens_small_top2.yaml has it)."""
    warm_starts: tuple[WarmStart, ...] = ("dfm",)
    """Warm starts of the RL policies (dfm, wdl, afm, dcn, none)."""
    ppo_timesteps: int = 640
    """PPO (and MaskablePPO) training timesteps per (warm start, seed): with train's 8 envs x 4 steps per rollout, 20
    PPO updates."""
    ddpg_timesteps: int = 256
    """DDPG training timesteps (the paper uses 2000; the default keeps `coral run` under 20 minutes)."""
    train: TrainConfig = section(
        lambda: TrainConfig(n_steps=4, batch_size=32, checkpoint_every=64, val_every=0),
        skip=("algo", "timesteps", "seed", "out", "env.data", "env.scorer", "env.warm.warm_start"),
    )
    """The policies' training and evaluation environment: K = train.rounds, parallel episodes = train.n_envs (the main
    job checkpoints every 64 steps, does not validate while training, and updates PPO every 8 x 4 = 32 steps)."""
    candidate_stop: bool = False
    """coral-maskable_ppo may also stop (CandidateRetrieval-v0's stop action): fewer pieces, fewer LLM calls; its row
    is then compared in results.md with greedy stopped after a fixed number of pieces (model name ...-stop-WARM)."""
    candidate_piece_cost: float = 0.0
    """With `candidate_stop`: subtracted from the training reward of every step that adds a piece (a price on LLM
    calls; 0: stopping pays only where the next piece would move P(Yes) away from the label)."""
    input_twins: bool = True
    """With `align` on and an alignment prompt that states base rates or holds CF soft tokens: add the input-twin rows
    (no LLM), logistic regressions on the numbers the aligned LLM is given (base rates, the CF embeddings of its soft
    tokens, and with the like-share of the K nearest pieces), fitted on the alignment's own training targets (their
    L2 strength cross-validated on those targets), so that the table says what the LLM adds over its inputs. Costs
    about a minute per seed."""
    count_references: bool = True
    """Add the no-LLM kNN like-share rows (the share of liked pieces among the K nearest observed interactions in the
    first warm start: greedy's evidence, counted; plain and distance-weighted): what an LLM reading that evidence must
    at least match. Costs seconds."""
    controls: bool = False
    """Also run the evidence controls of the methods' scorer (the aligned one when `align` is on) on the shared test
    pairs (no evidence / K nearest / K random / K nearest of another target, paired Δ vs none) and add their table to
    results.md (about 8 prompts per pair: off in the 20-minute default)."""
    eval_pairs: int = 250
    """Shared test pairs: every method is evaluated and compared on this seeded stratified subset of the test split (0:
    the whole split). The LLM dominates the run's time; experiments/notes/benchmark.md derives the size."""
    valid_pairs: int = 70
    """Shared validation pairs (a seeded stratified subset; 0: the whole split) that tune every method's F1
    threshold."""
    n_boot: int = 1000
    """Bootstrap resamples of every AUC's 95% interval (0: no intervals)."""
    label_aware_pairs: int = 0
    """Also run the label-aware reference (evaluation only: it reads the targets' labels; never a method, never in the
    claims) with the methods' scorer in the first warm start on this many of each seed's shared test pairs (a seeded
    stratified subset), and add results.md's headroom section: it and each learned policy vs greedy on those pairs
    (0: off; it needs coral-greedy; it costs (nearest + random) x K prompts per pair)."""
    label_aware_nearest: int = 10
    """The label-aware reference's candidates per round among the nearest unused observed interactions (10 + 5 random:
    81 prompts per pair at K = 5, chosen for its cost: experiments/notes/env-policies.md)."""
    label_aware_random: int = 5
    """The label-aware reference's candidates per round drawn at random among the other unused observed interactions."""
    resume_training: bool = False
    """Continue a killed policy training from its last checkpoint. Off by default: a resumed PPO run is not
    bit-identical to an uninterrupted one, and the main job's table must be."""

    def __post_init__(self) -> None:
        require(bool(self.seeds), "seeds", "must hold at least one seed")
        for name in ("ppo_timesteps", "ddpg_timesteps"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in (
            "eval_pairs",
            "valid_pairs",
            "n_boot",
            "label_aware_pairs",
            "label_aware_nearest",
            "label_aware_random",
        ):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        if self.label_aware_pairs:
            require(
                self.label_aware_nearest + self.label_aware_random >= 1,
                "label_aware_nearest",
                "plus --label-aware-random must be >= 1: the label-aware reference needs at least one candidate",
            )
            require(
                "coral-greedy" in self.methods,
                "label_aware_pairs",
                "needs coral-greedy in methods (the headroom section compares with greedy retrieval)",
            )
        cost = self.candidate_piece_cost
        require(cost >= 0, "candidate_piece_cost", f"must be >= 0, got {cost}")
        require(
            self.candidate_stop or self.candidate_piece_cost == 0,
            "candidate_piece_cost",
            "prices the pieces of a policy that may stop: it needs candidate_stop",
        )
        require(
            not (self.side_feature_baselines and self.baseline.use_side_features),
            "side_feature_baselines",
            "adds rows with item side features beside the rows without them; baseline.use_side_features must then "
            "stay off",
        )

    @property
    def dataset_names(self) -> tuple[str, ...]:
        """The datasets run, in order."""
        return self.datasets or (self.data.dataset,)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        """Read a YAML file of :func:`coral.config.to_dict`'s keys; unknown keys are an error."""
        return load_yaml(cls, path)

    def to_dict(self) -> dict:
        return to_dict(self)
