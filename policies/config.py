"""``TrainConfig``: every setting of ``coral train``, one field per option."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral.errors import CoralError

from envs.resources import WARM_START_MODELS
from policies.sb3 import ALGOS


@dataclass
class TrainConfig:
    """A training run of a retrieval policy (CleanRL style: the whole run in one flat config)."""

    dataset: str = "gift_cards"
    """Dataset name or path (coral.data.load_dataset)."""
    algo: str = "ppo"
    """ppo (query actions), ddpg (query actions, the paper's settings) or maskable_ppo (candidates actions)."""
    warm_start: str = "dfm"
    """Embeddings: dfm, wdl, afm, dcn (CTR-model warm start) or none (random, "w/o init")."""
    timesteps: int = 2000
    """Total environment steps (retrieval steps, summed over the parallel environments)."""
    seed: int = 0
    """Seed of networks, episode draws and warm-start training."""
    out: str = "runs/coral"
    """Run directory: config, checkpoints, logs, final model, evaluation outputs."""
    scorer: str = "hf"
    """Scorer spec: hf (the embedded LLM), hf:PATH, vllm:MODEL, openai:URL#MODEL, scripted[:k=v,...]."""
    query_match: str = "observed"
    """Query actions: observed (nearest observed interaction) or independent (paper Eq. 6)."""
    n_candidates: int = 20
    """Candidates per episode for maskable_ppo."""
    n_envs: int = 8
    """Parallel episodes; their prompts are scored in one batch per step."""
    embedding_dim: int = 128
    """Embedding size d."""
    n_steps: int = 32
    """PPO/MaskablePPO rollout length per environment (a rollout = n_steps * n_envs steps)."""
    batch_size: int = 64
    """PPO/MaskablePPO minibatch size (DDPG uses the paper's 16)."""
    learning_rate: float | None = None
    """None = the algorithm's default (PPO 3e-4; DDPG the paper's 1e-3)."""
    max_train_steps: int = 10
    """Retrieval steps allowed per training episode."""
    stop_error: float = 0.1
    """Training episodes end early once |p_t - y| < stop_error."""
    eval_rounds: int = 5
    """Retrieval rounds in validation and evaluation (K)."""
    checkpoint_every: int = 256
    """Save a checkpoint every this many timesteps (0: only at the end)."""
    val_every: int = 512
    """Log coral/val_auc every this many timesteps (0: never)."""
    val_size: int = 64
    """Validation interactions used for coral/val_auc (a fixed seeded subset keeping both classes)."""
    progress_bar: bool = True
    """Show a progress bar while training."""
    torch_threads: int = 2
    """torch.set_num_threads for the policy networks (and an in-process LLM)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise CoralError(f"unknown algorithm {self.algo!r}; expected one of {', '.join(ALGOS)}")
        if self.warm_start not in WARM_START_MODELS:
            raise CoralError(f"unknown warm start {self.warm_start!r}; expected one of {', '.join(WARM_START_MODELS)}")
        for name in ("timesteps", "n_envs", "n_steps", "batch_size", "eval_rounds", "max_train_steps"):
            if int(getattr(self, name)) < 1:
                raise CoralError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def model_name(self) -> str:
        """The name in result rows, e.g. coral-ppo-dfm."""
        return f"coral-{self.algo.replace('_', '-')}-{self.warm_start}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from coral.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config written by :meth:`save`; unknown keys are an error."""
        data = json.loads(Path(path).read_text())
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise CoralError(f"{path}: unknown train config key(s) {', '.join(unknown)}")
        return cls(**data)
