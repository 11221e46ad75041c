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
5. per layout, how much a prompt's P(Yes) moves with its batch and with prefix reuse.

``--aligned DIR`` measures the default run's scorer (an alignment directory written by
``coral run``/``coral align``: ``RUN/stages/align-seed0-*/aligned``); without it the embedded
zero-shot model. The model's weights are what differ between the layouts; the prompts, pairs
and episodes are the same for all of them.

``python experiments/bench/speed.py parity --aligned DIR [--write]`` is the eligibility check of
:mod:`coral.llm.layout`: the default run's validation pairs (``coral run``'s defaults, seed 0),
scored by the scorer in fp32 and in each layout, without evidence and with 5 random pieces; it
prints the AUCs, mean/max |dp| and speed-up, and with ``--write`` records them in
``coral/llm/parity.json`` (a record replaces the one of the same layout and numerics).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("OMP_PLACES", "cores")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import threadpoolctl  # noqa: E402
import torch  # noqa: E402


# ---- what is measured --------------------------------------------------------------------------
def load_scorer(aligned: str | None, layout: str):
    """An uncached HFScorer of the measured model in ``layout`` (aligned directory or the embedded model)."""
    from coral.llm import make_scorer
    from coral.llm.aligned import load_aligned_scorer

    if aligned:
        return load_aligned_scorer(aligned, layout=layout)
    return make_scorer("hf", cache=False, layout=layout)


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
    pairs = SharedPairs.draw(dataset, config.eval_pairs, config.valid_pairs if valid_pairs is None else valid_pairs, config.data.split_seed)
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
    from coral.llm.layout import cpu_flags

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
        steps = [timed(lambda r=r: scorer.score([builder.build(u, i, ev[:r]) for u, i, ev in eps])) for r in range(1, rounds + 1)]
        return reset, float(np.mean(steps)), (scorer.stats()["tokens_computed"] - before) / rounds

    full_reset, full, full_tokens = run(eps_a, reuse=False, clear=True)
    cold_reset, incremental, step_tokens = run(eps_a, reuse=True, clear=True)
    warm_reset, shared, _ = run(eps_b, reuse=True, clear=False)
    return {
        "full": full, "incremental": incremental, "shared": shared, "full_reset": full_reset, "cold_reset": cold_reset, "warm_reset": warm_reset,
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
    seconds = timed(lambda: [vec.step(rng.uniform(-1, 1, (n_envs, *vec.action_space.shape)).astype(np.float32)) for _ in range(steps)])
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


# ---- the two commands --------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> None:
    from coral.llm.layout import LAYOUTS, cpu_flags, default_layout, feature_class, supported
    from coral.llm.prompt import PromptBuilder

    flags = cpu_flags()
    default = default_layout()
    layouts = ["float32"] + [name for name in (args.layouts.split(",") if args.layouts else LAYOUTS) if name != "float32"]
    print(f"CPU class {feature_class(flags)}; native: {', '.join(n for n in LAYOUTS if supported(n))}; default layout here: {default}; torch threads {torch.get_num_threads()}")
    dataset, rows = default_pairs()
    scorers = {name: load_scorer(args.aligned, name) for name in layouts}
    ref = scorers["float32"]
    print(f"scorer: {ref.fingerprint}")
    builder = PromptBuilder(dataset, tokenizer=ref.tokenizer)
    gflop = decoder_gflop_per_token(ref.model)
    print(f"decoder linear layers: {gflop:.3f} GFLOP per prompt token\n")

    ceiling = {}
    for name in LAYOUTS if 1 in args.sections else ():
        if not ceiling:
            print("[1] raw GEMM (256 x 576 @ 576 x 1536), and the tokens/s it allows")
        g = gemm_gflops(name)
        ceiling[name] = g / gflop
        note = "" if supported(name) else "  (emulated on this CPU)"
        print(f"  {name:9s} {g:7.1f} GFLOP/s  -> ceiling {ceiling[name]:6.0f} tok/s  x{ceiling[name] / ceiling['float32']:.2f} fp32{note}", flush=True)

    prompts = [builder.build(u, i, ev) for u, i, ev in episodes(dataset, rows[: args.prompts], 5, seed=0)]
    if 2 in args.sections:
        section_2(args, scorers, prompts, ceiling)
    if 3 in args.sections:
        section_3(args, scorers, builder, dataset, rows)
    if 4 in args.sections:
        section_4(args, scorers, default)
    if 5 in args.sections:
        section_5(args, scorers, builder, dataset, rows)


def section_2(args: argparse.Namespace, scorers: dict, prompts: list, ceiling: dict[str, float]) -> None:
    ref = scorers["float32"]
    mean_len = np.mean([len(ref.token_ids(p)) for p in prompts])
    print(f"\n[2] full prompts: {len(prompts)} validation prompts with 5 random pieces, {mean_len:.0f} tokens on average, no reuse")
    fp32_rate = {}
    for name in scorers:
        for batch in args.batches:
            rate = prompt_tokens_per_s(scorers[name], prompts, batch)
            fp32_rate.setdefault(batch, rate)
            share = f"  {100 * rate / ceiling[name]:5.1f}% of its GEMM ceiling" if name in ceiling else ""
            print(f"  {name:9s} batch {batch:2d}  {rate:7.0f} tok/s  x{rate / fp32_rate[batch]:.2f} fp32{share}", flush=True)


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
                f"  {label:18s} full {c['full']:6.2f} s   incremental {c['incremental']:6.2f} s (x{c['full'] / c['incremental']:.1f})   "
                f"shared-prefix {c['shared']:6.2f} s (x{c['full'] / c['shared']:.1f})   reset: full {c['full_reset']:.2f} s, "
                f"cold store {c['cold_reset']:.2f} s, target block stored {c['warm_reset']:.2f} s (x{c['full_reset'] / c['warm_reset']:.1f}); "
                f"bound from tokens computed per step: x{c['token_bound']:.1f}",
                flush=True,
            )


def section_4(args: argparse.Namespace, scorers: dict, default: str) -> None:
    ref = scorers["float32"]
    print(f"\n[4] environment steps/s, default training environment, random actions, {args.env_steps} x 8 / N vector steps of N environments")
    print(f"    old path = the fp32 scorer before issue 14: DynamicCache, transformers' sdpa (grouped heads copied), 8 prompts per forward pass, {BLAS_THREADS} BLAS threads, distances per environment;")
    print("    new path = prefilled cache, grouped attention, N prompts per forward pass (the vector's step in one call), 1 BLAS thread, a step's distances in one product; in each layout")
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
        print(f"  new path ({default}, N={best}, the fastest N) vs old path at N=8 (coral run's training before issue 14): x{rates[default, best] / rates['old', 8]:.2f}; at equal N: "
              + ", ".join(f"x{rates[default, n] / rates['old', n]:.2f} (N={n})" for n in args.n_envs))


def section_5(args: argparse.Namespace, scorers: dict, builder, dataset, rows) -> None:
    print(f"\n[5] does a prompt's P(Yes) depend on its batch or on prefix reuse? ({args.prompts} validation prompts, 0-5 random pieces)")
    eps = episodes(dataset, rows[: args.prompts], 5, seed=0)
    paths = {}
    for old in (True, False):
        set_path(scorers["float32"], old)
        scorers["float32"].kv_reuse = True
        scorers["float32"].kv_store.clear()
        paths[old] = np.concatenate([scorers["float32"].score([builder.build(u, i, ev[:r]) for u, i, ev in eps]) for r in range(6)])
    print(f"  float32   new path vs old path, incremental steps 0-5: max |dp| {np.abs(paths[True] - paths[False]).max():.1e}")
    for name in scorers:
        batch_dp, reuse_dp = invariance(scorers[name], builder, eps)
        print(f"  {name:9s} batch of 8 vs alone: max |dp| {batch_dp:.1e}   incremental vs whole: max |dp| {reuse_dp:.1e}", flush=True)


def parity(args: argparse.Namespace) -> None:
    from coral.llm.layout import AUC_TOLERANCE, PARITY_FILE, ParityRecord, cpu_flags, feature_class, numerics, supported
    from coral.llm.prompt import PromptBuilder
    from sklearn.metrics import roc_auc_score

    flags = cpu_flags()
    dataset, rows = default_pairs(args.valid_pairs)
    y = dataset.valid.label[rows]
    ref = load_scorer(args.aligned, "float32")
    builder = PromptBuilder(dataset, tokenizer=ref.tokenizer)
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
    print(f"{scorer} on {dataset.name} validation pairs: {len(rows)} ({int((y == 0).sum())} negatives), {sum(len(v) for v in sets.values())} prompts; fp32 {base_rate:.0f} tok/s")
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
            layout=layout, numerics=numerics(layout, flags), cpu_class=feature_class(flags), scorer=scorer, dataset=dataset.name,
            pairs=int(len(rows)), prompt_version=builder.version, auc_fp32=float(roc_auc_score(y, base[worst])), auc=float(roc_auc_score(y, got[worst])),
            mean_abs_dp=float(dp.mean()), max_abs_dp=float(dp.max()), speedup=float(rate / base_rate), date=datetime.date.today().isoformat(),
            command="python " + " ".join(shlex.quote(a) for a in sys.argv),
        )
        for k in sets:
            print(f"  {layout:9s}  {k:16s} AUC {roc_auc_score(y, got[k]):.4f}  dAUC {deltas[k]:+.4f}")
        verdict = "PASSES" if rec.passed else "FAILS"
        native = "" if supported(layout) else " (emulated here: the speed-up is not this layout's real one)"
        print(f"  {layout:9s}  numerics {rec.numerics}: worst dAUC {rec.auc_delta:+.4f} -> {verdict} the {AUC_TOLERANCE} rule; mean |dp| {rec.mean_abs_dp:.4f}, max {rec.max_abs_dp:.4f}; x{rec.speedup:.2f} fp32 tokens/s{native}", flush=True)
        records.append(rec)
    if args.write:
        data = json.loads(PARITY_FILE.read_text()) if PARITY_FILE.is_file() else {"records": []}
        keep = [r for r in data["records"] if (r["layout"], r["numerics"]) not in {(x.layout, x.numerics) for x in records}]
        data["records"] = keep + [r.to_json() for r in records]
        tmp = PARITY_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(PARITY_FILE)
        print(f"recorded in {PARITY_FILE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="speed", choices=["speed", "parity"])
    parser.add_argument("--aligned", help="alignment directory of the scorer to measure (default: the embedded zero-shot model)")
    parser.add_argument("--layouts", default="", help="comma-separated layouts besides float32 (default: all; parity: int8,bfloat16)")
    parser.add_argument("--prompts", type=int, default=16, help="[2] full prompts")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="[2] batch sizes")
    parser.add_argument("--episodes", type=int, default=8, help="[3] parallel episodes")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 8, 16, 32], help="[4] batched environments N")
    parser.add_argument("--env-steps", type=int, default=40, help="[4] vector steps per setting at N=8 (x 8/N at other N: the same environment steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="which of the sections [1]-[5] to run")
    parser.add_argument("--valid-pairs", type=int, default=None, help="parity: validation pairs to score (default: coral run's 70; 0: the whole split; more resolve the 0.005 rule better)")
    parser.add_argument("--write", action="store_true", help="parity: record the results in coral/llm/parity.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "parity":
        args.layouts = args.layouts or "int8,bfloat16"
        parity(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
