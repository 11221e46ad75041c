"""Top-k fine-tuning (align method topk): token trees, training on a cached trunk, save/load, folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llm_fixtures import small_dataset, tiny_llama

from coral.align.config import AlignConfig
from coral.align.topk import TopKHead, TreeBuilder, TreeSource, compute_trunk, predict, train_topk
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
    pieces = [
        Evidence(int(a), int(b), int(c))
        for a, b, c in zip(train.user, train.item, train.label, strict=False)
        if (int(a), int(b)) != (u, i)
    ]
    return TreeSource(u, i, y, {"nearest": tuple(pieces[:3]), "random": tuple(pieces[10:12])})


@pytest.mark.parametrize("tally", [False, True])
def test_tree_forward_equals_scoring_each_prompt(dataset, tally):
    """A target's token tree through trunk + head gives the P(Yes) the scorer gives each prompt alone (with the
    evidence tally too: each branch counts its own pieces)."""
    model, tokenizer = tiny_llama()
    model.eval()
    assert supports_trees(model)
    builder = PromptBuilder(dataset, PromptConfig(evidence_tally=tally), tokenizer)
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
    assert sorted(tree_p) == sorted(
        [("none", 0)] + [("nearest", k) for k in (1, 2, 3)] + [("random", k) for k in (1, 2)]
    )


def test_topk_alignment_trains_only_the_top_layers_and_loads_as_a_scorer(dataset, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from coral.align.run import run_alignment
    from coral.llm.aligned import TOPK_FILE, load_aligned_scorer, read_meta, scorer_name
    from coral.llm.model import load_model

    config = AlignConfig(
        method="topk", base_model=str(tiny_model_dir), warm=WarmStartConfig(warm_start="none", embedding_dim=8),
        topk_trunk=1, topk_layers=1, topk_targets=12, topk_stop_pairs=8, topk_epochs=1, topk_batch=4, topk_lr=1e-2,
        threads=1,
    )
    out = tmp_path / "aligned"
    meta = run_alignment(dataset, config, out, validate=False, progress=False)
    assert meta["method"] == "topk"
    assert scorer_name(read_meta(out)) == f"top1-finetune+targets12+e1@{tiny_model_dir.name}"
    summary = meta["summary"]
    assert summary["steps"] == 3 and summary["n_targets"] == 12 and summary["model_layers"] == 2
    base, _ = load_model(str(tiny_model_dir), "float32")
    layer_and_norm = sum(p.numel() for p in base.model.layers[1].parameters()) + sum(
        p.numel() for p in base.model.norm.parameters()
    )
    assert summary["trainable_parameters"] == layer_and_norm
    saved = load_file(str(out / TOPK_FILE))
    assert saved and all(k.startswith(("model.layers.1.", "model.norm.")) for k in saved)

    scorer = load_aligned_scorer(out, precision="float32")  # compared weight by weight with the fp32 base
    layers = scorer.model.model.layers
    assert len(layers) == 2
    for name, value in layers[0].state_dict().items():  # the trunk is frozen
        assert torch.equal(value, base.model.layers[0].state_dict()[name])
    assert any(not torch.equal(v, base.model.layers[1].state_dict()[n]) for n, v in layers[1].state_dict().items())
    builder = PromptBuilder(dataset, PromptConfig(), scorer.tokenizer)
    p = scorer.score(
        [builder.build(int(u), int(i)) for u, i in zip(dataset.valid.user[:4], dataset.valid.item[:4], strict=False)]
    )
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))


def test_alignment_targets_come_from_the_align_fold_only(dataset):
    folds = tail_train_folds(dataset)
    parts = [set(folds.rows(f).tolist()) for f in ("warm_start", "align", "episodes")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert set().union(*parts) == set(range(len(dataset.tail_train)))
    align = fold_interactions(dataset, "align")
    held_out = {
        (int(u), int(i))
        for split in (dataset.valid, dataset.test)
        for u, i in zip(split.user, split.item, strict=False)
    }
    assert not held_out & {(int(u), int(i)) for u, i in zip(align.user, align.item, strict=False)}


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
    figures = evidence_controls(
        _EvidenceReader(), dataset, builder, "valid", rows, index, k=3, seed=0, n_boot=200, progress=False
    )
    controls = figures["controls"]
    assert list(controls) == ["none", "nearest", "random", "shuffled"]
    assert controls["none"]["auc"] == 0.5  # a constant score
    for name in ("nearest", "random", "shuffled"):
        c = controls[name]
        assert c["low"] <= c["delta_vs_none"] <= c["high"] and abs(c["delta_vs_none"] - (c["auc"] - 0.5)) < 1e-12
    assert len(figures["nearest_by_pieces"]) == 4 and figures["nearest_by_pieces"][0] == 0.5
    evidence = control_evidence(index, dataset.valid.user, dataset.valid.item, 3, 0)
    held_out = {
        (int(u), int(i))
        for split in (dataset.valid, dataset.test)
        for u, i in zip(split.user, split.item, strict=False)
    }
    for name, per_target in evidence.items():
        for pieces in per_target:
            assert not {(e.user, e.item) for e in pieces} & held_out, name


def test_evidence_controls_reuse_each_rounds_prefixes(dataset):
    """The controls score round by round, so a scorer with prefix reuse computes each target block once and each
    nearest piece once; its P(Yes) equal every prompt scored whole."""
    from coral.align.controls import control_evidence, evidence_controls
    from coral.align.topk import evidence_index
    from coral.retrieval import random_embeddings

    model, tokenizer = tiny_llama()
    model.eval()
    index = evidence_index(dataset, random_embeddings(dataset, dim=8, seed=0))
    rows = np.arange(6)
    builder = PromptBuilder(dataset, PromptConfig(evidence_tally=True), tokenizer)
    reusing = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=True)
    figures = evidence_controls(reusing, dataset, builder, "valid", rows, index, k=3, seed=0, n_boot=50, progress=False)
    stats = reusing.stats()
    assert stats["tokens_reused"] > stats["tokens_computed"]  # each round extends the cached prefixes
    whole = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=False)
    evidence = control_evidence(index, dataset.valid.user[rows], dataset.valid.item[rows], 3, 0)
    users, items = dataset.valid.user[rows], dataset.valid.item[rows]
    expected = whole.score(
        [builder.build(int(u), int(i), ev) for u, i, ev in zip(users, items, evidence["nearest"], strict=True)]
    )
    assert np.abs(np.asarray(figures["p"]["nearest"]) - expected).max() < 1e-5


def _cf_projection(dataset, n_tokens: int, width: int, seed: int = 0):
    """A soft-token projection with random (non-zero) weights on random tables."""
    from coral.llm.soft_tokens import CFProjection

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    cf = CFProjection(
        rng.normal(size=(dataset.n_users, 4)), rng.normal(size=(dataset.n_items, 4)), n_tokens, width, hidden=8
    )
    with torch.no_grad():
        cf.outer.weight.normal_(0, 0.5)
    return cf


def test_soft_tokens_in_the_tree_equal_soft_tokens_in_the_scorer(dataset):
    """Training (the tree with the projection added at the first trained layer) and scoring (HFScorer with
    SoftTokens, prefix reuse on) compute the same P(Yes), and the soft tokens do change it."""
    from coral.llm.prompt import CF_MARKER
    from coral.llm.soft_tokens import SoftTokens, marker_token_id

    model, tokenizer = tiny_llama()
    builder = PromptBuilder(dataset, PromptConfig(cf_tokens=3), tokenizer)
    marker = marker_token_id(tokenizer, CF_MARKER)
    cf = _cf_projection(dataset, 3, model.config.hidden_size)
    labels = resolve_label_tokens(tokenizer)
    head = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids, cf=cf, marker_id=marker)
    plain = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids)
    scorer = HFScorer(model, tokenizer, model_id="tiny", kv_reuse=True, soft_tokens=SoftTokens(cf, marker, layer=1))
    for row in (0, 1):
        source = _source(dataset, row)
        cache = compute_trunk(
            model, [TreeBuilder(builder, tokenizer).tree(source)], [source.label], depth=1, store=np.float32
        )
        cache.pairs = np.array([[source.user, source.item]])
        tree_p, without = predict(head, cache), predict(plain, cache)
        for (name, k), p in tree_p.items():
            evidence = () if name == "none" else source.branches[name][:k]
            expected = scorer.score([builder.build(source.user, source.item, evidence)])[
                0
            ]  # later prompts reuse the cached prefix
            assert abs(float(p[0]) - float(expected)) < 1e-5, (row, name, k)
        assert max(abs(float(tree_p[key][0]) - float(without[key][0])) for key in tree_p) > 1e-3


def test_topk_alignment_with_soft_tokens_and_base_rates_saves_loads_and_fingerprints_its_projection(
    dataset, tiny_model_dir, tmp_path
):
    from safetensors.torch import load_file, save_file

    from coral.align.run import run_alignment
    from coral.llm.aligned import CF_FILE, identity, load_aligned_scorer, read_meta, scorer_name
    from coral.llm.prompt import scorer_prompt_builder

    prompt = PromptConfig(base_rates=True, cf_tokens=2)
    config = AlignConfig(
        method="topk", base_model=str(tiny_model_dir), warm=WarmStartConfig(warm_start="none", embedding_dim=8),
        topk_trunk=1, topk_layers=1, topk_targets=12, topk_stop_pairs=8, topk_epochs=1, topk_batch=4, topk_lr=1e-2,
        cf_lr=1e-1, threads=1, prompt=prompt,
    )
    out = tmp_path / "aligned"
    run_alignment(dataset, config, out, validate=False, progress=False)
    meta = read_meta(out)
    assert scorer_name(meta) == f"top1-finetune+rates+cf2+targets12+e1@{tiny_model_dir.name}"
    state = load_file(str(out / CF_FILE))
    assert (
        state["user_table"].shape == (dataset.n_users, 8) and float(state["outer.weight"].abs().sum()) > 0
    )  # trained away from zero

    scorer = load_aligned_scorer(out, precision="float32")
    assert scorer.prompt_config == prompt and scorer.soft_tokens is not None and scorer.soft_tokens.layer == 1
    builder = scorer_prompt_builder(dataset, scorer)  # what the environment and the controls build
    assert builder.config == prompt and builder.version == meta["prompt_version"]
    prompts = [
        builder.build(int(u), int(i)) for u, i in zip(dataset.valid.user[:4], dataset.valid.item[:4], strict=False)
    ]
    p = scorer.score(prompts)
    assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    # The saved head on a cached trunk (how the tuning ablation reads scorers) scores as the loaded scorer.
    from coral.align.topk import load_head
    from coral.llm.model import load_model

    base, tokenizer = load_model(str(tiny_model_dir), "float32")
    head = load_head(base, tokenizer, out)
    source = _source(dataset, 2)
    cache = compute_trunk(
        base, [TreeBuilder(builder, tokenizer).tree(source)], [source.label], depth=1, store=np.float32
    )
    cache.pairs = np.array([[source.user, source.item]])
    for (name, k), value in predict(head, cache).items():
        evidence = () if name == "none" else source.branches[name][:k]
        assert abs(float(value[0]) - float(scorer.score([builder.build(source.user, source.item, evidence)])[0])) < 1e-5
    with pytest.raises(Exception, match="trained on prompts"):  # prompts of other settings are refused
        scorer.score(
            [
                PromptBuilder(dataset, PromptConfig(), scorer.tokenizer).build(
                    int(dataset.valid.user[0]), int(dataset.valid.item[0])
                )
            ]
        )

    # The environment (and so every policy stage of coral run) writes the prompts this scorer was trained on.
    from test_env_fixtures import tiny_env

    env = tiny_env(dataset, scorer=scorer, prompt_builder=None, split="valid")
    assert env.prompt_builder.config == prompt and env.prompt_builder.version == meta["prompt_version"]
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert "CF profile" in env.prompt.text and "rated items" in env.prompt.text and 0 < env.p < 1

    # The projection's weights are part of the identity (hence of the fingerprint and every cache key).
    before = identity(out)
    state["outer.bias"] = state["outer.bias"] + 1.0
    save_file(state, str(out / CF_FILE))
    assert identity(out) != before
    changed = load_aligned_scorer(out, precision="float32")
    assert changed.fingerprint != scorer.fingerprint
    assert np.max(np.abs(changed.score(prompts) - p)) > 1e-6


def test_cf_tables_alignment_targets_and_rl_episodes_come_from_three_disjoint_folds(
    dataset, tiny_model_dir, tmp_path, monkeypatch
):
    """Checked on the objects used: the rows the warm start's CF model is actually fitted on (recorded at the
    fitting call), the targets the alignment actually trained and stopped on (its targets.npz), and the
    targets of the environment's training episodes (its episode pool and the targets its resets draw)."""
    from test_env_fixtures import tiny_env

    import coral.baselines.export as export
    import coral.retrieval.warm_start as warm_start
    from coral.align.run import run_alignment
    from coral.llm.aligned import TARGETS_FILE
    from coral.retrieval import RandomEmbeddings

    fitted: list[set[tuple[int, int]]] = []

    def recording_fit(ds, baseline):
        fitted.append({(int(u), int(i)) for u, i in zip(ds.train.user, ds.train.item, strict=False)})
        rng = np.random.default_rng(0)
        return RandomEmbeddings(
            user=rng.normal(size=(ds.n_users, 8)).astype(np.float32),
            item=rng.normal(size=(ds.n_items, 8)).astype(np.float32),
        )

    monkeypatch.setattr(export, "warm_start_embeddings", recording_fit)
    monkeypatch.setattr(warm_start, "_tables", {})
    config = AlignConfig(
        method="topk", base_model=str(tiny_model_dir), warm=WarmStartConfig(warm_start="dfm", embedding_dim=8),
        topk_trunk=1, topk_layers=1, topk_targets=1000, topk_stop_pairs=8, topk_epochs=1, topk_batch=16, threads=1,
        prompt=PromptConfig(cf_tokens=1),
    )
    out = tmp_path / "aligned"
    run_alignment(dataset, config, out, validate=False, progress=False)
    assert len(fitted) == 1  # the CF tables (evidence distances and soft tokens) come from this one fit
    saved = np.load(out / TARGETS_FILE)
    targets = {(int(u), int(i)) for u, i in zip(saved["train_user"], saved["train_item"], strict=False)}
    stop = {(int(u), int(i)) for u, i in zip(saved["stop_user"], saved["stop_item"], strict=False)}

    env = tiny_env(dataset, split="train")
    pool = {(int(u), int(i)) for u, i in zip(env.episodes.user, env.episodes.item, strict=False)}
    drawn = set()
    for seed in range(30):
        env.reset(seed=seed)
        drawn.add((env.user, env.item))
    from coral.align.twins import alignment_targets

    assert {
        (int(u), int(i))
        for u, i in zip(*(alignment_targets(dataset, out).user, alignment_targets(dataset, out).item), strict=False)
    } == targets
    assert len(targets) > 10 and len(pool) > 10 and drawn <= pool
    assert not fitted[0] & targets and not fitted[0] & pool and not targets & pool
    tail_train = {(int(u), int(i)) for u, i in zip(dataset.tail_train.user, dataset.tail_train.item, strict=False)}
    assert targets <= tail_train and pool <= tail_train
    held_out = {
        (int(u), int(i))
        for split in (dataset.valid, dataset.test)
        for u, i in zip(split.user, split.item, strict=False)
    }
    valid = {(int(u), int(i)) for u, i in zip(dataset.valid.user, dataset.valid.item, strict=False)}
    assert not (fitted[0] | targets | pool) & held_out and stop <= valid


def test_cf_dropout_trains_the_dropped_trees_without_their_soft_tokens(dataset):
    """A tree trained without its soft tokens reads as the head without a projection, and sends the projection no
    gradient: with every tree dropped the projection stays as it was; with none dropped it moves."""
    from coral.llm.prompt import CF_MARKER
    from coral.llm.soft_tokens import marker_token_id

    model, tokenizer = tiny_llama()
    builder = PromptBuilder(dataset, PromptConfig(cf_tokens=2), tokenizer)
    marker = marker_token_id(tokenizer, CF_MARKER)
    labels = resolve_label_tokens(tokenizer)
    sources = [_source(dataset, row) for row in range(4)]
    cache = compute_trunk(
        model, [TreeBuilder(builder, tokenizer).tree(s) for s in sources], [s.label for s in sources], depth=1,
        store=np.float32,
    )
    cache.pairs = np.array([[s.user, s.item] for s in sources])
    plain = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids)
    moved = {}
    for dropout in (0.0, 0.999):
        cf = _cf_projection(dataset, 2, model.config.hidden_size)
        head = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids, cf=cf, marker_id=marker)
        z = head(cache.hidden[0], cache.trees[0], pair=cache.pairs[0], soft_tokens=False)
        assert torch.allclose(z, plain(cache.hidden[0], cache.trees[0], pair=cache.pairs[0]), atol=1e-6)
        before = {n: p.detach().clone() for n, p in cf.named_parameters()}
        train_topk(head, cache, lambda h: 0.0, lr=1e-2, epochs=1, trees_per_step=2, seed=0, cf_dropout=dropout)
        moved[dropout] = max(float((p - before[n]).abs().max()) for n, p in cf.named_parameters())
    assert moved[0.999] == 0.0 and moved[0.0] > 0


def test_cf_dropout_needs_soft_tokens_and_names_the_scorer():
    from coral.errors import CoralError
    from coral.llm.aligned import scorer_name

    with pytest.raises(CoralError, match="cf_dropout"):
        AlignConfig(method="topk", cf_dropout=0.5)
    config = AlignConfig(method="topk", cf_dropout=0.5, prompt=PromptConfig(cf_tokens=4))
    assert scorer_name({"method": "topk", "config": config.to_dict()}) == "top2-finetune+cf4+cfdrop50"


def test_scorer_name_names_a_number_of_targets_or_epochs_other_than_the_default():
    from coral.llm.aligned import scorer_name

    def name(**settings) -> str:
        config = AlignConfig(method="topk", prompt=PromptConfig(base_rates=True, cf_tokens=4), **settings)
        return scorer_name({"method": "topk", "config": config.to_dict()})

    assert name() == "top2-finetune+rates+cf4"  # the default's 600: the name the tables already use
    assert name(topk_targets=8679) == "top2-finetune+rates+cf4+targets8679"
    assert name(topk_targets=2400, cf_dropout=0.5) == "top2-finetune+rates+cf4+cfdrop50+targets2400"
    assert name(topk_epochs=2, topk_schedule_epochs=2) == "top2-finetune+rates+cf4"  # the default schedule, said aloud
    assert name(topk_epochs=1) == "top2-finetune+rates+cf4+e1"
    assert name(topk_epochs=1, topk_schedule_epochs=2) == "top2-finetune+rates+cf4+e1of2"


def test_scorer_name_names_a_base_llm_other_than_the_embedded_one():
    from coral.llm.aligned import scorer_name
    from coral.pipeline.compare import base_name, scorer_tag
    from coral.pipeline.report import display_name

    def name(method: str, base_model: str | None) -> str:
        return scorer_name({"method": method, "config": AlignConfig(method=method, base_model=base_model).to_dict()})

    assert name("topk", None) == "top2-finetune"  # the embedded SmolLM2: the names the tables already use
    assert name("topk", "models/qwen2.5-coder-0.5b-instruct-q4.gguf") == "top2-finetune@qwen2.5-coder-0.5b-instruct-q4"
    assert name("topk", "/data/llms/Qwen2.5-0.5B") == "top2-finetune@Qwen2.5-0.5B"
    assert name("probe", "/data/llms/Qwen2.5-0.5B") == "probe@Qwen2.5-0.5B"
    # a row is METHOD@SCORER: the scorer's own "@" stays in the scorer's part
    row = "coral-greedy-dfm@top2-finetune@Qwen2.5-0.5B"
    assert (base_name(row), scorer_tag(row)) == ("coral-greedy-dfm", "top2-finetune@Qwen2.5-0.5B")
    assert display_name(row) == "CoRAL-greedy (DFM) [top2-finetune@Qwen2.5-0.5B]"


def test_a_longer_schedule_stopped_early_is_its_first_epochs_step_for_step(dataset):
    """``schedule_epochs`` above ``epochs`` follows the longer schedule and stops: the same checks and the same
    weights as the first epoch of the full run, and not those of a schedule compressed into one epoch."""
    from coral.errors import CoralError

    model, tokenizer = tiny_llama()
    builder = PromptBuilder(dataset, PromptConfig(), tokenizer)
    labels = resolve_label_tokens(tokenizer)
    sources = [_source(dataset, row) for row in range(4)]
    cache = compute_trunk(
        model, [TreeBuilder(builder, tokenizer).tree(s) for s in sources], [s.label for s in sources], depth=1,
        store=np.float32,
    )

    def run(epochs: int, schedule_epochs: int):
        head = TopKHead(model, depth=1, k=1, yes_ids=labels.yes_ids, no_ids=labels.no_ids)
        snapshots = []

        def score(h):  # rising, so that every check is the best so far and the kept weights are the last
            snapshots.append({n: p.detach().clone() for n, p in h.named_parameters() if p.requires_grad})
            return float(len(snapshots))

        log = train_topk(
            head, cache, score, lr=1e-2, epochs=epochs, trees_per_step=1, seed=0, schedule_epochs=schedule_epochs
        )
        return [(c["step"], c["epoch"], c["train_loss"]) for c in log.checks], snapshots

    cut, cut_weights = run(1, 2)
    full, full_weights = run(2, 0)
    short, short_weights = run(1, 0)
    assert cut == full[: len(cut)] and len(cut) < len(full)
    for a, b in zip(cut_weights, full_weights, strict=False):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert cut != short  # the compressed schedule decays faster from its peak
    assert not all(torch.equal(cut_weights[-1][n], short_weights[-1][n]) for n in cut_weights[-1])
    with pytest.raises(CoralError, match="topk_schedule_epochs"):
        AlignConfig(method="topk", topk_epochs=2, topk_schedule_epochs=1)
