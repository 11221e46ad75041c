"""The alignment run's knobs. Every field is saved with the result and hashed into its identity."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from coral.config import added, config_hash, from_dict, require, section, to_dict
from coral.evidence import ROUNDS
from coral.llm.aligned import DEFAULT_TOPK_EPOCHS, DEFAULT_TOPK_TARGETS
from coral.llm.prompt import PromptConfig
from coral.retrieval import WarmStartConfig

Method = Literal["lora", "head", "topk"]
Balancing = Literal["sample", "weight", "none"]
Policy = Literal["random", "greedy"]
METHODS: tuple[str, ...] = get_args(Method)
BALANCING: tuple[str, ...] = get_args(Balancing)
POLICIES: tuple[str, ...] = get_args(Policy)


@dataclass(frozen=True)
class AlignConfig:
    """How the scorer is aligned to the Yes/No task. Defaults fit 10 minutes on 2 CPU cores (gift_cards)."""

    method: Method = "head"
    """head ("probe"): a logistic readout on the frozen LLM's last hidden state; lora: LoRA fine-tuning of the LLM
    (TALLRec); topk ("top<k>-finetune"): the top layers of a shortened LLM fine-tuned on prompts with evidence, the
    scorer that reads evidence (experiments/notes/align.md)."""
    base_model: str | None = None
    """HF model directory or .gguf file of the LLM; None = the embedded SmolLM2-135M-Instruct."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Arithmetic while training: topk in bfloat16 = bf16 linear products with fp32 accumulation (trunk and
    trained layers; fp32 weights), lora/head = the whole model in that dtype; auto = bfloat16 for topk where the
    CPU has AMX/AVX512-BF16 and the recorded parity check passed, else float32 (coral.align.precision)."""
    seed: int = 0
    """Seed of the example sampling, the evidence draws and the LoRA initialisation."""
    n_train: int = 128
    """Training prompts (sub-sampled from the training split; a negative may appear several times with different
    evidence)."""
    source_split: Literal["train", "tail_train"] = "train"
    """Where training targets come from: the whole training split or its tail-item part."""
    balance: Balancing = "sample"
    """Class balance: sample = half the prompts are negatives (re-drawn with other evidence); weight = inverse-frequency
    loss weights."""
    rounds: int = ROUNDS
    """K: each prompt gets a collaborative block of 0..K pieces of evidence (uniform), as the evaluation's K rounds."""
    policies: tuple[Policy, ...] = POLICIES
    """Retrieval policies that pick the evidence, one drawn uniformly per prompt: random (uniform over training
    interactions) and greedy (the observed training interactions nearest to the target pair in warm-start
    embeddings)."""
    warm: WarmStartConfig = section(WarmStartConfig, flat=True)
    """The greedy policy's and method topk's evidence embeddings (as the environment's warm start, seed 0), and the
    tail-train folds: the warm start is fitted on head + its fold, alignment targets come from the align fold."""
    prompt: PromptConfig = section(PromptConfig)
    """How the training prompts are written; saved with the scorer, so that every place that scores it builds the same
    prompts (coral.llm.prompt.scorer_prompt_builder). prompt.cf_tokens > 0 trains a projection of the warm-start
    user and item embeddings into that many soft tokens (method topk)."""
    max_tokens: int = 512
    """Prompts longer than this are left out of training (the environment never truncates)."""
    # ---- LoRA ----
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    """Linear modules that get adapters."""
    lora_layers: int = 12
    """Adapt only the top this-many decoder layers (0 = all). Fewer layers means a shorter backward pass."""
    lr: float = 1e-3
    """AdamW peak learning rate of the adapters."""
    epochs: int = 1
    """Passes over the training prompts (LoRA)."""
    grad_accum: int = 8
    """Prompts per optimiser step (each forward pass is one prompt: no padding waste on CPU)."""
    checkpoint_steps: int = 8
    """Also checkpoint every this-many optimiser steps inside an epoch (0 = per epoch only)."""
    # ---- top-k fine-tuning (method topk) ----
    topk_trunk: int = 14
    """Frozen decoder layers below the trained ones (computed once per training target); every layer above
    topk_trunk + topk_layers is dropped, so the scorer is a shortened LLM."""
    topk_layers: int = 2
    """Decoder layers fine-tuned (with the final norm) on top of the frozen trunk."""
    topk_targets: int = DEFAULT_TOPK_TARGETS
    """Alignment-fold targets (all of the fold when it holds fewer); each is one token tree of 1 + 5 nearest + 3
    random prompts. A scorer aligned on another number is named after it (``+targets2400``)."""
    topk_stop_pairs: int = 200
    """Validation pairs of the early-stopping slice (each scored with 0..5 nearest pieces)."""
    topk_lr: float = 2e-4
    """AdamW peak learning rate of the fine-tuned layers (10% warm-up, linear decay to 10%)."""
    topk_epochs: int = DEFAULT_TOPK_EPOCHS
    """Passes over the training targets."""
    topk_schedule_epochs: int = added(0)
    """Length in epochs of the learning-rate schedule (0 = topk_epochs); above topk_epochs, training stops that far
    into a longer schedule (its first topk_epochs epochs, step for step)."""
    topk_batch: int = 8
    """Targets (trees) per optimiser step."""
    cf_hidden: int = 256
    """Method topk with prompt.cf_tokens: hidden units of the two-layer projection of [e_u, e_i, e_u * e_i] into the
    soft tokens."""
    cf_lr: float = 1e-3
    """Method topk with prompt.cf_tokens: AdamW peak learning rate of the projection (its output layer starts at zero:
    the scorer starts as the model without soft tokens)."""
    cf_dropout: float = added(0.0)
    """Method topk with prompt.cf_tokens: the share of training trees (drawn afresh each epoch) whose soft tokens are
    left out, their placeholders read as plain text, so that the trained layers must also predict from the evidence
    and the text alone; scoring always adds the soft tokens."""
    # ---- readout head ----
    head_c: float = 0.1
    """Inverse L2 strength (scikit-learn's C) of the logistic readout, on standardised features."""
    # ---- validation ----
    n_valid: int = 40
    """Validation interactions scored to report the result (0 = all): every negative (up to half) plus random
    positives."""
    threads: int = 2
    """torch threads."""

    def __post_init__(self) -> None:
        require(
            bool(self.policies) and set(self.policies) <= set(POLICIES),
            "policies",
            f"must be a non-empty subset of {', '.join(POLICIES)}, got {self.policies}",
        )
        require(self.n_train >= 2, "n_train", f"must be >= 2, got {self.n_train}")
        require(self.rounds >= 0, "rounds", f"must be >= 0, got {self.rounds}")
        for name in (
            "epochs", "grad_accum", "lora_r", "threads", "topk_layers", "topk_targets", "topk_epochs", "topk_batch",
        ):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.topk_lr > 0, "topk_lr", f"must be > 0, got {self.topk_lr}")
        require(
            self.cf_lr > 0 and self.cf_hidden >= 1,
            "cf_lr",
            f"cf_lr must be > 0 and cf_hidden >= 1, got {self.cf_lr}, {self.cf_hidden}",
        )
        require(
            self.method == "topk" or not self.prompt.cf_tokens,
            "prompt.cf_tokens",
            f"soft tokens are trained by method topk only, not {self.method!r}",
        )
        require(
            0 <= self.cf_dropout < 1 and (self.cf_dropout == 0 or self.prompt.cf_tokens > 0),
            "cf_dropout",
            f"must be in [0, 1) and needs prompt.cf_tokens > 0, got {self.cf_dropout} with "
            f"{self.prompt.cf_tokens} soft tokens",
        )
        for name in ("lora_layers", "checkpoint_steps", "n_valid", "topk_trunk", "topk_stop_pairs"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(
            self.topk_schedule_epochs == 0 or self.topk_schedule_epochs >= self.topk_epochs,
            "topk_schedule_epochs",
            f"must be 0 or >= topk_epochs ({self.topk_epochs}), got {self.topk_schedule_epochs}",
        )
        object.__setattr__(self, "policies", tuple(self.policies))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def resolved(self) -> "AlignConfig":
        """This config with ``dtype`` ``auto`` replaced by what this machine picks
        (:func:`coral.align.precision.resolve_align_dtype`),
        so that a result and a stage identity name the arithmetic that produced them."""
        from coral.align.precision import resolve_align_dtype

        return dataclasses.replace(self, dtype=resolve_align_dtype(self.dtype, self.method))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AlignConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a result written by another version)."""
        return from_dict(cls, data, where="align config")

    @property
    def hash(self) -> str:
        """A short stable hash of every field."""
        return config_hash(self)

    def replace(self, **changes: Any) -> "AlignConfig":
        return dataclasses.replace(self, **changes)
