"""Scoring with an LLM aligned by ``coral align``: the alignment directory's layout, its identity, its scorer.

Layout of an alignment directory::

    align.json        config, method, dataset and prompt version it was trained for
    adapter/          peft LoRA adapter (method "lora")
    head.safetensors  readout weights (method "head")
    topk.safetensors  the fine-tuned top layers and final norm (method "topk"); the model ends there
    cf.safetensors    the soft-token projection and its embedding tables (method "topk" with prompt.cf_tokens)
    train_log.jsonl   one line per optimiser step / epoch
    examples.jsonl    the training examples (targets and evidence; methods lora and head)
    targets.npz       the training targets and the early-stopping pairs (method topk)
    metrics.json      validation figures
    checkpoints/      per-epoch and latest training state (resume)

The identity hashes ``align.json``'s config and the weight files, so any change to the adapter
changes the scorer's fingerprint and so every cache key built from it. ``coral.align`` writes
these directories; this module only reads them, so that ``make_scorer("aligned:DIR")`` needs
nothing above the LLM layer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from coral.errors import CoralError

META_FILE = "align.json"
ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
TOPK_FILE = "topk.safetensors"
CF_FILE = "cf.safetensors"
LOG_FILE = "train_log.jsonl"
EXAMPLES_FILE = "examples.jsonl"
TARGETS_FILE = "targets.npz"
METRICS_FILE = "metrics.json"
#: Bump when the layout or meaning of the files changes.
FORMAT_VERSION = 1
#: ``AlignConfig.topk_targets``'s default; a topk scorer aligned on another number of targets is named after it.
DEFAULT_TOPK_TARGETS = 600
#: ``AlignConfig.topk_epochs``'s default; a topk scorer trained for another number, or stopped partway through a
#: longer schedule, is named after it.
DEFAULT_TOPK_EPOCHS = 2


def weight_files(directory: Path, meta: dict[str, Any]) -> list[Path]:
    """The files that hold an aligned scorer's weights (what its identity hashes)."""
    method = meta["method"]
    if method == "lora":
        return sorted(p for p in (directory / ADAPTER_DIR).iterdir() if p.is_file())
    if method == "topk":
        return [directory / TOPK_FILE] + ([directory / CF_FILE] if prompt_config_of(meta).cf_tokens else [])
    return [directory / HEAD_FILE]


def prompt_config_of(meta: dict[str, Any]) -> Any:
    """The :class:`~coral.llm.prompt.PromptConfig` an aligned scorer was trained with (from its ``align.json``)."""
    from coral.llm.prompt import PromptConfig

    config = meta["config"]
    if "prompt" in config:
        return PromptConfig.from_dict(config["prompt"])
    return PromptConfig(chat_template=bool(config.get("chat_template", True)))  # written before the prompt section


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``align.json`` of an alignment directory.

    :raises CoralError: when the directory holds no finished alignment.
    """
    path = Path(directory).expanduser() / META_FILE
    if not path.is_file():
        raise CoralError(
            f"{Path(directory)} is not a finished alignment directory (no {META_FILE}); run `coral align --out "
            f"{directory}`"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise CoralError(f"{path}: alignment format {meta.get('format')} is not supported (expected {FORMAT_VERSION})")
    return meta


def identity(directory: str | Path) -> str:
    """A short hash of an aligned scorer: its config, method, prompt version and weight files' bytes."""
    directory = Path(directory).expanduser()
    meta = read_meta(directory)
    h = hashlib.sha256()
    h.update(
        json.dumps({k: meta[k] for k in ("config", "method", "prompt_version", "format")}, sort_keys=True).encode()
    )
    files = weight_files(directory, meta)
    if not files or not all(f.is_file() for f in files):
        raise CoralError(f"{directory}: the {meta['method']} weights are missing")
    for f in files:
        h.update(f.name.encode() + b"\x00")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_aligned_model(directory: str | Path, precision: str | None = None) -> tuple[Any, Any, Any, dict]:
    """(model, tokenizer, head or None, meta): the base LLM with the LoRA adapter merged in, or with its head.

    The weights are put together in fp32 and then converted to ``precision``, so that an int8 precision
    quantises the fine-tuned weights (and calibrates on the aligned model itself).

    :param directory: an alignment directory.
    :param precision: "float32", "int8", "bfloat16", or None / "auto" (:func:`coral.llm.precision.default_precision`).
    """
    from coral.llm.model import load_model
    from coral.llm.precision import apply_precision, resolve_precision

    directory = Path(directory).expanduser()
    meta = read_meta(directory)
    config = meta["config"]
    precision = resolve_precision(precision)
    model, tokenizer = load_model(config["base_model"], "float32")
    head = None
    if meta["method"] == "lora":
        from peft import PeftModel

        # Merged for inference: the scorer then runs the plain model at full speed.
        model = PeftModel.from_pretrained(model, directory / ADAPTER_DIR).merge_and_unload()
    elif meta["method"] == "topk":
        model = _with_topk_layers(model, directory / TOPK_FILE, int(config["topk_trunk"]) + int(config["topk_layers"]))
    else:
        from safetensors.torch import load_file

        from coral.llm.readout import LinearReadout

        state = load_file(str(directory / HEAD_FILE))
        head = LinearReadout(int(state["linear.weight"].shape[1]))
        head.load_state_dict(state)
        head.eval()
    model = apply_precision(model.eval(), precision, tokenizer=tokenizer, model_key=f"aligned:{identity(directory)}")
    return model, tokenizer, head, meta


def _with_topk_layers(model: Any, path: Path, n_layers: int) -> Any:
    """``model`` with the fine-tuned layers and norm of ``path`` put in, cut to its first ``n_layers`` layers."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path))
    result = model.load_state_dict({k: v.to(next(model.parameters()).dtype) for k, v in state.items()}, strict=False)
    if result.unexpected_keys:
        raise CoralError(f"{path}: weights the model does not have: {', '.join(result.unexpected_keys[:3])}")
    model.model.layers = torch.nn.ModuleList(list(model.model.layers)[:n_layers])
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = list(model.config.layer_types)[:n_layers]
    return model


def load_soft_tokens(directory: str | Path, meta: dict[str, Any], tokenizer: Any) -> Any:
    """The aligned scorer's :class:`~coral.llm.soft_tokens.SoftTokens`, or None when it was trained without them."""
    n_tokens = prompt_config_of(meta).cf_tokens
    if not n_tokens:
        return None
    from safetensors.torch import load_file

    from coral.llm.prompt import cf_marker
    from coral.llm.soft_tokens import CFProjection, SoftTokens, marker_token_id

    projection = CFProjection.from_state(load_file(str(Path(directory).expanduser() / CF_FILE)), n_tokens)
    marker = marker_token_id(tokenizer, cf_marker(tokenizer))
    return SoftTokens(projection, marker, layer=int(meta["config"]["topk_trunk"]))


def scorer_name(meta: dict[str, Any]) -> str:
    """What produced an aligned scorer ("probe", "LoRA-top12", "top2-finetune+rates+cf4+tally",
    "top2-finetune+rates+cf4+cfdrop50", "top2-finetune+rates+cf4+targets8679",
    "top8-finetune+rates+cf4+e1of2"), from its ``align.json``;
    a base LLM other than the embedded one is named after an "@"
    ("top2-finetune+rates+cf4@qwen2.5-coder-0.5b-instruct-q4"), so the rows of different models are named apart."""
    config = meta["config"]
    base = Path(config["base_model"]) if config.get("base_model") else None  # None: the embedded SmolLM2
    model = f"@{base.stem if base.suffix == '.gguf' else base.name}" if base else ""
    if meta["method"] == "topk":
        options = "".join(f"+{tag}" for tag in prompt_config_of(meta).option_tags())
        if config.get("cf_dropout", 0.0) > 0:  # a training option, not a prompt's: named after the prompt's tags
            options += f"+cfdrop{round(100 * config['cf_dropout'])}"
        if config.get("topk_targets", DEFAULT_TOPK_TARGETS) != DEFAULT_TOPK_TARGETS:  # so is the training set's size
            options += f"+targets{config['topk_targets']}"
        epochs = config.get("topk_epochs", DEFAULT_TOPK_EPOCHS)
        schedule = config.get("topk_schedule_epochs", 0) or epochs
        if (epochs, schedule) != (DEFAULT_TOPK_EPOCHS, DEFAULT_TOPK_EPOCHS):  # and so is its training's length
            options += f"+e{epochs}" + (f"of{schedule}" if schedule != epochs else "")
        return f"top{config['topk_layers']}-finetune{options}{model}"
    if meta["method"] == "lora":
        return f"LoRA-top{config['lora_layers'] or 'all'}{model}"
    return f"probe{model}"


def load_aligned_scorer(
    directory: str | Path, *, precision: str | None = None, batch_size: int = 8, kv_reuse: bool = True
):
    """An :class:`~coral.llm.hf.HFScorer` of an aligned LLM; ``make_scorer("aligned:DIR")`` calls this.

    Its fingerprint holds the alignment's :func:`identity`, so caches never mix aligned and raw scores.
    The returned scorer also carries ``prompt_version`` (the template it was trained on; it refuses
    other prompts), ``prompt_config`` (the settings that build them:
    :func:`coral.llm.prompt.scorer_prompt_builder`) and ``alignment`` (the directory's ``align.json``).

    :param directory: an alignment directory written by ``coral align``.
    :param precision: "float32", "int8", "bfloat16", or None / "auto" (the default precision).
    :param batch_size: prompts per forward pass.
    :param kv_reuse: reuse prefix key/value caches.
    """
    from coral.llm.hf import HFScorer
    from coral.llm.model import model_identity

    model, tokenizer, head, meta = load_aligned_model(directory, precision)
    scorer = HFScorer(
        model, tokenizer, model_id=model_identity(meta["config"]["base_model"]), batch_size=batch_size,
        kv_reuse=kv_reuse, head=head, fingerprint_extra=f"aligned={meta['method']}:{identity(directory)}",
        soft_tokens=load_soft_tokens(directory, meta, tokenizer),
    )
    scorer.prompt_version = meta["prompt_version"]
    scorer.prompt_config = prompt_config_of(meta)
    scorer.alignment = meta
    return scorer
