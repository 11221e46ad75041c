"""Scoring speed side by side in one run, and the parity gate that makes a layout eligible.

``python experiments/bench/speed.py [--aligned DIR]`` prints, from one process on this machine:

1. the raw GEMM ceiling per dtype (fp32 sgemm, bf16, the int8 layer's kernel) and the prompt
   tokens/s it implies for the scorer's decoder;
2. prompt tokens/s of full prompts (no reuse) per layout and batch size, with the ratio to fp32
   and the share of that layout's ceiling;
3. the cost of one retrieval step over E parallel episodes: full re-scoring, incremental (the
   prefix of the same episode reused) and shared-prefix (a later episode of the same target: the
   instruction and target block come from the store), with the ratios; fp32 also with
   transformers' DynamicCache (the old assembly of stored prefixes) beside the prefilled cache;
4. environment steps/s with the scorer, old path (fp32 with DynamicCache, the scorer before issue
   14) vs new path (the default layout of this CPU with the prefilled cache; each other layout
   for comparison), 1 and N batched environments;
5. per layout, how much a prompt's P(Yes) moves with its batch and with prefix reuse;
6. the alignment (the default run's recipe, top2 of 16 layers) in fp32 and in this CPU's default
   dtype side by side: trunk trees/s, seconds per training step (8 trees), early-stopping checks,
   and the default alignment's seconds they add up to;
7. thread scaling: each LLM stage's same work on 1 and on 2 torch threads, wall time (the trunk
   pass, training steps, the evaluation episodes of LLM-Language + CoRAL-random, PPO's rollouts);
   the minimum of ``--repeats`` interleaved runs, and each run's own ratio beside it.

``--aligned DIR`` measures the default run's scorer (an alignment directory written by
``coral run``/``coral align``: ``RUN/stages/align-seed0-*/aligned``); without it the embedded
zero-shot model. The model's weights are what differ between the layouts; the prompts, pairs
and episodes are the same for all of them.

``python experiments/bench/speed.py align-parity [--write]`` is the eligibility check of
:mod:`coral.align.precision`: the default run's alignment trained in fp32 and in bf16 (same seed
and targets), both scored on validation pairs of the tuning role; it prints each cell's paired AUC
difference and interval and with ``--write`` records them under ``alignment`` in ``parity.json``.

``python experiments/bench/speed.py parity --aligned DIR [--write]`` is the eligibility check of
:mod:`coral.llm.precision`: the default run's validation pairs (``coral run``'s defaults, seed 0),
scored by the scorer in fp32 and in each layout, without evidence and with 5 random pieces; it
prints the AUCs, mean/max |dp| and speed-up, and with ``--write`` records them in
``coral/llm/parity.json`` (a record replaces the one of the same layout and numerics).
"""

from __future__ import annotations

from coral.threads import set_thread_defaults

set_thread_defaults()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import threadpoolctl  # noqa: E402
import torch  # noqa: E402


# ---- what is measured --------------------------------------------------------------------------
def load_scorer(aligned: str | None, layout: str):
    """An uncached HFScorer of the measured model in ``layout`` (aligned directory or the embedded model)."""
    from coral.llm import make_scorer
    from coral.llm.aligned import load_aligned_scorer

    if aligned:
        return load_aligned_scorer(aligned, precision=layout)
    return make_scorer("hf", cache=False, precision=layout)


def default_pairs(valid_pairs: int | None = None):
    """(dataset, rows): the default ``coral run``'s dataset for seed 0 and its shared validation pairs (row indices).

    :param valid_pairs: how many validation pairs to draw (stratified, as ``coral run`` draws them;
        default: ``coral run``'s number).
    """
    from coral.data import load_dataset
    from coral.pipeline.config import RunConfig
    from coral.pipeline.pairs import SharedPairs

    config = RunConfig()
    dataset = load_dataset(config.data)  # seed 0: split_seed + 0
    pairs = SharedPairs.draw(
        dataset, config.eval_pairs, config.valid_pairs if valid_pairs is None else valid_pairs, config.data.split_seed
    )
    return dataset, pairs.valid


def episodes(dataset, rows: np.ndarray, rounds: int, seed: int) -> list[tuple[int, int, list]]:
    """(user, item, evidence) of validation ``rows`` with ``rounds`` random training pieces each (seeded)."""
    from coral.llm.evaluate import random_evidence

    draw = random_evidence(dataset, rounds, seed=seed)
    split = dataset.valid
    return [(int(split.user[r]), int(split.item[r]), draw(int(split.user[r]), int(split.item[r]))) for r in rows]


def decoder_gflop_per_token(model) -> float:
    """2 x the multiply-adds of the decoder's linear layers per token (what a prompt token costs)."""
    from coral.llm.int8 import Int8Linear

    n = 0
    for module in model.get_decoder().modules():
        if isinstance(module, (torch.nn.Linear, Int8Linear)):
            n += module.in_features * module.out_features
    return 2 * n / 1e9


def gemm_gflops(kind: str, m: int = 256, k: int = 576, n: int = 1536, seconds: float = 1.5) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product in ``kind`` (float32, bfloat16, int8 = the int8 layer's kernel)."""
    from coral.llm.int8 import Int8Linear, activation_bits
    from coral.llm.precision import cpu_flags

    x = torch.randn(m, k)
    if kind == "int8":
        layer = Int8Linear(torch.nn.Linear(k, n, bias=False), bits=activation_bits(cpu_flags()))
        run = lambda: layer(x)  # noqa: E731
    else:
        dtype = getattr(torch, kind)
        a, w = x.to(dtype), torch.randn(k, n).to(dtype)
        run = lambda: a @ w  # noqa: E731
    run()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


#: numpy's BLAS threads when this script started (before a scorer limited them to one).
BLAS_THREADS = max([i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] or [1])


def set_path(scorer, old: bool) -> None:
    """Put ``scorer`` and the environments on the old path or the new one.

    old: transformers' DynamicCache and ``sdpa`` attention (which copies grouped key/value heads),
    numpy's BLAS on all its threads, each environment's query distances computed alone; new: the
    prefilled cache, :mod:`coral.llm.attention`, one BLAS thread, the distances of a vector step
    in one product.
    """
    from coral.envs.batch import EpisodeBatch
    from coral.llm.attention import use_gqa_attention

    scorer.prefilled_cache = not old
    EpisodeBatch.batched_distances = not old
    threadpoolctl.threadpool_limits(limits=BLAS_THREADS if old else 1, user_api="blas")
    if old:
        scorer.model.set_attn_implementation("sdpa")
    else:
        use_gqa_attention(scorer.model)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prompt_tokens_per_s(scorer, prompts, batch: int) -> float:
    """Full prompts (no prefix reuse) scored ``batch`` at a time: prompt tokens/s."""
    scorer.kv_reuse = False
    scorer.batch_size = batch
    scorer.score(prompts[:1])  # warm-up
    tokens = sum(len(scorer.token_ids(p)) for p in prompts)
    seconds = timed(lambda: [scorer.score(prompts[i : i + batch]) for i in range(0, len(prompts), batch)])
    scorer.batch_size = 8
    return tokens / seconds


def step_costs(scorer, builder, eps_a, eps_b, rounds: int) -> dict[str, float]:
    """Seconds per retrieval step (all episodes of a step in one call), by how the prefix is obtained.

    full: every prompt computed whole; incremental: a fresh store, each step extends the episode's
    previous prompt; shared-prefix: episodes ``eps_b`` (same targets, other evidence) after ``eps_a``,
    so their resets find the instruction + target block in the store. Also the reset (step 0)
    cost cold and warm.
    """

    def run(eps, reuse: bool, clear: bool) -> tuple[float, float, float]:
        scorer.kv_reuse = reuse
        if clear:
            scorer.kv_store.clear()
        reset = timed(lambda: scorer.score([builder.build(u, i, ()) for u, i, _ in eps]))
        before = scorer.stats()["tokens_computed"]
        steps = [
            timed(lambda r=r: scorer.score([builder.build(u, i, ev[:r]) for u, i, ev in eps]))
            for r in range(1, rounds + 1)
        ]
        return reset, float(np.mean(steps)), (scorer.stats()["tokens_computed"] - before) / rounds

    full_reset, full, full_tokens = run(eps_a, reuse=False, clear=True)
    cold_reset, incremental, step_tokens = run(eps_a, reuse=True, clear=True)
    warm_reset, shared, _ = run(eps_b, reuse=True, clear=False)
    return {
        "full": full,
        "incremental": incremental,
        "shared": shared,
        "full_reset": full_reset,
        "cold_reset": cold_reset,
        "warm_reset": warm_reset,
        # If time were proportional to tokens computed, incremental could be at most this much cheaper than full.
        "token_bound": full_tokens / max(step_tokens, 1.0),
    }


def env_steps_per_s(scorer, n_envs: int, steps: int, batch: int, seed: int = 0) -> float:
    """Environment steps/s of ``n_envs`` batched default training environments (random actions) on
    ``scorer``, scoring ``batch`` prompts per forward pass."""
    from coral.envs import EnvConfig, EnvResources
    from coral.envs.vector import make_batched_vec_env

    scorer.kv_reuse = True
    scorer.kv_store.clear()
    cfg = EnvConfig.from_any(dataset="movielens_small", warm_start="dfm")
    vec = make_batched_vec_env(cfg, n_envs=n_envs, seed=seed, resources=EnvResources(scorer=scorer))
    scorer.batch_size = batch  # after the vector, which raises it to n_envs
    rng = np.random.default_rng(seed)
    vec.reset()
    vec.step(rng.uniform(-1, 1, (n_envs, *vec.action_space.shape)).astype(np.float32))  # warm-up
    seconds = timed(
        lambda: [
            vec.step(rng.uniform(-1, 1, (n_envs, *vec.action_space.shape)).astype(np.float32)) for _ in range(steps)
        ]
    )
    vec.close()
    scorer.batch_size = 8
    return steps * n_envs / seconds


def invariance(scorer, builder, eps) -> tuple[float, float]:
    """(max |dp| of a batch of 8 vs each prompt alone, max |dp| of incremental vs whole scoring) on ``eps``' prompts."""
    prompts = [builder.build(u, i, ev[: k % 6]) for k, (u, i, ev) in enumerate(eps)]
    scorer.kv_reuse = False
    scorer.batch_size = 1
    alone = scorer.score(prompts)
    scorer.batch_size = 8
    batched = scorer.score(prompts)
    scorer.kv_reuse = True
    scorer.kv_store.clear()
    for r in range(6):
        incremental = scorer.score([builder.build(u, i, ev[:r]) for u, i, ev in eps])
    scorer.kv_reuse = False
    scorer.batch_size = 1
    whole = scorer.score([builder.build(u, i, ev[:5]) for u, i, ev in eps])
    scorer.batch_size = 8
    return float(np.abs(batched - alone).max()), float(np.abs(incremental - whole).max())


# ---- the alignment ------------------------------------------------------------------------------
def alignment_setup():
    """(dataset, alignment config, evidence index, prompt builder, fp32 model, tokenizer) of the default run's
    alignment, seed 0."""
    from coral.align.run import prompt_builder
    from coral.align.topk import evidence_index
    from coral.llm.model import load_model
    from coral.pipeline.config import RunConfig
    from coral.retrieval import resolve_embeddings

    dataset, _ = default_pairs()
    config = RunConfig().alignment
    model, tokenizer = load_model(config.base_model, "float32")
    index = evidence_index(dataset, resolve_embeddings(dataset, config.warm, seed=config.seed))
    return dataset, config, index, prompt_builder(dataset, tokenizer, config), model, tokenizer


def alignment_trees(setup, rows, picked: np.ndarray, n_nearest: int, n_random: int) -> tuple[list, list]:
    """(trees, labels) of ``picked`` rows of ``rows``, with the alignment's evidence (nearest, random)."""
    from coral.align.topk import TreeBuilder, tree_sources

    dataset, config, index, builder, model, tokenizer = setup
    sources = tree_sources(rows, picked, index, n_nearest, n_random, config.seed)
    trees = TreeBuilder(builder, tokenizer)
    return [trees.tree(s) for s in sources], [s.label for s in sources]


def default_alignment_trees(setup, n_train: int, n_stop: int) -> tuple[tuple[list, list], tuple[list, list]]:
    """The first ``n_train`` training trees and ``n_stop`` early-stopping trees of the default run's alignment."""
    from coral.align.topk import STOP_NEAREST, TRAIN_NEAREST, TRAIN_RANDOM, pick_targets
    from coral.data.folds import fold_interactions, validation_roles

    dataset, config = setup[:2]
    rows = fold_interactions(dataset, "align", config.warm.folds)
    train = alignment_trees(
        setup, rows, pick_targets(rows, config.topk_targets, config.seed)[:n_train], TRAIN_NEAREST, TRAIN_RANDOM
    )
    pool = validation_roles(dataset).stop
    stop = alignment_trees(
        setup, dataset.valid,
        pool[pick_targets(dataset.valid.take(pool), config.topk_stop_pairs, config.seed + 1)][:n_stop], STOP_NEAREST, 0,
    )
    return train, stop


def alignment_costs(setup, train, stop, dtype: str, repeats: int = 1) -> dict[str, float]:
    """Seconds per trunk tree, per training step and per early-stopping tree of the default recipe
    in ``dtype`` (each the minimum of ``repeats`` runs, after a warm-up)."""
    from coral.align.topk import TopKHead, compute_trunk, predict, train_topk
    from coral.llm.labels import resolve_label_tokens

    config, model, tokenizer = setup[1], setup[4], setup[5]
    torch_dtype = getattr(torch, dtype)
    compute_trunk(model, train[0][:1], train[1][:1], config.topk_trunk, dtype=torch_dtype)  # warm-up
    trunk = min(
        timed(lambda: compute_trunk(model, *train, config.topk_trunk, dtype=torch_dtype)) for _ in range(repeats)
    ) / len(train[0])
    cache = compute_trunk(model, *train, config.topk_trunk, dtype=torch_dtype)
    stop_cache = compute_trunk(model, *stop, config.topk_trunk, dtype=torch_dtype)
    labels = resolve_label_tokens(tokenizer)
    head = TopKHead(model, config.topk_trunk, config.topk_layers, labels.yes_ids, labels.no_ids, dtype=torch_dtype)

    def train_epoch():
        return train_topk(
            head, cache, lambda h: 0.0,
            lr=config.topk_lr, epochs=1, trees_per_step=config.topk_batch, seed=config.seed, checks_per_epoch=1,
        )

    steps = train_epoch().steps  # and a warm-up
    step = min(timed(train_epoch) for _ in range(repeats)) / steps
    check = min(timed(lambda: predict(head, stop_cache)) for _ in range(repeats)) / len(stop[0])
    return {"trunk": trunk, "step": step, "check": check}


def default_alignment_seconds(config, costs: dict[str, float]) -> float:
    """The default recipe's trunk, training and early-stopping seconds from per-unit ``costs``
    (the checks: one before training, two an epoch, one more at each epoch's end)."""
    steps_per_epoch = -(-config.topk_targets // config.topk_batch)
    checks = 1 + config.topk_epochs * 3
    return (
        costs["trunk"] * (config.topk_targets + config.topk_stop_pairs)
        + costs["step"] * steps_per_epoch * config.topk_epochs
        + costs["check"] * config.topk_stop_pairs * checks
    )


# ---- the commands --------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> None:
    from coral.llm.precision import PRECISIONS, cpu_flags, default_precision, feature_class, supported
    from coral.llm.prompt import scorer_prompt_builder

    flags = cpu_flags()
    default = default_precision()
    layouts = ["float32"] + [
        name for name in (args.layouts.split(",") if args.layouts else PRECISIONS) if name != "float32"
    ]
    print(
        f"CPU class {feature_class(flags)}; native: {', '.join(n for n in PRECISIONS if supported(n))}; default layout "
        f"here: {default}; torch threads {torch.get_num_threads()}"
    )
    dataset, rows = default_pairs()
    scorers = {name: load_scorer(args.aligned, name) for name in layouts}
    ref = scorers["float32"]
    print(f"scorer: {ref.fingerprint}")
    builder = scorer_prompt_builder(dataset, ref)  # an aligned scorer's own prompt settings (base rates, CF tokens)
    gflop = decoder_gflop_per_token(ref.model)
    print(f"decoder linear layers: {gflop:.3f} GFLOP per prompt token\n")

    ceiling = {}
    for name in PRECISIONS if 1 in args.sections else ():
        if not ceiling:
            print("[1] raw GEMM (256 x 576 @ 576 x 1536), and the tokens/s it allows")
        g = gemm_gflops(name)
        ceiling[name] = g / gflop
        note = "" if supported(name) else "  (emulated on this CPU)"
        print(
            f"  {name:9s} {g:7.1f} GFLOP/s  -> ceiling {ceiling[name]:6.0f} tok/s  "
            f"x{ceiling[name] / ceiling['float32']:.2f} fp32{note}",
            flush=True,
        )

    prompts = [builder.build(u, i, ev) for u, i, ev in episodes(dataset, rows[: args.prompts], 5, seed=0)]
    if 2 in args.sections:
        section_2(args, scorers, prompts, ceiling)
    if 3 in args.sections:
        section_3(args, scorers, builder, dataset, rows)
    if 4 in args.sections:
        section_4(args, scorers, default)
    if 5 in args.sections:
        section_5(args, scorers, builder, dataset, rows)
    if 6 in args.sections:
        section_6(args)
    if 7 in args.sections:
        section_7(args, scorers[default] if default in scorers else ref, builder, dataset, rows)


def section_2(args: argparse.Namespace, scorers: dict, prompts: list, ceiling: dict[str, float]) -> None:
    ref = scorers["float32"]
    mean_len = np.mean([len(ref.token_ids(p)) for p in prompts])
    print(
        f"\n[2] full prompts: {len(prompts)} validation prompts with 5 random pieces, {mean_len:.0f} tokens on "
        "average, no reuse"
    )
    fp32_rate = {}
    for name in scorers:
        for batch in args.batches:
            rate = prompt_tokens_per_s(scorers[name], prompts, batch)
            fp32_rate.setdefault(batch, rate)
            share = f"  {100 * rate / ceiling[name]:5.1f}% of its GEMM ceiling" if name in ceiling else ""
            print(
                f"  {name:9s} batch {batch:2d}  {rate:7.0f} tok/s  x{rate / fp32_rate[batch]:.2f} fp32{share}",
                flush=True,
            )


def section_3(args: argparse.Namespace, scorers: dict, builder, dataset, rows) -> None:
    eps_a = episodes(dataset, rows[: args.episodes], 5, seed=0)
    eps_b = episodes(dataset, rows[: args.episodes], 5, seed=1)
    print(f"\n[3] one retrieval step of {args.episodes} parallel episodes (5 steps each, mean per step)")
    for name in scorers:
        for old in ([True, False] if name == "float32" else [False]):
            set_path(scorers[name], old)
            c = step_costs(scorers[name], builder, eps_a, eps_b, 5)
            label = f"{name} {'old' if old else 'new'}"
            print(
                f"  {label:18s} full {c['full']:6.2f} s   incremental {c['incremental']:6.2f} s "
                f"(x{c['full'] / c['incremental']:.1f})   "
                f"shared-prefix {c['shared']:6.2f} s (x{c['full'] / c['shared']:.1f})   reset: full "
                f"{c['full_reset']:.2f} s, "
                f"cold store {c['cold_reset']:.2f} s, target block stored {c['warm_reset']:.2f} s "
                f"(x{c['full_reset'] / c['warm_reset']:.1f}); "
                f"bound from tokens computed per step: x{c['token_bound']:.1f}",
                flush=True,
            )


def section_4(args: argparse.Namespace, scorers: dict, default: str) -> None:
    ref = scorers["float32"]
    print(
        f"\n[4] environment steps/s, default training environment, random actions, {args.env_steps} x 8 / N vector "
        "steps of N environments"
    )
    print(
        "    old path = the fp32 scorer before issue 14: DynamicCache, transformers' sdpa (grouped heads copied), 8 "
        f"prompts per forward pass, {BLAS_THREADS} BLAS threads, distances per environment;"
    )
    print(
        "    new path = prefilled cache, grouped attention, N prompts per forward pass (the vector's step in one "
        "call), 1 BLAS thread, a step's distances in one product; in each layout"
    )
    rates: dict[tuple[str, int], float] = {}
    for n in args.n_envs:
        steps = max(4, args.env_steps * 8 // n)
        set_path(ref, old=True)
        rates["old", n] = old = env_steps_per_s(ref, n, steps, batch=8)
        line = f"  N={n:2d}  old {old:6.2f}"
        for name in scorers:
            set_path(scorers[name], old=False)
            rates[name, n] = new = env_steps_per_s(scorers[name], n, steps, batch=max(8, n))
            line += f"   {name}{' (default)' if name == default else ''} {new:6.2f} (x{new / old:.2f})"
        print(line, flush=True)
    if 8 in args.n_envs and default in scorers:
        best = max(args.n_envs, key=lambda n: rates[default, n])
        print(
            f"  new path ({default}, N={best}, the fastest N) vs old path at N=8 (coral run's training before issue "
            f"14): x{rates[default, best] / rates['old', 8]:.2f}; at equal N: "
            + ", ".join(f"x{rates[default, n] / rates['old', n]:.2f} (N={n})" for n in args.n_envs)
        )


def section_5(args: argparse.Namespace, scorers: dict, builder, dataset, rows) -> None:
    print(
        f"\n[5] does a prompt's P(Yes) depend on its batch or on prefix reuse? ({args.prompts} validation prompts, 0-5 "
        "random pieces)"
    )
    eps = episodes(dataset, rows[: args.prompts], 5, seed=0)
    paths = {}
    for old in (True, False):
        set_path(scorers["float32"], old)
        scorers["float32"].kv_reuse = True
        scorers["float32"].kv_store.clear()
        paths[old] = np.concatenate(
            [scorers["float32"].score([builder.build(u, i, ev[:r]) for u, i, ev in eps]) for r in range(6)]
        )
    print(
        "  float32   new path vs old path, incremental steps 0-5: max |dp| "
        f"{np.abs(paths[True] - paths[False]).max():.1e}"
    )
    for name in scorers:
        batch_dp, reuse_dp = invariance(scorers[name], builder, eps)
        print(
            f"  {name:9s} batch of 8 vs alone: max |dp| {batch_dp:.1e}   incremental vs whole: max |dp| {reuse_dp:.1e}",
            flush=True,
        )


def section_6(args: argparse.Namespace) -> None:
    from coral.align.precision import resolve_align_dtype

    setup = alignment_setup()
    config = setup[1]
    default = resolve_align_dtype("auto", config.method)
    train, stop = default_alignment_trees(setup, args.align_trees, args.align_trees)
    tokens = np.mean([len(t.ids) for t in train[0]])
    print(
        f"\n[6] the alignment (top{config.topk_layers} of {config.topk_trunk + config.topk_layers} layers, the default "
        f"recipe): {len(train[0])} training trees "
        f"({tokens:.0f} tokens on average), {len(stop[0])} early-stopping trees; default dtype here: {default}"
    )
    costs = {}
    for dtype in dict.fromkeys(["float32", "bfloat16" if args.align_dtypes == "both" else default]):
        costs[dtype] = c = alignment_costs(setup, train, stop, dtype, args.repeats)
        ref = costs["float32"]
        total, total_ref = default_alignment_seconds(config, c), default_alignment_seconds(config, ref)
        print(
            f"  {dtype:9s}{' (default)' if dtype == default else '          '}  trunk {1 / c['trunk']:5.2f} trees/s "
            f"(x{ref['trunk'] / c['trunk']:.2f})   "
            f"training {c['step']:5.2f} s/step of {config.topk_batch} trees, {config.topk_batch / c['step']:5.2f} "
            f"trees/s (x{ref['step'] / c['step']:.2f})   "
            f"check {1 / c['check']:5.1f} trees/s (x{ref['check'] / c['check']:.2f})   "
            f"default alignment (trunk + training + checks) {total:4.0f} s (x{total_ref / total:.2f})",
            flush=True,
        )


def section_7(args: argparse.Namespace, scorer, builder, dataset, rows) -> None:
    """The same work per LLM stage on 1 and on 2 torch threads."""
    from coral.align.precision import resolve_align_dtype

    setup = alignment_setup()
    config = setup[1]
    dtype = resolve_align_dtype("auto", config.method)
    train, stop = default_alignment_trees(setup, args.align_trees, 0)
    threads = torch.get_num_threads()
    print(
        f"\n[7] each LLM stage's same work on 1 and on 2 torch threads, wall seconds (alignment in {dtype}, scoring in "
        f"{scorer.precision}); min of {args.repeats} runs"
    )

    def stage_work() -> dict[str, Callable[[], float]]:
        """Each stage's work, as a function returning its seconds."""
        from coral.align.topk import TopKHead, compute_trunk, train_topk
        from coral.llm.labels import resolve_label_tokens

        model, tokenizer = setup[4], setup[5]
        torch_dtype = getattr(torch, dtype)
        cache = compute_trunk(model, *train, config.topk_trunk, dtype=torch_dtype)
        labels = resolve_label_tokens(tokenizer)
        head = TopKHead(model, config.topk_trunk, config.topk_layers, labels.yes_ids, labels.no_ids, dtype=torch_dtype)
        eps = episodes(dataset, rows[: args.episodes * 2], 5, seed=0)

        def evaluation() -> None:  # LLM-Language + CoRAL-random: K rounds of batched episodes, a fresh prefix store
            scorer.kv_reuse = True
            scorer.kv_store.clear()
            for start in range(0, len(eps), 8):
                batch = eps[start : start + 8]
                for r in range(6):
                    scorer.score([builder.build(u, i, ev[:r]) for u, i, ev in batch])

        return {
            f"alignment trunk ({len(train[0])} trees)": lambda: timed(
                lambda: compute_trunk(model, *train, config.topk_trunk, dtype=torch_dtype)
            ),
            f"alignment training ({len(train[0])} trees, {-(-len(train[0]) // config.topk_batch)} steps)": lambda: (
                timed(
                    lambda: train_topk(
                        head, cache, lambda h: 0.0,
                        lr=config.topk_lr, epochs=1, trees_per_step=config.topk_batch, seed=config.seed,
                        checks_per_epoch=1,
                    )
                )
            ),
            f"evaluation episodes ({len(eps)} pairs x 0..5 random pieces, 8 at a time)": lambda: timed(evaluation),
            f"PPO rollouts (8 environments, {args.env_steps} vector steps)": lambda: (
                args.env_steps * 8 / env_steps_per_s(scorer, 8, args.env_steps, batch=8)
            ),
        }

    work = stage_work()
    seconds = {}
    for _ in range(args.repeats):
        for n in (1, 2):
            torch.set_num_threads(n)
            for name, fn in work.items():
                seconds.setdefault((name, n), []).append(fn())
    torch.set_num_threads(threads)
    for name in work:
        one, two = min(seconds[name, 1]), min(seconds[name, 2])
        # Each run's own ratio too: on a shared VM a neighbour's load moves single runs by tenths.
        runs = " ".join(f"x{a / b:.2f}" for a, b in zip(seconds[name, 1], seconds[name, 2], strict=True))
        print(
            f"  {name:72s} 1 thread {one:6.2f} s   2 threads {two:6.2f} s   x{one / two:.2f}   (each run: {runs})",
            flush=True,
        )


def parity(args: argparse.Namespace) -> None:
    from sklearn.metrics import roc_auc_score

    from coral.llm.precision import (
        AUC_TOLERANCE,
        PARITY_FILE,
        ParityRecord,
        cpu_flags,
        feature_class,
        numerics,
        supported,
    )
    from coral.llm.prompt import scorer_prompt_builder

    flags = cpu_flags()
    dataset, rows = default_pairs(args.valid_pairs)
    y = dataset.valid.label[rows]
    ref = load_scorer(args.aligned, "float32")
    builder = scorer_prompt_builder(dataset, ref)
    sets = {"no evidence": [builder.build(u, i, ()) for u, i, _ in episodes(dataset, rows, 5, 0)],
            "5 random pieces": [builder.build(u, i, ev) for u, i, ev in episodes(dataset, rows, 5, 0)]}
    from coral.llm.aligned import identity, scorer_name

    scorer = f"{scorer_name(ref.alignment)}:{identity(args.aligned)}" if args.aligned else "zero-shot"

    def score(s) -> tuple[dict[str, np.ndarray], float]:
        s.kv_reuse = False
        start = time.perf_counter()
        out = {k: s.score(v) for k, v in sets.items()}
        tokens = sum(len(s.token_ids(p)) for v in sets.values() for p in v)
        return out, tokens / (time.perf_counter() - start)

    base, base_rate = score(ref)
    print(
        f"{scorer} on {dataset.name} validation pairs: {len(rows)} ({int((y == 0).sum())} negatives), "
        f"{sum(len(v) for v in sets.values())} prompts; fp32 {base_rate:.0f} tok/s"
    )
    for k, p in base.items():
        print(f"  float32    {k:16s} AUC {roc_auc_score(y, p):.4f}")
    records = []
    for layout in args.layouts.split(","):
        s = load_scorer(args.aligned, layout)
        got, rate = score(s)
        deltas = {k: roc_auc_score(y, got[k]) - roc_auc_score(y, base[k]) for k in sets}
        worst = max(deltas, key=lambda k: abs(deltas[k]))
        dp = np.concatenate([np.abs(got[k] - base[k]) for k in sets])
        rec = ParityRecord(
            precision=layout, numerics=numerics(layout, flags), cpu_class=feature_class(flags), scorer=scorer,
            dataset=dataset.name, pairs=int(len(rows)), prompt_version=builder.version,
            auc_fp32=float(roc_auc_score(y, base[worst])), auc=float(roc_auc_score(y, got[worst])),
            mean_abs_dp=float(dp.mean()), max_abs_dp=float(dp.max()), speedup=float(rate / base_rate),
            date=datetime.date.today().isoformat(), command="python " + " ".join(shlex.quote(a) for a in sys.argv),
        )
        for k in sets:
            print(f"  {layout:9s}  {k:16s} AUC {roc_auc_score(y, got[k]):.4f}  dAUC {deltas[k]:+.4f}")
        verdict = "PASSES" if rec.passed else "FAILS"
        native = "" if supported(layout) else " (emulated here: the speed-up is not this layout's real one)"
        print(
            f"  {layout:9s}  numerics {rec.numerics}: worst dAUC {rec.auc_delta:+.4f} -> {verdict} the {AUC_TOLERANCE} "
            f"rule; mean |dp| {rec.mean_abs_dp:.4f}, max {rec.max_abs_dp:.4f}; x{rec.speedup:.2f} fp32 "
            f"tokens/s{native}",
            flush=True,
        )
        records.append(rec)
    if args.write:
        data = json.loads(PARITY_FILE.read_text()) if PARITY_FILE.is_file() else {"records": []}
        keep = [
            r
            for r in data["records"]
            if (r.get("precision", r.get("layout")), r["numerics"]) not in {(x.precision, x.numerics) for x in records}
        ]
        data["records"] = keep + [r.to_json() for r in records]
        tmp = PARITY_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(PARITY_FILE)
        print(f"recorded in {PARITY_FILE}")


def align_parity(args: argparse.Namespace) -> None:
    """The default run's alignment trained in fp32 and in bf16 (same seed, targets, order), both
    scored on ``--valid-pairs`` validation pairs of the tuning role without evidence and with 1..5
    nearest pieces; paired AUC differences bf16 - fp32 with 95% intervals. Two comparisons: both
    scorers in fp32 arithmetic (what training in bf16 changes), and each in its own (bf16 trunk
    and layers vs fp32: what a run on this CPU changes)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from coral.align.precision import AlignParityRecord, load_align_records
    from coral.align.run import run_alignment
    from coral.align.topk import STOP_NEAREST, TopKHead, compute_trunk, pick_targets, predict
    from coral.data.folds import validation_roles
    from coral.llm.aligned import TOPK_FILE
    from coral.llm.labels import resolve_label_tokens
    from coral.llm.precision import PARITY_FILE, cpu_flags, feature_class, numerics, supported
    from coral.stats import paired_auc_difference

    setup = alignment_setup()
    dataset, config, model, tokenizer = setup[0], setup[1], setup[4], setup[5]
    work = Path(args.work).expanduser()
    trained = {}
    for dtype in ("float32", "bfloat16"):
        out = work / f"align-{dtype}"
        meta = run_alignment(dataset, config.replace(dtype=dtype), out, validate=False, progress=True)
        trained[dtype] = out
        m = meta["summary"]
        print(
            f"  trained {dtype:9s} {out}: stop score {m['stop_score_before']:.4f} -> {m['stop_score_best']:.4f} (best "
            f"step {m['best_step']} of {m['steps']}); "
            f"trunk {m.get('trunk_wall_seconds', float('nan'))} s, training "
            f"{m.get('train_wall_seconds', float('nan'))} s wall",
            flush=True,
        )
    pool = validation_roles(dataset).tuning
    n = min(args.valid_pairs or len(pool), len(pool))
    picked = pool[pick_targets(dataset.valid.take(pool), n, config.seed + 2)]
    trees, labels = alignment_trees(setup, dataset.valid, picked, STOP_NEAREST, 0)
    y = np.asarray(labels)
    print(
        f"{dataset.name}: {len(trees)} validation pairs of the tuning role ({int((y == 0).sum())} negatives), each "
        f"with 0..{STOP_NEAREST} nearest pieces"
    )
    ids = resolve_label_tokens(tokenizer)
    scores: dict[tuple[str, str], dict] = {}  # (trained in, scored in) -> predictions
    for arithmetic in ("float32", "bfloat16"):
        cache = compute_trunk(
            model, trees, labels, config.topk_trunk, progress=True, store=np.float32, dtype=getattr(torch, arithmetic)
        )
        for dtype, out in trained.items():
            head = TopKHead(
                model, config.topk_trunk, config.topk_layers, ids.yes_ids, ids.no_ids, dtype=getattr(torch, arithmetic)
            )
            head.load_state_for_model(load_file(str(out / TOPK_FILE)))
            scores[dtype, arithmetic] = predict(head, cache)
        del cache
    cells = {}
    comparisons = {
        "fp32 arithmetic": (("bfloat16", "float32"), ("float32", "float32")),
        "each its own": (("bfloat16", "bfloat16"), ("float32", "float32")),
    }
    for label, (a, b) in comparisons.items():
        for key in [("none", 0)] + [("nearest", k) for k in range(1, STOP_NEAREST + 1)]:
            r = paired_auc_difference(y, scores[a][key], scores[b][key], n_boot=2000, seed=0)
            name = f"{'none' if key[1] == 0 else f'nearest-{key[1]}'}, {label}"
            decides = key in (("none", 0), ("nearest", STOP_NEAREST))
            print(
                f"  {name:28s} AUC fp32 {r.auc_b:.4f}  bf16 {r.auc_a:.4f}  diff {r.diff:+.4f} [{r.low:+.4f}, "
                f"{r.high:+.4f}]{'  (decides)' if decides else ''}",
                flush=True,
            )
            if decides:
                cells[name] = {"auc_fp32": r.auc_b, "auc": r.auc_a, "delta": r.diff, "low": r.low, "high": r.high}
    train_trees, stop_trees = default_alignment_trees(setup, args.align_trees, args.align_trees)
    costs = {
        dtype: default_alignment_seconds(config, alignment_costs(setup, train_trees, stop_trees, dtype, args.repeats))
        for dtype in ("float32", "bfloat16")
    }
    flags = cpu_flags()
    record = AlignParityRecord(
        dtype="bfloat16",
        numerics=numerics("bfloat16", flags),
        cpu_class=feature_class(flags),
        method=config.method,
        recipe=f"top{config.topk_layers} of {config.topk_trunk + config.topk_layers} layers, {config.topk_targets} "
               f"targets, {config.topk_epochs} epochs, seed {config.seed}",
        dataset=dataset.name,
        pairs=len(trees),
        cells=cells,
        speedup=costs["float32"] / costs["bfloat16"],
        date=datetime.date.today().isoformat(),
        command="python " + " ".join(shlex.quote(a) for a in sys.argv),
    )
    native = "" if supported("bfloat16") else " (bf16 emulated here: not this dtype's real speed)"
    print(
        f"  bfloat16: {'PASSES' if record.passed else 'FAILS'} (every deciding interval inside +-0.01 on >= 2,000 "
        "pairs); "
        f"default alignment x{record.speedup:.2f} fp32 ({costs['float32']:.0f} s vs {costs['bfloat16']:.0f} s, "
        f"{args.align_trees} trees each){native}",
        flush=True,
    )
    if args.write:
        data = json.loads(PARITY_FILE.read_text()) if PARITY_FILE.is_file() else {"records": []}
        keep = [
            r.to_json()
            for r in load_align_records()
            if (r.dtype, r.numerics, r.method) != (record.dtype, record.numerics, record.method)
        ]
        data["alignment"] = keep + [record.to_json()]
        tmp = PARITY_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(PARITY_FILE)
        print(f"recorded in {PARITY_FILE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="speed", choices=["speed", "parity", "align-parity"])
    parser.add_argument(
        "--aligned", help="alignment directory of the scorer to measure (default: the embedded zero-shot model)"
    )
    parser.add_argument(
        "--layouts", default="", help="comma-separated layouts besides float32 (default: all; parity: int8,bfloat16)"
    )
    parser.add_argument("--prompts", type=int, default=16, help="[2] full prompts")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="[2] batch sizes")
    parser.add_argument("--episodes", type=int, default=8, help="[3] parallel episodes")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 8, 16, 32], help="[4] batched environments N")
    parser.add_argument(
        "--env-steps", type=int, default=40,
        help="[4] vector steps per setting at N=8 (x 8/N at other N: the same environment steps)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7], help="which of the sections [1]-[7] to run"
    )
    parser.add_argument(
        "--align-trees", type=int, default=24,
        help="[6], [7] training and early-stopping trees of the default alignment",
    )
    parser.add_argument(
        "--align-dtypes", choices=["default", "both"], default="default",
        help="[6] fp32 and the default dtype, or fp32 and bf16 whatever the default",
    )
    parser.add_argument("--repeats", type=int, default=3, help="[6], [7] runs of each setting (the minimum is printed)")
    parser.add_argument(
        "--valid-pairs",
        type=int,
        default=None,
        help="parity: validation pairs to score (default: coral run's 70; 0: the whole split; more resolve the 0.005 "
             "rule better); align-parity: pairs of the tuning role (default 2,000; 0: all)",
    )
    parser.add_argument(
        "--write", action="store_true", help="parity, align-parity: record the results in coral/llm/parity.json"
    )
    parser.add_argument(
        "--work", default="runs/align-parity", help="align-parity: where the two alignments are trained (resumable)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "parity":
        args.layouts = args.layouts or "int8,bfloat16"
        parity(args)
    elif args.command == "align-parity":
        args.valid_pairs = 2000 if args.valid_pairs is None else args.valid_pairs
        align_parity(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
