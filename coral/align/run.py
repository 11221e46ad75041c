"""One alignment run: examples -> LoRA or readout head -> saved result -> validation figures."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from coral.align.artifact import EXAMPLES_FILE, LOG_FILE, META_FILE, METRICS_FILE, read_meta, save_result
from coral.align.config import AlignConfig
from coral.align.examples import (
    AlignExample,
    EvidenceSampler,
    build_examples,
    check_no_heldout,
    load_examples,
    save_examples,
)
from coral.data.dataset import CoralDataset
from coral.errors import CoralError
from coral.io import atomic_write_json, atomic_write_npz

CONFIG_FILE = "config.json"
VALID_SCORES_FILE = "valid_scores.npz"


def prompt_builder(dataset: CoralDataset, tokenizer: Any, config: AlignConfig):
    """The prompt builder of the training prompts (``config.prompt``, saved with the scorer; chat template of
    ``tokenizer``)."""
    from coral.llm.prompt import PromptBuilder

    return PromptBuilder(dataset, config.prompt, tokenizer=tokenizer)


def _prepare_directory(out: Path, config: AlignConfig, restart: bool) -> None:
    """Create ``out``; refuse to mix two configs in one directory unless restarting."""
    config_path = out / CONFIG_FILE
    if restart and out.exists():
        for name in (
            META_FILE, CONFIG_FILE, LOG_FILE, EXAMPLES_FILE, METRICS_FILE, VALID_SCORES_FILE, "adapter",
            "head.safetensors", "checkpoints",
        ):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if config_path.is_file():
        previous = json.loads(config_path.read_text())
        if previous != config.to_dict():
            changed = sorted(
                k for k in set(previous) | set(config.to_dict()) if previous.get(k) != config.to_dict().get(k)
            )
            raise CoralError(
                f"{out} holds an alignment with another config (differs in {', '.join(changed)}); use another --out or "
                "--restart"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, config.to_dict())


def _examples(out: Path, dataset: CoralDataset, config: AlignConfig) -> list:
    """The training examples: read back from ``out`` (a resumed run), else sampled and saved; checked for leakage."""
    if (out / EXAMPLES_FILE).is_file():
        examples = load_examples(out / EXAMPLES_FILE)
    else:
        examples = build_examples(dataset, config, EvidenceSampler(dataset, config.warm))
        save_examples(out / EXAMPLES_FILE, examples)
    check_no_heldout(examples, dataset)
    return examples


def _tokenise(
    tokens: Any, builder: Any, examples: list, dataset: CoralDataset, config: AlignConfig
) -> tuple[list, np.ndarray, dict[str, Any]]:
    """(token ids, labels, summary) of the examples that fit in ``max_tokens``, in the scorer's own
    tokenisation, so that training sees exactly the token ids scoring will."""
    ids = [tokens.token_ids(builder.build(e.user, e.item, e.evidence)) for e in examples]
    keep = [j for j, x in enumerate(ids) if len(x) <= config.max_tokens]
    ids = [ids[j] for j in keep]
    labels = np.array([examples[j].label for j in keep], dtype=np.int64)
    summary: dict[str, Any] = {
        "n_examples": len(examples), "n_used": len(keep), "n_too_long": len(examples) - len(keep),
        "n_negative": int((labels == 0).sum()), "mean_tokens": float(np.mean([len(x) for x in ids])) if ids else 0.0,
        "policies": {p: sum(examples[j].policy == p for j in keep) for p in ("none", *config.policies)},
    }
    if len(set(labels.tolist())) < 2:
        raise CoralError(f"alignment examples of {dataset.name!r} hold a single class; cannot train a Yes/No readout")
    return ids, labels, summary


def _fit(
    model: Any, ids: list, labels: np.ndarray, tokens: Any, config: AlignConfig, out: Path, progress: bool
) -> tuple[Any, Any, dict[str, Any]]:
    """Train the LoRA adapters or the readout head, logging to ``train_log.jsonl``; returns (peft model, head, training
    summary)."""
    import torch

    with open(out / LOG_FILE, "a") as log_file:

        def log(row: dict) -> None:
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()

        if config.method == "lora":
            from coral.align.lora import attach_lora, train_lora

            peft_model = attach_lora(model, config)
            return peft_model, None, train_lora(peft_model, ids, labels, tokens.labels, config, out, progress, log)
        from sklearn.metrics import roc_auc_score

        from coral.align.head import fit_head, hidden_features

        t0 = time.monotonic()
        features = hidden_features(model, ids, progress)
        head = fit_head(features, labels, config)
        with torch.no_grad():
            train_p = torch.sigmoid(head(torch.from_numpy(features))).numpy()
        training = {"seconds": round(time.monotonic() - t0, 2), "train_auc": float(roc_auc_score(labels, train_p))}
        log(training)
        return None, head, training


def _train_and_save(out: Path, dataset: CoralDataset, config: AlignConfig, progress: bool, started: float) -> None:
    """Examples -> token ids -> adapters or head -> ``align.json`` and the weights in ``out``."""
    import torch

    from coral.llm.hf import HFScorer
    from coral.llm.model import load_model, model_identity

    model, tokenizer = load_model(config.base_model, "float32")
    # Trained whole in the config's dtype (a scoring precision converts the layers it computes in).
    model = model.to(getattr(torch, config.dtype))
    builder = prompt_builder(dataset, tokenizer, config)
    examples = _examples(out, dataset, config)
    tokens = HFScorer(model, tokenizer, model_id=model_identity(config.base_model), kv_reuse=False)
    ids, labels, summary = _tokenise(tokens, builder, examples, dataset, config)
    peft_model, head, summary["training"] = _fit(model, ids, labels, tokens, config, out, progress)
    summary["train_seconds"] = round(time.monotonic() - started, 2)
    save_result(
        out, config, peft_model=peft_model, head=head, dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint, prompt_version=builder.version, summary=summary,
    )


def _train_topk_and_save(out: Path, dataset: CoralDataset, config: AlignConfig, progress: bool, started: float) -> None:
    """Method topk: folds -> evidence index -> token trees -> frozen trunk -> top layers -> ``align.json`` and
    weights."""
    import torch

    from coral.align.topk import (
        STOP_NEAREST,
        TRAIN_NEAREST,
        TRAIN_RANDOM,
        TopKHead,
        TreeBuilder,
        compute_trunk,
        evidence_index,
        pick_targets,
        predict,
        stop_score,
        train_topk,
        tree_sources,
    )
    from coral.align.tree import supports_trees
    from coral.data.folds import fold_interactions, validation_roles
    from coral.llm.aligned import scorer_name
    from coral.llm.labels import resolve_label_tokens
    from coral.llm.model import load_model
    from coral.retrieval import resolve_embeddings

    model, tokenizer = load_model(config.base_model, "float32")
    n_layers = len(model.model.layers)
    if not supports_trees(model):
        raise CoralError(
            f"align method topk needs a Llama-type decoder; {config.base_model or 'the embedded model'} is not one"
        )
    if config.topk_trunk + config.topk_layers > n_layers:
        raise CoralError(
            f"topk_trunk + topk_layers = {config.topk_trunk + config.topk_layers} exceeds the model's {n_layers} "
            "decoder layers"
        )
    builder = prompt_builder(dataset, tokenizer, config)
    # Evidence distances from a warm start that never saw an alignment target's label.
    tables = resolve_embeddings(dataset, config.warm, seed=config.seed)  # fitted on head + the warm_start fold
    index = evidence_index(dataset, tables)
    rows = fold_interactions(dataset, "align", config.warm.folds)
    train_sources = tree_sources(
        rows, pick_targets(rows, config.topk_targets, config.seed), index, TRAIN_NEAREST, TRAIN_RANDOM, config.seed
    )
    # Early stopping reads only the validation split's "stop" role: never the threshold pairs or the tuning rows.
    stop_pool = validation_roles(dataset).stop
    stop_picked = stop_pool[pick_targets(dataset.valid.take(stop_pool), config.topk_stop_pairs, config.seed + 1)]
    stop_sources = tree_sources(dataset.valid, stop_picked, index, STOP_NEAREST, 0, config.seed)
    check_no_heldout(
        [
            AlignExample(s.user, s.item, s.label, tuple(e for b in s.branches.values() for e in b), "topk")
            for s in train_sources
        ],
        dataset,
    )
    trees = TreeBuilder(builder, tokenizer)
    dtype = getattr(torch, config.dtype)
    trunk_started = time.monotonic()
    train = compute_trunk(
        model, [trees.tree(s) for s in train_sources], [s.label for s in train_sources], config.topk_trunk, progress,
        dtype=dtype,
    )
    stop = compute_trunk(
        model, [trees.tree(s) for s in stop_sources], [s.label for s in stop_sources], config.topk_trunk, progress,
        dtype=dtype,
    )
    trunk_seconds = time.monotonic() - trunk_started
    if len(set(train.labels.tolist())) < 2 or len(set(stop.labels.tolist())) < 2:
        raise CoralError(f"alignment targets or the early-stopping slice of {dataset.name!r} hold a single class")
    labels = resolve_label_tokens(tokenizer)
    cf, marker = None, -1
    if config.prompt.cf_tokens:
        from coral.align.topk import unit_rms
        from coral.llm.soft_tokens import CFProjection, marker_token_id

        torch.manual_seed(config.seed)
        cf = CFProjection(
            unit_rms(tables.user), unit_rms(tables.item), config.prompt.cf_tokens, model.config.hidden_size,
            config.cf_hidden,
        )
        marker = marker_token_id(tokenizer, builder.cf_marker)
        train.pairs, stop.pairs = (
            np.array([(s.user, s.item) for s in sources], dtype=np.int64) for sources in (train_sources, stop_sources)
        )
    head = TopKHead(
        model, config.topk_trunk, config.topk_layers, labels.yes_ids, labels.no_ids, dtype=dtype, cf=cf,
        marker_id=marker,
    )
    before = stop_score(stop.labels, predict(head, stop))
    train_started = time.monotonic()
    with open(out / LOG_FILE, "a") as log_file:

        def log(row: dict) -> None:
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()

        trained = train_topk(
            head, train, lambda h: stop_score(stop.labels, predict(h, stop)),
            lr=config.topk_lr, epochs=config.topk_epochs, trees_per_step=config.topk_batch, seed=config.seed,
            cf_lr=config.cf_lr, cf_dropout=config.cf_dropout, schedule_epochs=config.topk_schedule_epochs, log=log,
        )
    summary = {
        "scorer_name": scorer_name({"method": config.method, "config": config.to_dict()}),
        "n_targets": len(train.trees), "n_negative": int((train.labels == 0).sum()), "train_tokens": train.tokens,
        "scored_prompts": int(sum(len(t.outputs) for t in train.trees)), "stop_pairs": len(stop.trees),
        "trunk_cpu_seconds": round(train.seconds + stop.seconds, 1), "train_cpu_seconds": round(trained.cpu_seconds, 1),
        "trunk_wall_seconds": round(trunk_seconds, 1), "train_wall_seconds": round(time.monotonic() - train_started, 1),
        "steps": trained.steps, "best_step": trained.best_step, "stop_score_before": round(before, 5),
        "stop_score_best": round(trained.best_score, 5),
        "trainable_parameters": int(sum(p.numel() for p in head.parameters() if p.requires_grad)),
        "model_layers": config.topk_trunk + config.topk_layers, "train_seconds": round(time.monotonic() - started, 2),
    }
    from coral.llm.aligned import TARGETS_FILE

    # The pairs actually trained on and stopped on, for audits (tests check them against the other folds).
    atomic_write_npz(
        out / TARGETS_FILE,
        **{
            f"{part}_{field}": np.array([getattr(s, field) for s in sources], dtype=np.int64)
            for part, sources in (("train", train_sources), ("stop", stop_sources))
            for field in ("user", "item", "label")
        },
    )
    cf_state = {k: v.detach().contiguous().clone() for k, v in cf.state_dict().items()} if cf is not None else None
    save_result(
        out, config, topk_state=head.state_for_model(), cf_state=cf_state, dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint, prompt_version=builder.version, summary=summary,
    )


def run_alignment(
    dataset: CoralDataset, config: AlignConfig, out: str | Path, *, validate: bool = True, restart: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Align the scorer to the Yes/No task on ``dataset``'s training split and save it in ``out``.

    Resumable: run again with the same config to continue after an interruption; a finished
    directory is only validated again if it has no metrics yet.

    :param dataset: the dataset; targets and evidence come from its training split only.
    :param config: the alignment config.
    :param out: the result directory (see :mod:`coral.llm.aligned`).
    :param validate: score the validation split with the aligned scorer (figures in ``metrics.json``).
    :param restart: discard what ``out`` holds and start over.
    :param progress: show progress bars.
    :returns: ``align.json``'s content plus ``validation`` (the figures) when validated.
    """
    import torch

    out = Path(out).expanduser()
    config = config.resolved()  # the directory's config names the dtype that trains it (not "auto")
    _prepare_directory(out, config, restart)
    torch.set_num_threads(config.threads)
    started = time.monotonic()
    if not (out / META_FILE).is_file():
        (_train_topk_and_save if config.method == "topk" else _train_and_save)(out, dataset, config, progress, started)
    meta = read_meta(out)
    if meta["dataset_fingerprint"] != dataset.fingerprint:
        raise CoralError(
            f"{out} was aligned on dataset {meta['dataset']!r} ({meta['dataset_fingerprint']}), not {dataset.name!r} "
            f"({dataset.fingerprint})"
        )
    if validate and not (out / METRICS_FILE).is_file():
        meta["validation"] = validate_alignment(out, dataset, config, progress)
    elif (out / METRICS_FILE).is_file():
        meta["validation"] = json.loads((out / METRICS_FILE).read_text())
    return meta


def validate_alignment(out: Path, dataset: CoralDataset, config: AlignConfig, progress: bool = True) -> dict[str, Any]:
    """Evidence diagnostics of the saved aligned scorer on the validation split, into ``metrics.json``."""
    from coral.align.artifact import load_aligned_scorer
    from coral.align.diagnostics import evidence_diagnostics, summary

    t0 = time.monotonic()
    scorer = load_aligned_scorer(out)
    builder = prompt_builder(dataset, scorer.tokenizer, config)
    full = evidence_diagnostics(
        scorer, dataset, builder, split="valid",
        rounds=max(1, config.rounds),
        policies=config.policies, warm=config.warm, n_pairs=config.n_valid, seed=config.seed, progress=progress,
    )
    diag = summary(full)
    diag["seconds"] = round(time.monotonic() - t0, 2)
    # The raw scores too, so that other figures (intervals, per-step) can be computed later.
    atomic_write_npz(
        out / VALID_SCORES_FILE, p=full["p"], labels=full["labels"], evidence_labels=full["evidence_labels"]
    )
    diag["fingerprint"] = scorer.fingerprint
    atomic_write_json(out / METRICS_FILE, diag)
    return diag
