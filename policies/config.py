"""``TrainConfig``: every setting of a retrieval policy's training run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from coral.config import config_hash, load_yaml, require, section, to_dict
from coral.envs.collab_retrieval import EnvConfig

#: Algorithms ``coral train`` knows, and the action mode each needs.
ALGOS = {"ppo": "query", "ddpg": "query", "maskable_ppo": "candidates"}
Algo = Literal["ppo", "ddpg", "maskable_ppo"]
#: Training libraries: Stable-Baselines3 (the default, every algorithm) and Ray RLlib (optional extra).
Engine = Literal["sb3", "rllib"]
#: The algorithms of ``ALGOS`` that RLlib 2.60 has (it has no DDPG; MaskablePPO is sb3-contrib's).
RLLIB_ALGOS = ("ppo",)


@dataclass(frozen=True)
class TrainConfig:
    """A training run of a retrieval policy: its environment, algorithm, budget and bookkeeping."""

    env: EnvConfig = section(EnvConfig, flat=True, skip=("split", "mode", "action_mode", "embedding_seed"))
    """The training environment (episodes from the train split; the action mode follows ``algo``, the warm start's seed
    is ``seed``)."""
    algo: Algo = "ppo"
    """ppo (query actions), ddpg (query actions, the paper's settings) or maskable_ppo (candidates actions)."""
    engine: Engine = "sb3"
    """sb3: Stable-Baselines3 in this process; rllib: RLlib PPO with env runner processes (pip install -e .[rllib])."""
    num_env_runners: int = 0
    """With --engine rllib: env runner processes sampling episodes (0: sample in the training process); n_envs are
    spread over them."""
    timesteps: int = 4096
    """Total environment steps (retrieval steps, summed over the parallel environments)."""
    seed: int = 0
    """Seed of networks, episode draws and warm-start training."""
    out: str = "runs/coral"
    """Run directory: config, checkpoints, logs, final model, evaluation outputs."""
    n_envs: int = 8
    """Parallel episodes; their prompts are scored in one batch per step."""
    n_steps: int = 32
    """PPO/MaskablePPO rollout length per environment (a rollout = n_steps * n_envs steps = one update: the default 8 x
    32 = 256 steps in 4 minibatches, 16 updates in 4,096 steps)."""
    batch_size: int = 64
    """PPO/MaskablePPO minibatch size (DDPG uses the paper's 16)."""
    n_epochs: int = 4
    """PPO/MaskablePPO optimisation passes over each rollout (SB3's 10 passes over one small minibatch made ten
    same-direction Adam steps per update: KL 1-5 in the 256-dimensional query action)."""
    log_std_init: float = 0.0
    """PPO on query actions, engine sb3: initial log standard deviation of the Gaussian over each action dimension."""
    normalize_obs: bool = True
    """Standardise observations with SB3's VecNormalize (running mean and variance, saved with the policy and applied at
    evaluation): the target's embeddings vary by far less than p and the counts."""
    learning_rate: Optional[float] = None
    """None = the algorithm's default (PPO on query actions 1e-4; MaskablePPO 3e-4; DDPG the paper's 1e-3)."""
    checkpoint_every: int = 256
    """Save a checkpoint every this many timesteps (0: only at the end)."""
    val_every: int = 512
    """Log coral/val_auc every this many timesteps (0: never)."""
    val_size: int = 64
    """Validation interactions used for coral/val_auc (a fixed seeded subset keeping both classes)."""
    progress: bool = True
    """Show a progress bar while training."""
    threads: int = 2
    """torch.set_num_threads for the policy networks (and an in-process LLM)."""

    def __post_init__(self) -> None:
        for name in ("timesteps", "n_envs", "n_steps", "batch_size", "n_epochs", "threads"):
            require(int(getattr(self, name)) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "val_every", "val_size", "num_env_runners"):
            require(int(getattr(self, name)) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(
            self.learning_rate is None or self.learning_rate > 0,
            "learning_rate",
            f"must be > 0 (or none), got {self.learning_rate}",
        )
        require(bool(self.out), "out", "must name a directory, got ''")
        require(
            self.env.observe == "embeddings" or self.algo == "maskable_ppo",
            "observe",
            f"candidates needs algo maskable_ppo (the candidates action mode), got {self.algo}",
        )
        why = {"ddpg": "RLlib 2.60 has no DDPG", "maskable_ppo": "MaskablePPO is sb3-contrib's, RLlib has none"}
        require(
            self.engine != "rllib" or self.algo in RLLIB_ALGOS,
            "algo",
            f"{self.algo} is not available with engine rllib ({why.get(self.algo, 'not in RLlib')}); use engine sb3, "
            f"or algo {' or '.join(RLLIB_ALGOS)}",
        )

    @property
    def model_name(self) -> str:
        """The name in result rows, e.g. coral-ppo-dfm (coral-rllib-ppo-dfm: the rows of both engines can share one
        results file;
        coral-maskable-ppo-features-dfm: the candidate features of CandidateRetrieval-v0, -stop with its stop
        action, -logodds trained on the log-odds reward)."""
        engine = "rllib-" if self.engine == "rllib" else ""
        variant = (
            ("-features" if self.env.observe == "candidates" else "")
            + ("-stop" if self.env.stop_action else "")
            + ("-logodds" if self.env.reward == "log_odds" else "")
        )
        return f"coral-{engine}{self.algo.replace('_', '-')}{variant}-{self.env.warm.warm_start}"

    def env_config(self, split: str = "train") -> EnvConfig:
        """The environment of this run for episodes drawn from ``split`` (train: training episodes; valid/test:
        evaluation)."""
        from dataclasses import replace

        return replace(self.env, split=split, action_mode=ALGOS[self.algo], embedding_seed=self.seed)

    def to_dict(self) -> dict:
        return to_dict(self)

    @property
    def hash(self) -> str:
        """A short stable hash of every setting."""
        return config_hash(self)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (the keys of :func:`coral.config.to_dict`)."""
        from coral.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config written by :meth:`save` (JSON is YAML); unknown keys are an error."""
        return load_yaml(cls, path)
