"""Benchmarks of LLM scoring on this machine.

``python experiments/bench/scoring.py speed`` (default, about 5 minutes on 2 cores) prints, from
one run: prompts/s and tokens/s at batch 1/8/32 and 256/1024-token prompts per layout; the
per-step cost of incremental vs full scoring over a 5-step episode; the cost of a cache hit.

``python experiments/bench/scoring.py quality`` scores the validation split of a dataset with the
LLM alone and with 5 random retrieval rounds, per layout and prompt order, and prints the AUCs
(the measurement behind ``coral.llm.model.BF16_MATCHES_FP32``). Scores go to the persistent cache, so an
interrupted run resumes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("OMP_PLACES", "cores")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _load(dtype: str):
    from coral.llm.model import load_embedded_model

    return load_embedded_model(dtype)


def quality(args: argparse.Namespace) -> None:
    from coral.data import load_dataset
    from coral.llm.cache import CachedScorer
    from coral.llm.evaluate import random_evidence, score_pairs
    from coral.llm.hf import HFScorer
    from coral.llm.model import model_identity
    from coral.llm.prompt import PromptBuilder, PromptConfig
    from coral.metrics import binary_metrics

    dataset = load_dataset(args.dataset)
    rows = dataset.valid
    n = min(len(rows), args.limit) if args.limit else len(rows)
    users, items, y = rows.user[:n], rows.item[:n], rows.label[:n]
    print(f"{dataset.name} validation: {n} pairs, {int((y == 0).sum())} negatives")
    for dtype in (args.layouts.split(",") if args.layouts != "auto" else ["float32", "bfloat16"]):
        model, tokenizer = _load(dtype)
        inner = HFScorer(model, tokenizer, model_id=model_identity(None), batch_size=args.batch_size, kv_reuse=False)
        scorer = CachedScorer(inner, args.cache) if args.cache else inner
        for order in args.orders.split(","):
            builder = PromptBuilder(dataset, PromptConfig(order=order), tokenizer)
            for name, evidence in (("llm-only", None), ("random-5", random_evidence(dataset, 5, seed=0))):
                if name == "random-5" and not args.random:
                    continue
                start = time.time()
                result = score_pairs(scorer, builder, users, items, evidence)
                m = binary_metrics(y, result.p_yes, n_boot=200)
                print(
                    f"layout={dtype:9s} order={order:11s} {name:9s} AUC {m['auc']:.4f} [{m['auc_ci_low']:.3f},{m['auc_ci_high']:.3f}] "
                    f"mean p {result.p_yes.mean():.3f} mean Yes/No mass {result.yes_no_mass.mean():.3f}  {time.time() - start:.0f}s",
                    flush=True,
                )


def _synthetic_prompt(tokenizer, n_tokens: int, seed: int):
    """A chat prompt of about ``n_tokens`` tokens built from random item-like words."""
    from coral.llm.base import Prompt

    rng = np.random.default_rng(seed)
    words = ["gift", "card", "box", "holiday", "design", "tin", "amazon", "greeting", "birthday", "red"]
    body = []
    while len(tokenizer(" ".join(body)).input_ids) < n_tokens - 40:
        body.append(str(rng.choice(words)))
    text = " ".join(body)
    return Prompt((f"<|im_start|>user\n{text}\n", 'Would you recommend it? Answer only "Yes" or "No".<|im_end|>\n<|im_start|>assistant\n'))


def speed(args: argparse.Namespace) -> None:
    from coral.data import load_dataset
    from coral.evidence import Evidence
    from coral.llm.cache import CachedScorer
    from coral.llm.hf import HFScorer
    from coral.llm.prompt import PromptBuilder, PromptConfig

    from coral.llm.model import default_dtype, native_bf16

    layouts = args.layouts.split(",") if args.layouts != "auto" else ["float32", "bfloat16"]
    if args.episodes_only:
        layouts = []
    print(f"threads={torch.get_num_threads()}  OMP_PROC_BIND={os.environ.get('OMP_PROC_BIND')}  native bf16: {native_bf16()}  default layout: {default_dtype()}")
    for dtype in layouts:
        model, tokenizer = _load(dtype)
        scorer = HFScorer(model, tokenizer, model_id="bench", kv_reuse=False, batch_size=64, max_batch_tokens=1 << 20)
        scorer.score([_synthetic_prompt(tokenizer, 64, 0)])  # warm-up
        # Without native bf16 (emulated, ~4x slower than fp32) the full grid would take too long
        # by default: measure one point to show the gap.
        emulated = dtype == "bfloat16" and not native_bf16() and args.layouts == "auto"
        for n_tokens in [int(t) for t in args.lengths.split(",")][: 1 if emulated else None]:
            for batch in ([8] if emulated else [int(b) for b in args.batches.split(",")]):
                prompts = [_synthetic_prompt(tokenizer, n_tokens, seed) for seed in range(batch)]
                real = sum(len(scorer.token_ids(p)) for p in prompts)
                start = time.perf_counter()
                scorer.score(prompts)
                sec = time.perf_counter() - start
                print(f"layout={dtype:9s} tokens~{n_tokens:5d} batch={batch:3d}  {batch / sec:7.2f} prompts/s  {real / sec:7.0f} tokens/s  ({sec:.2f}s)", flush=True)

    # Incremental vs full scoring over a 5-step episode on real prompts.
    dataset = load_dataset(args.dataset)
    dtype = default_dtype() if args.layouts == "auto" else args.layouts.split(",")[0]
    model, tokenizer = _load(dtype)
    builder = PromptBuilder(dataset, PromptConfig(summarise_in_tail=args.summarise_in_tail), tokenizer)
    train = dataset.train
    rng = np.random.default_rng(0)
    episodes = []
    for k in range(args.episodes):
        u, i = int(dataset.valid.user[k]), int(dataset.valid.item[k])
        picks = rng.choice(len(train), 5, replace=False)
        episodes.append((u, i, [Evidence(int(train.user[j]), int(train.item[j]), int(train.label[j])) for j in picks]))
    for mode, reuse in (("full", False), ("incremental", True)):
        scorer = HFScorer(model, tokenizer, model_id="bench", kv_reuse=reuse, batch_size=args.episodes)
        step_seconds = []
        for step in range(6):  # step 0 = no evidence, then one more piece per step
            prompts = [builder.build(u, i, ev[:step]) for u, i, ev in episodes]
            start = time.perf_counter()
            scorer.score(prompts)
            step_seconds.append(time.perf_counter() - start)
        st = scorer.stats()
        print(f"episode {mode:11s} {args.episodes} parallel episodes, layout={dtype}: step 0 {step_seconds[0]:.2f}s, steps 1-5 mean "
              f"{np.mean(step_seconds[1:]):.3f}s per step ({np.mean(step_seconds[1:]) / args.episodes * 1000:.0f} ms per prompt); "
              f"tokens computed {st['tokens_computed']}, reused {st['tokens_reused']}", flush=True)
        if mode == "full":
            full_step = np.mean(step_seconds[1:])
        else:
            print(f"incremental speed-up per step (steps 1-5): {full_step / np.mean(step_seconds[1:]):.1f}x")

    # Cache hit cost.
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedScorer(HFScorer(model, tokenizer, model_id="bench", kv_reuse=False), Path(tmp) / "scores.sqlite")
        prompts = [builder.build(u, i, ev) for u, i, ev in episodes]
        cached.score(prompts)
        start = time.perf_counter()
        repeats = 50
        for _ in range(repeats):
            cached.score(prompts)
        sec = (time.perf_counter() - start) / (repeats * len(prompts))
        print(f"cache hit: {sec * 1e6:.0f} us per prompt (batches of {len(prompts)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("speed", "quality"), default="speed")
    parser.add_argument("--layouts", default="auto", help="weight layouts (dtypes), comma-separated; auto = float32 and bfloat16 (bf16 at one point only where it is emulated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default="gift_cards")
    parser.add_argument("--lengths", default="256,1024", help="speed: prompt lengths in tokens")
    parser.add_argument("--batches", default="1,8,32", help="speed: batch sizes")
    parser.add_argument("--episodes", type=int, default=4, help="speed: parallel episodes in the incremental test")
    parser.add_argument("--episodes-only", action="store_true", help="speed: skip the throughput grid")
    parser.add_argument("--summarise-in-tail", action="store_true", help="speed: PromptConfig(summarise_in_tail=True), the paper's relative order, in the episode test")
    parser.add_argument("--orders", default="incremental,paper", help="quality: prompt orders")
    parser.add_argument("--random", action=argparse.BooleanOptionalAction, default=True, help="quality: also score with 5 random evidence pieces")
    parser.add_argument("--limit", type=int, default=0, help="quality: first N validation pairs only")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache", default=None, help="quality: score cache file (resume)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (quality if args.mode == "quality" else speed)(args)


if __name__ == "__main__":
    main()
