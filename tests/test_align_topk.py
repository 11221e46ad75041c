"""Top-k fine-tuning (align method topk): token trees, training on a cached trunk, save/load, folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llm_fixtures import small_dataset, tiny_llama

from coral.align.config import AlignConfig
from coral.align.topk import TopKHead, TreeBuilder, TreeSource, compute_trunk, predict
from coral.align.tree import supports_trees
from coral.data.folds import fold_interactions, tail_train_folds
from coral.evidence import Evidence
from coral.llm.hf import HFScorer
from coral.llm.labels import resolve_label_tokens
from coral.llm.prompt import PromptBuilder, PromptConfig
from coral.retrieval import WarmStartConfig


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def _source(dataset, row: int) -> TreeSource:
    u, i, y = int(dataset.valid.user[row]), int(dataset.valid.item[row]), int(dataset.valid.label[row])
    train = dataset.train
    pieces = [Evidence(int(a), int(b), int(c)) for a, b, c in zip(train.user, train.item, train.label) if (int(a), int(b)) != (u, i)]
    return TreeSource(u, i, y, {"nearest": tuple(pieces[:3]), "random": tuple(pieces[10:12])})


def test_tree_forward_equals_scoring_each_prompt(dataset):
    """A target's token tree through trunk + head gives the P(Yes) the scorer gives each prompt alone."""
    model, tokenizer = tiny_llama()
    model.eval()
    assert supports_trees(model)
    builder = PromptBuilder(dataset, PromptConfig(), tokenizer)
    source = _source(dataset, 0)
    tree = TreeBuilder(builder, tokenizer).tree(source)
    cache = compute_trunk(model, [tree], [source.label], depth=1, store=np.float32)
    half = compute_trunk(model, [tree], [source.label], depth=1)
    labels = resolve_label_tokens(tokenizer)
    head = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids)  # an unchanged copy of layer 1
    tree_p = predict(head, cache)
    scorer = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=False)
    for (name, k), p in tree_p.items():
        evidence = () if name == "none" else source.branches[name][:k]
        expected = scorer.score([builder.build(source.user, source.item, evidence)])[0]
        assert abs(float(p[0]) - float(expected)) < 1e-5, (name, k)
        assert abs(float(predict(head, half)[(name, k)][0]) - float(expected)) < 1e-3  # the float16 cache of training
    # Every prompt of the tree is read once: 1 without evidence, then one per piece of each branch.
    assert sorted(tree_p) == sorted([("none", 0)] + [("nearest", k) for k in (1, 2, 3)] + [("random", k) for k in (1, 2)])


def test_topk_alignment_trains_only_the_top_layers_and_loads_as_a_scorer(dataset, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from coral.align.run import run_alignment
    from coral.llm.aligned import TOPK_FILE, load_aligned_scorer, read_meta, scorer_name
    from coral.llm.model import load_model

    config = AlignConfig(
        method="topk", base_model=str(tiny_model_dir), warm=WarmStartConfig(warm_start="none", embedding_dim=8), topk_trunk=1, topk_layers=1,
        topk_targets=12, topk_stop_pairs=8, topk_epochs=1, topk_batch=4, topk_lr=1e-2, threads=1,
    )
    out = tmp_path / "aligned"
    meta = run_alignment(dataset, config, out, validate=False, progress=False)
    assert meta["method"] == "topk" and scorer_name(read_meta(out)) == "top1-finetune"
    summary = meta["summary"]
    assert summary["steps"] == 3 and summary["n_targets"] == 12 and summary["model_layers"] == 2
    base, _ = load_model(str(tiny_model_dir), "float32")
    layer_and_norm = sum(p.numel() for p in base.model.layers[1].parameters()) + sum(p.numel() for p in base.model.norm.parameters())
    assert summary["trainable_parameters"] == layer_and_norm
    saved = load_file(str(out / TOPK_FILE))
    assert saved and all(k.startswith(("model.layers.1.", "model.norm.")) for k in saved)

    scorer = load_aligned_scorer(out, layout="float32")  # compared weight by weight with the fp32 base
    layers = scorer.model.model.layers
    assert len(layers) == 2
    for name, value in layers[0].state_dict().items():  # the trunk is frozen
        assert torch.equal(value, base.model.layers[0].state_dict()[name])
    assert any(not torch.equal(v, base.model.layers[1].state_dict()[n]) for n, v in layers[1].state_dict().items())
    builder = PromptBuilder(dataset, PromptConfig(), scorer.tokenizer)
    p = scorer.score([builder.build(int(u), int(i)) for u, i in zip(dataset.valid.user[:4], dataset.valid.item[:4])])
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))


def test_alignment_targets_come_from_the_align_fold_only(dataset):
    folds = tail_train_folds(dataset)
    parts = [set(folds.rows(f).tolist()) for f in ("warm_start", "align", "episodes")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(len(dataset.tail_train)))
    align = fold_interactions(dataset, "align")
    held_out = {(int(u), int(i)) for split in (dataset.valid, dataset.test) for u, i in zip(split.user, split.item)}
    assert not held_out & {(int(u), int(i)) for u, i in zip(align.user, align.item)}


class _EvidenceReader:
    """A stub scorer: P(Yes) is the share of liked pieces in the evidence (0.5 without any)."""

    fingerprint = "stub"

    def score(self, prompts):
        return np.array([np.mean([e.label for e in p.evidence]) if p.evidence else 0.5 for p in prompts])


def test_evidence_controls_are_paired_and_leak_nothing(dataset):
    from coral.align.controls import control_evidence, evidence_controls
    from coral.align.topk import evidence_index
    from coral.retrieval import random_embeddings

    index = evidence_index(dataset, random_embeddings(dataset, dim=8, seed=0))
    rows = np.arange(len(dataset.valid))
    builder = PromptBuilder(dataset, PromptConfig(), None)
    figures = evidence_controls(_EvidenceReader(), dataset, builder, "valid", rows, index, k=3, seed=0, n_boot=200, progress=False)
    controls = figures["controls"]
    assert list(controls) == ["none", "nearest", "random", "shuffled"]
    assert controls["none"]["auc"] == 0.5  # a constant score
    for name in ("nearest", "random", "shuffled"):
        c = controls[name]
        assert c["low"] <= c["delta_vs_none"] <= c["high"] and abs(c["delta_vs_none"] - (c["auc"] - 0.5)) < 1e-12
    assert len(figures["nearest_by_pieces"]) == 4 and figures["nearest_by_pieces"][0] == 0.5
    evidence = control_evidence(index, dataset.valid.user, dataset.valid.item, 3, 0)
    held_out = {(int(u), int(i)) for split in (dataset.valid, dataset.test) for u, i in zip(split.user, split.item)}
    for name, per_target in evidence.items():
        for pieces in per_target:
            assert not {(e.user, e.item) for e in pieces} & held_out, name
