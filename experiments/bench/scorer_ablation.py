"""The scorer ablation of issue 27 on validation ``tuning`` rows: each alignment recipe vs a reference one.

``python experiments/bench/scorer_ablation.py --variant NAME=DIR ... --reference NAME --pairs 1000 --out DIR``

Every variant is an alignment directory of method topk (``coral align --method topk ...``), all on
the same dataset and warm start. On the same ``--pairs`` validation rows of the ``tuning`` role
(:func:`coral.data.folds.validation_roles`: never the threshold pairs, never the early-stopping
slice; never a test pair) every variant reads the same evidence: its 0..5 nearest pieces (the
greedy retrieval) and, for the ``--controls`` variants, 5 random and 5 shuffled ones (another
target's nearest, :mod:`coral.align.controls`). A variant evaluated once is read back from
``--out`` (keyed by its scorer's identity and the trees).
The prompts of one target are one token tree (:mod:`coral.align.tree`): the frozen trunk runs once
per tree and prompt format (cached in ``--out``, shared by the variants with the same prompt
settings and trunk depth), the variant's saved layers on top: the same P(Yes) as its scorer in
fp32 (``tests/test_align_topk.py``). Written to ``--out``:

- ``ablation.md``: per variant, AUC without evidence and with the 5 nearest pieces, 5 nearest vs none
  (does it read its evidence), the paired Δ AUC of the 5 nearest vs the reference variant's and vs the
  like-share of the same 5 pieces (95% bootstrap interval, DeLong p), random and shuffled vs none,
  AUC after 0..5 pieces, the alignment's CPU-seconds (trunk + training, from its ``align.json``) and
  its scoring speed (prompt tokens/s of the saved scorer in the default layout on ``--speed-pairs``
  pairs, none + 1..5 nearest with prefix reuse, as an episode scores them);
- the input twins (:mod:`coral.align.twins`, fitted on the align fold) on the same pairs, with
  their Δ vs the reference;
- ``ablation.json``: every figure, and ``p-NAME.npz`` the P(Yes) per pair of each variant.

Run it under the shared lock (``flock /work/heavy.lock python experiments/bench/scorer_ablation.py ...``).
"""

from __future__ import annotations

from coral.threads import set_thread_defaults

set_thread_defaults()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from coral.stats import format_interval  # noqa: E402

K = 5
BRANCHES = ("nearest", "random", "shuffled")


def align_config(meta: dict):
    """The :class:`~coral.align.config.AlignConfig` of an ``align.json`` (also one written before the prompt
    section)."""
    from coral.align.config import AlignConfig

    data = dict(meta["config"])
    if "chat_template" in data:
        data["prompt"] = {"chat_template": data.pop("chat_template")}
    return AlignConfig.from_dict(data)


def tuning_pairs(dataset, n: int):
    """Row indices into ``dataset.valid`` of ``n`` tuning rows (seeded, all when fewer)."""
    from coral.align.topk import pick_targets
    from coral.data.folds import validation_roles

    tuning = validation_roles(dataset).tuning
    return tuning[pick_targets(dataset.valid.take(tuning), n, seed=0)]


def trunk_key(model: str, prompt_version: str, depth: int, rows: np.ndarray, evidence: dict) -> str:
    h = hashlib.sha256(f"{model}|{prompt_version}|{depth}|{rows.tobytes().hex()}".encode())
    for name in evidence:
        h.update(name.encode())
        for pieces in evidence[name]:
            h.update(repr([(e.user, e.item, e.label) for e in pieces]).encode())
    return h.hexdigest()[:16]


def cached_trunk(out: Path, key: str, model, trees, labels, depth: int):
    """The trunk's outputs on the trees, read from ``out/trunk-KEY.npz`` when an earlier run computed them."""
    from coral.align.topk import TrunkCache, compute_trunk

    path = out / f"trunk-{key}.npy"
    if path.is_file():
        flat = np.load(path, mmap_mode="r")
        ends = np.cumsum([len(t.ids) for t in trees])
        hidden = [np.asarray(flat[a:b]) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends, strict=False)]
        meta = json.loads((out / f"trunk-{key}.json").read_text())
        return TrunkCache(list(trees), hidden, np.asarray(labels), meta["seconds"])
    cache = compute_trunk(model, trees, labels, depth, progress=True)
    np.save(path, np.concatenate(cache.hidden))
    (out / f"trunk-{key}.json").write_text(json.dumps({"seconds": cache.seconds, "tokens": cache.tokens}))
    return cache


def episode_prompts(builder, users, items, nearest, n_pairs: int) -> list:
    """None + 1..5 nearest pieces of the first ``n_pairs`` pairs: the prompts of a greedy episode."""
    return [
        builder.build(int(u), int(i), nearest[j][:m])
        for j, (u, i) in enumerate(zip(users[:n_pairs], items[:n_pairs], strict=False))
        for m in range(K + 1)
    ]


def scoring_speed(directory: Path, builder, users, items, nearest, n_pairs: int) -> dict:
    """Prompt tokens/s of the saved scorer (default layout) scoring none + 1..5 nearest per pair, an episode's
    prompts."""
    from coral.llm.aligned import load_aligned_scorer

    scorer = load_aligned_scorer(directory)
    prompts = episode_prompts(builder, users, items, nearest, n_pairs)
    scorer.score(prompts[: K + 1])  # warm-up (first-call allocations); its prefixes are cleared below
    scorer.kv_store.clear()
    before = dict(scorer.stats())
    start = time.perf_counter()
    p = scorer.score(prompts)
    seconds = time.perf_counter() - start
    computed = scorer.stats()["tokens_computed"] - before["tokens_computed"]
    return {
        "precision": scorer.precision, "pairs": n_pairs, "seconds": seconds, "tokens_computed": int(computed),
        "tokens_per_s": computed / seconds, "pairs_per_s": n_pairs / seconds, "p": p,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variant", action="append", required=True, help="NAME=DIR, an alignment directory of method topk"
    )
    parser.add_argument(
        "--reference", required=True, help="the variant every other is compared with (today's top2-finetune)"
    )
    parser.add_argument("--pairs", type=int, default=1000, help="tuning rows")
    parser.add_argument("--speed-pairs", type=int, default=30, help="pairs of the scoring-speed measurement (0: none)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--no-twins", action="store_true")
    parser.add_argument(
        "--baselines",
        default="",
        help="a baselines stage directory of `coral run` on the same split (RUN/stages/baselines-seed0-*): its models' "
             "validation scores as references",
    )
    parser.add_argument(
        "--controls",
        default="",
        help="NAME,... variants also scored with 5 random and 5 shuffled pieces (others: none and 1..5 nearest)",
    )
    args = parser.parse_args(argv)

    import torch

    from coral.align.controls import control_evidence
    from coral.align.topk import TreeBuilder, TreeSource, evidence_index, load_head, predict
    from coral.data import load_dataset
    from coral.data.folds import fold_interactions
    from coral.llm.aligned import identity, load_aligned_scorer, prompt_config_of, read_meta, scorer_name
    from coral.llm.model import load_model, model_identity
    from coral.llm.prompt import PromptBuilder
    from coral.retrieval import resolve_embeddings
    from coral.stats import paired_auc_differences

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = dict(v.split("=", 1) for v in args.variant)
    metas = {name: read_meta(d) for name, d in variants.items()}
    if args.reference not in variants:
        parser.error(f"--reference {args.reference} is not among the variants")
    first = metas[args.reference]
    dataset = load_dataset(first["dataset"])
    configs = {name: align_config(meta) for name, meta in metas.items()}
    for name, meta in metas.items():
        if (
            meta["dataset_fingerprint"] != dataset.fingerprint
            or configs[name].warm != configs[args.reference].warm
            or configs[name].seed != configs[args.reference].seed
        ):
            parser.error(f"variant {name} was aligned on another dataset, warm start or seed than {args.reference}")
    warm = configs[args.reference].warm
    index = evidence_index(dataset, resolve_embeddings(dataset, warm, seed=configs[args.reference].seed))
    rows = tuning_pairs(dataset, args.pairs)
    users, items, y = dataset.valid.user[rows], dataset.valid.item[rows], np.asarray(dataset.valid.label[rows])
    evidence = control_evidence(index, users, items, K, seed=0)
    share = np.array([np.mean([e.label for e in pieces]) if pieces else 0.5 for pieces in evidence["nearest"]])

    models: dict = {}  # base model path -> (model, tokenizer): variants may differ in their LLM (a larger one)
    with_controls = set(args.controls.split(",")) if args.controls else set()
    scores: dict[str, dict] = {}
    info: dict[str, dict] = {}
    for name, directory in variants.items():
        branches = BRANCHES if name in with_controls else BRANCHES[:1]
        meta = metas[name]
        base = meta["config"]["base_model"]
        if base not in models:
            models[base] = load_model(base, "float32")
        model, tokenizer = models[base]
        llm = model_identity(base)
        builder = PromptBuilder(dataset, prompt_config_of(meta), tokenizer)
        depth = int(meta["config"]["topk_trunk"])
        key = trunk_key(llm, builder.version, depth, rows, {b: evidence[b] for b in branches})
        saved = out / f"v-{name}-{identity(directory)}-{key}"
        if saved.with_suffix(".json").is_file():  # an earlier run evaluated this very scorer on these trees
            info[name] = json.loads(saved.with_suffix(".json").read_text())
            info[name]["scorer"] = scorer_name(meta)  # named by today's rule, which the saved record may predate
            scores[name] = dict(np.load(saved.with_suffix(".npz")))
            print(f"{name}: read back from {saved}", flush=True)
            continue
        sources = [
            TreeSource(int(u), int(i), int(label), {b: evidence[b][j] for b in branches})
            for j, (u, i, label) in enumerate(zip(users, items, y, strict=False))
        ]
        trees = TreeBuilder(builder, tokenizer)
        t0 = time.process_time()
        cache = cached_trunk(out, key, model, [trees.tree(s) for s in sources], y, depth)
        cache.pairs = np.column_stack([users, items]).astype(np.int64)
        p = predict(load_head(model, tokenizer, directory), cache)
        scores[name] = {f"{b}{k}": v for (b, k), v in p.items()}
        summary = meta["summary"]
        info[name] = {
            "dir": str(directory), "scorer": scorer_name(meta), "base_model": llm,
            "prompt_version": meta["prompt_version"],
            "targets": summary["n_targets"], "layers": int(meta["config"]["topk_layers"]), "trunk": depth,
            "align_cpu_s": round(summary["trunk_cpu_seconds"] + summary["train_cpu_seconds"], 1),
            "trunk_cpu_s": summary["trunk_cpu_seconds"], "train_cpu_s": summary["train_cpu_seconds"],
            "best_step": summary["best_step"], "steps": summary["steps"], "stop_score": summary["stop_score_best"],
            "eval_cpu_s": round(time.process_time() - t0, 1), "tree_tokens_per_pair": cache.tokens / len(rows),
        }
        del cache
        if args.speed_pairs:
            speed = scoring_speed(Path(directory), builder, users, items, evidence["nearest"], args.speed_pairs)
            tree_p = np.stack(
                [scores[name][f"nearest{m}" if m else "none0"][: args.speed_pairs] for m in range(K + 1)], axis=1
            ).ravel()
            speed["max_abs_dp_vs_tree_fp32"] = float(np.max(np.abs(speed.pop("p") - tree_p)))
            # The saved scorer in fp32 on a few pairs: the tree path reads what it computes (float16 trunk store aside).
            n_parity = min(3, args.speed_pairs)
            fp32 = load_aligned_scorer(directory, precision="float32").score(
                episode_prompts(builder, users, items, evidence["nearest"], n_parity)
            )
            speed["parity_fp32_max_abs_dp"] = float(np.max(np.abs(fp32 - tree_p[: n_parity * (K + 1)])))
            info[name]["speed"] = speed
        np.savez(saved.with_suffix(".npz"), **scores[name])
        saved.with_suffix(".json").write_text(json.dumps(info[name], default=float))
        print(f"{name}: {info[name]}", flush=True)

    references = {"like-share@5": share}
    if not args.no_twins:
        from coral.align.twins import InputTwin, twin_inputs

        align_rows = fold_interactions(dataset, "align", warm.folds)
        fit_blocks, eval_blocks = (
            twin_inputs(dataset, index, align_rows.user, align_rows.item, k=K),
            twin_inputs(dataset, index, users, items, k=K),
        )
        for inputs in (("rates",), ("cf",), ("share",), ("rates", "cf", "share")):
            twin = InputTwin.fit(dataset, index, align_rows, inputs, K, blocks=fit_blocks)
            references[twin.name] = twin.predict(dataset, index, users, items, blocks=eval_blocks)
    if args.baselines:
        from coral.pipeline.scores import load_scores

        stage = json.loads((Path(args.baselines) / "config.json").read_text())
        if stage.get("dataset_fingerprint") != dataset.fingerprint:
            parser.error(
                f"{args.baselines} was run on another split ({stage.get('dataset_fingerprint')}, not "
                f"{dataset.fingerprint})"
            )
        for path in sorted(Path(args.baselines).glob("*.npz")):
            for method in load_scores(path) if path.name != "scores.npz" else ():
                valid = method.valid
                if not np.array_equal(valid.rows, np.arange(len(dataset.valid))):
                    parser.error(f"{path}: validation scores do not cover the split")
                references[f"{method.model} (CTR, early-stopped on all validation)"] = valid.p[-1][rows]
    np.savez(out / "p-references.npz", rows=rows, labels=y, **{k.replace("/", "_"): v for k, v in references.items()})
    report = figures(y, scores, references, info, args.reference, args.n_boot, paired_auc_differences)
    report.update(
        {
            "command": " ".join(shlex.quote(a) for a in [sys.executable.split("/")[-1], *sys.argv]),
            "n_pairs": len(rows), "n_negative": int((y == 0).sum()), "dataset": dataset.name,
            "dataset_fingerprint": dataset.fingerprint,
        }
    )
    (out / "ablation.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "ablation.md").write_text(table(report))
    print(table(report))
    return 0


def carried(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A target with fewer than K pieces of a branch (the leakage guard dropped a shuffled piece)
    keeps its last prompt's P(Yes) for the missing counts, as :func:`coral.align.controls.evidence_controls`."""
    out = dict(scores)
    for branch in BRANCHES:
        for k in range(1, K + 1):
            if f"{branch}{k}" in out:
                previous = out["none0"] if k == 1 else out[f"{branch}{k - 1}"]
                out[f"{branch}{k}"] = np.where(np.isnan(out[f"{branch}{k}"]), previous, out[f"{branch}{k}"])
    return out


def figures(y, scores, references, info, reference, n_boot, paired_auc_differences) -> dict:
    """Every AUC and paired difference of the report (one shared set of bootstrap resamples per comparison)."""
    from sklearn.metrics import roc_auc_score

    scores = {name: carried(s) for name, s in scores.items()}

    nearest = {name: s[f"nearest{K}"] for name, s in scores.items()}
    vs_reference = paired_auc_differences(y, {**nearest, **references}, reference, n_boot=n_boot)
    vs_share = paired_auc_differences(
        y, {**nearest, "like-share@5": references["like-share@5"]}, "like-share@5", n_boot=n_boot
    )
    rows = {}
    for name, s in scores.items():
        # The test of a scorer that reads its evidence (5 nearest − none > 0) for every variant; random and
        # shuffled − none for the variants scored with the controls. One call: the same resamples for all three.
        branches = {b: s[f"{b}{K}"] for b in BRANCHES if f"{b}{K}" in s}
        controls = paired_auc_differences(y, {"none": s["none0"], **branches}, "none", n_boot=n_boot)
        rows[name] = {
            **info[name], "auc_none": roc_auc_score(y, s["none0"]), "auc_nearest": roc_auc_score(y, nearest[name]),
            "by_pieces": [roc_auc_score(y, s["none0"] if m == 0 else s[f"nearest{m}"]) for m in range(K + 1)],
            "vs_reference": None if name == reference else vs_reference[name].__dict__,
            "vs_share": vs_share[name].__dict__, **{f"{c}_vs_none": controls[c].__dict__ for c in controls},
        }
    refs = {
        name: {"auc": roc_auc_score(y, p), "vs_reference": vs_reference[name].__dict__}
        for name, p in references.items()
    }
    return {"reference": reference, "variants": rows, "references": refs}


def _d(r: dict | None) -> str:
    if r is None:
        return "(reference)"
    return f"{format_interval(r['diff'], r['low'], r['high'])} p={r['p_value']:.2g}"


def _c(row: dict, control: str) -> str:
    r = row.get(f"{control}_vs_none")
    return "" if r is None else format_interval(r["diff"], r["low"], r["high"])


def table(report: dict) -> str:
    lines = [
        f"{report['n_pairs']} validation tuning pairs ({report['n_negative']} negative), one seed; AUC x100; Δ = "
        "paired difference [95% bootstrap interval], DeLong p.",
        "",
        "| variant | scorer | LLM (layers kept) | targets | layers | AUC none | AUC 5 nearest | 5 nearest − none | "
        "Δ 5 nearest vs reference | Δ vs like-share of the same 5 | random − none | shuffled − none | AUC after 0..5 "
        "nearest | align CPU-s (trunk + train) | best step / steps | scoring tokens/s (layout) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["variants"].items():
        # The base model's file or directory name (read-back rows of older runs: the embedded one).
        llm = r.get("base_model", "embedded").split(":")[0].split("/")[-1]
        speed = r.get("speed")
        # A variant read back from an older run may carry its speed without the precision.
        speed_text = f"{speed['tokens_per_s']:.0f} ({speed.get('precision', 'layout not recorded')})" if speed else ""
        lines.append(
            f"| {name} | {r['scorer']} | {llm} ({r['trunk'] + r['layers']}) | {r['targets']} | {r['layers']} | "
            f"{100 * r['auc_none']:.2f} | "
            f"{100 * r['auc_nearest']:.2f} | {_c(r, 'nearest')} | {_d(r['vs_reference'])} | {_d(r['vs_share'])} | "
            f"{_c(r, 'random')} | {_c(r, 'shuffled')} | {' '.join(f'{100 * a:.1f}' for a in r['by_pieces'])} | "
            f"{r['align_cpu_s']:.0f} ({r['trunk_cpu_s']:.0f} + {r['train_cpu_s']:.0f}) | {r['best_step']} / "
            f"{r['steps']} | {speed_text} |"
        )
    lines += [
        "", "Non-LLM references on the same pairs (twins fitted on the align fold):", "",
        "| reference | AUC | Δ vs reference variant |", "|---|---|---|",
    ]
    for name, r in report["references"].items():
        lines.append(f"| {name} | {100 * r['auc']:.2f} | {_d(r['vs_reference'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
