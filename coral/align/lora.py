"""LoRA fine-tuning on the Yes/No readout (TALLRec's recipe), with checkpoints and resume.

Each forward pass is one prompt (no padding: on CPU batching buys little and padding costs);
``grad_accum`` prompts make an optimiser step. The state after every ``checkpoint_steps``
optimiser steps and at the end of every epoch goes to ``DIR/checkpoints/last`` (adapter,
optimiser, position), and each finished epoch's adapter to ``DIR/checkpoints/epoch-N``; a run
started again with the same config continues from ``last``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from coral.align.config import AlignConfig
from coral.errors import CoralError
from coral.llm.labels import LabelTokens
from coral.llm.readout import last_hidden, yes_no_logit

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"


def lora_config(config: AlignConfig, n_layers: int):
    """The peft LoraConfig of an alignment config.

    :param n_layers: the model's decoder layers (for ``lora_layers``).
    """
    from peft import LoraConfig

    layers = list(range(max(0, n_layers - config.lora_layers), n_layers)) if config.lora_layers else None
    return LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets), layers_to_transform=layers, bias="none", task_type="CAUSAL_LM",
    )


def attach_lora(model: Any, config: AlignConfig):
    """Wrap ``model`` in fresh LoRA adapters (seeded initialisation)."""
    from peft import get_peft_model

    torch.manual_seed(config.seed)
    return get_peft_model(model, lora_config(config, int(model.config.num_hidden_layers)))


def loss_weights(labels: np.ndarray, balance: str) -> tuple[float, float]:
    """(negative, positive) loss weights: inverse class frequency for ``balance="weight"``, else 1."""
    if balance != "weight":
        return 1.0, 1.0
    n, pos = len(labels), int(np.sum(labels))
    if pos == 0 or pos == n:
        return 1.0, 1.0
    return n / (2.0 * (n - pos)), n / (2.0 * pos)


def _save_state(directory: Path, model: Any, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Write adapter + optimiser + position to ``directory`` atomically (written aside, then swapped)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    model.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _load_state(directory: Path, model: Any, optimizer: torch.optim.Optimizer, config_hash: str) -> dict | None:
    """Restore a checkpoint written by :func:`_save_state`; None when there is none."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state_file = directory / STATE_FILE
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("config_hash") != config_hash:
        raise CoralError(
            f"{directory} holds a checkpoint of another alignment config ({state.get('config_hash')} vs "
            f"{config_hash}); use a new --out or --restart"
        )
    set_peft_model_state_dict(model, load_file(directory / "adapter_model.safetensors"))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    return state


def lr_schedule(config: AlignConfig, total_steps: int) -> Callable[[int], float]:
    """The learning rate of each optimiser step: linear warm-up over the first 10% of steps, then linear decay to
    10%."""

    def lr_at(step: int) -> float:
        warm = max(1, total_steps // 10)
        if step < warm:
            return config.lr * (step + 1) / warm
        return config.lr * max(0.1, 1.0 - (step - warm) / max(1, total_steps - warm))

    return lr_at


def _accumulate(
    peft_model: Any, token_ids: Sequence[Sequence[int]], labels: np.ndarray, chunk: np.ndarray,
    weights: tuple[float, float], label_tokens: LabelTokens, bar: Any,
) -> list[float]:
    """Forward and backward passes of one optimiser step's prompts, one prompt at a time (gradients
    accumulate, each loss weighted by its class weight over the chunk's sum); returns their losses."""
    w_neg, w_pos = weights
    losses = []
    weight_sum = float(sum(w_pos if labels[j] else w_neg for j in chunk))
    for j in chunk:
        ids = torch.tensor([list(token_ids[j])], dtype=torch.long)
        z = yes_no_logit(peft_model, last_hidden(peft_model, ids), label_tokens)
        y = torch.tensor([float(labels[j])])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        w = w_pos if labels[j] else w_neg
        (loss * (w / weight_sum)).backward()
        losses.append(loss.item())
        bar.update(1)
    return losses


def _end_epoch(
    state: dict, running: list[float], peft_model: Any, optimizer: Any, config: AlignConfig, out_dir: Path,
    log: Callable[[dict], None],
) -> None:
    """Log the epoch's mean loss, checkpoint as ``last`` and keep a copy as ``epoch-<k>``."""
    epoch = state["epoch"]
    last_dir = out_dir / CHECKPOINT_DIR / "last"
    state["epoch_losses"] = [*state["epoch_losses"], float(np.mean(running)) if running else float("nan")]
    log({"epoch": epoch, "epoch_loss": state["epoch_losses"][-1], "seconds": round(state["seconds"], 2)})
    state.update(epoch=epoch + 1, done=0, running=[])
    _save_state(last_dir, peft_model, optimizer, {**state, "config_hash": config.hash})
    epoch_dir = out_dir / CHECKPOINT_DIR / f"epoch-{epoch + 1}"
    shutil.rmtree(epoch_dir, ignore_errors=True)
    shutil.copytree(last_dir, epoch_dir, ignore=shutil.ignore_patterns("optimizer.pt"))


def train_lora(
    peft_model: Any, token_ids: Sequence[Sequence[int]], labels: np.ndarray, label_tokens: LabelTokens,
    config: AlignConfig, out_dir: Path, progress: bool = True, log: Callable[[dict], None] = lambda row: None,
) -> dict:
    """Fine-tune the adapters of ``peft_model`` on prompts (token ids) and their 0/1 labels.

    Loss: binary cross-entropy of the Yes-vs-No logit (the 2-way softmax over the label tokens),
    weighted per class when ``config.balance == "weight"``. Resumes from ``out_dir/checkpoints/last``.

    :param peft_model: a model from :func:`attach_lora`.
    :param token_ids: one token-id list per prompt (the scorer's tokenisation).
    :param labels: (n,) 0/1 labels.
    :param label_tokens: the Yes/No token ids.
    :param out_dir: the run's directory (checkpoints go below it).
    :param progress: show a progress bar.
    :param log: called with one dict per optimiser step and per epoch (the training log).
    :returns: a summary (steps, seconds, final mean loss per epoch).
    """
    from tqdm.auto import tqdm

    labels = np.asarray(labels, dtype=np.int64)
    n = len(token_ids)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    lr_at = lr_schedule(config, -(-n // config.grad_accum) * config.epochs)
    weights = loss_weights(labels, config.balance)
    last_dir = out_dir / CHECKPOINT_DIR / "last"
    state = _load_state(last_dir, peft_model, optimizer, config.hash) or {
        "epoch": 0, "done": 0, "step": 0, "seconds": 0.0, "epoch_losses": [],
    }
    if state["epoch"] >= config.epochs:  # finished earlier: the adapters are restored, nothing to do
        peft_model.eval()
        return {k: state[k] for k in ("step", "seconds", "epoch_losses")}
    peft_model.train()
    bar = tqdm(
        total=n * config.epochs, initial=state["epoch"] * n + state["done"], desc="align (lora)", unit="prompt",
        disable=not progress,
    )
    started = time.monotonic() - state["seconds"]
    while state["epoch"] < config.epochs:
        epoch = state["epoch"]
        order = np.random.default_rng([config.seed, 1000 + epoch]).permutation(n)
        running: list[float] = list(state.get("running", []))
        while state["done"] < n:
            chunk = order[state["done"] : state["done"] + config.grad_accum]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state["step"])
            optimizer.zero_grad(set_to_none=True)
            losses = _accumulate(peft_model, token_ids, labels, chunk, weights, label_tokens, bar)
            optimizer.step()
            state["done"] += len(chunk)
            state["step"] += 1
            running.extend(losses)
            state["running"] = running
            state["seconds"] = time.monotonic() - started
            log(
                {
                    "epoch": epoch, "step": state["step"], "loss": float(np.mean(losses)),
                    "lr": lr_at(state["step"] - 1), "seconds": round(state["seconds"], 2),
                }
            )
            bar.set_postfix(loss=f"{np.mean(running[-64:]):.3f}")
            if config.checkpoint_steps and state["step"] % config.checkpoint_steps == 0 and state["done"] < n:
                _save_state(last_dir, peft_model, optimizer, {**state, "config_hash": config.hash})
        _end_epoch(state, running, peft_model, optimizer, config, out_dir, log)
    bar.close()
    peft_model.eval()
    return {k: state[k] for k in ("step", "seconds", "epoch_losses")}
