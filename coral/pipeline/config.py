"""The main job's configuration: one dataclass, loadable from a YAML file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coral.errors import CoralError


@dataclass
class RunConfig:
    """Everything ``coral run`` does. Each field maps to one YAML key of the same name."""

    datasets: list[str] = field(default_factory=lambda: ["gift_cards"])
    """Datasets to run on; names or paths. Missing ones are skipped with a warning when ``skip_missing``."""
    skip_missing: bool = False
    """Skip datasets whose files are absent instead of failing (the paper grid uses this)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds of every trained method (baselines, policies); the data split keeps ``split_seed``."""
    split_seed: int = 0
    """Seed of the tail train/valid/test split."""
    baselines: list[str] = field(default_factory=lambda: ["dfm", "dcn", "wdl", "afm", "ips", "cause"])
    """CTR baselines to train and evaluate."""
    baseline_epochs: int = 30
    """Maximum epochs per baseline (early stopping on validation AUC)."""
    scorer: str = "hf"
    """Scorer spec for the zero-shot LLM (see ``coral.llm.make_scorer``)."""
    align: bool = True
    """Align the scorer (``coral align``) and add rows that use it."""
    align_method: str = "head"
    """Alignment method: head (a readout on the frozen LLM's last hidden state) or lora."""
    align_examples: int = 256
    """Training prompts of the alignment (class-balanced sample of training interactions)."""
    methods: list[str] = field(default_factory=lambda: ["llm-only", "coral-random", "coral-ppo", "coral-ddpg"])
    """LLM methods (llm-only, coral-random, coral-greedy, coral-ppo, coral-ddpg, coral-maskable_ppo),
    run with the aligned scorer when ``align`` is on, else with ``scorer``."""
    zero_shot_methods: list[str] = field(default_factory=lambda: ["llm-only"])
    """LLM methods also run with the zero-shot ``scorer`` when ``align`` is on."""
    warm_starts: list[str] = field(default_factory=lambda: ["dfm"])
    """Warm starts of the RL policies (dfm, wdl, afm, dcn, none)."""
    ppo_timesteps: int = 256
    """PPO training timesteps per (warm start, seed)."""
    ddpg_timesteps: int = 256
    """DDPG training timesteps (the paper uses 2000; the default keeps `coral run` under 20 minutes)."""
    rounds: int = 5
    """Retrieval rounds at evaluation (the paper's K)."""
    max_eval: int = 0
    """Evaluate the LLM methods on at most this many test interactions (a seeded subset keeping
    both classes); 0 = the whole test split, as the baselines."""
    valid_limit: int = 48
    """Validation interactions (a seeded subset keeping both classes) that tune each LLM method's
    F1 threshold; 0 = the whole validation split. The LLM dominates the run's time."""
    n_envs: int = 8
    """Parallel episodes whose prompts are scored in one batch."""
    resume_training: bool = False
    """Continue a killed policy training from its last checkpoint. Off by default: a resumed PPO
    run is not bit-identical to an uninterrupted one, and the main job's table must be."""

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        """Read a YAML file of top-level keys named like the fields; unknown keys are an error."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise CoralError(f"{path}: config file not found") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise CoralError(f"{path}{where}: not valid YAML") from None
        if not isinstance(data, dict):
            raise CoralError(f"{path}: expected a mapping of config keys at the top level")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise CoralError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(names)}")
        config = cls()
        for key, value in data.items():
            default = getattr(config, key)
            if isinstance(default, list) and not isinstance(value, list):
                value = [value]
            if isinstance(default, list) and default and not all(isinstance(v, type(default[0])) for v in value):
                raise CoralError(f"{source}: {key} must be a list of {type(default[0]).__name__}, got {value!r}")
            if isinstance(default, bool) and not isinstance(value, bool):
                raise CoralError(f"{source}: {key} must be true or false, got {value!r}")
            if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, (int, float)):
                raise CoralError(f"{source}: {key} must be a number, got {value!r}")
            setattr(config, key, value)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
