"""``coral run``: every method on every dataset, as config-keyed stages that a re-run skips.

For each dataset and run seed (with ``vary_split`` every seed has its own split), the shared
evaluation pairs are drawn first (``pairs-seedS.csv``: a seeded stratified subset of test and of
validation, :mod:`coral.pipeline.pairs`); then the stages, in order:

1. ``baselines-seedS``: the CTR baselines and the user+item-mean reference, scored on the whole
   validation and test splits (resumable per model); with ``side_feature_baselines`` also
   ``baselines+side-seedS``: the CTR baselines trained with the item side features (rows ``dfm+side``, ...);
2. ``coral-random@SCORER-seedS``: random retrieval on the shared test and validation pairs; its
   round 0 (no evidence) is the LLM alone (``llm-only``), its rounds 0..K CoRAL-random
   (``llm-only@SCORER-seedS`` scores round 0 alone when random retrieval is not asked for);
3. ``align-seedS``: the aligned scorer (``coral align``, seeded by the run seed), when ``align`` is on;
   then ``twins-seedS`` (``input_twins``, when its prompts give it base rates or CF soft tokens): the
   input twins, logistic regressions (no LLM) on the same numbers, fitted on the alignment's own targets;
4. ``coral-ALGO-WARM@SCORER-seedS``: a trained policy (``policies.train``) evaluated on the shared pairs;
5. ``controls@SCORER-seedS`` (with ``controls``): the aligned scorer on the shared test pairs with
   no evidence, K nearest, K random and K shuffled pieces (:mod:`coral.align.controls`);
6. ``reference-label-aware-WARM@SCORER-seedS`` (with ``label_aware_pairs``; after every seed's
   stages above): the label-aware reference (evaluation only, never a method) on a subset of the
   shared test pairs (:mod:`coral.pipeline.headroom`);
7. the report (:mod:`coral.pipeline.compare`): ``results.csv``, ``results.md`` (main table, paired
   Δ AUC table, the paper's claims, the learned policies' training, the headroom over greedy),
   ``auc_by_round.png`` (with 95% bands), ``training_curves.png`` (training return and the
   deterministic policy's validation return, band over seeds), ``headroom.json``.

Every stage writes its methods' P(like) per pair (``scores.npz``); the report computes every
number the same way for every method from those scores.

With ``align`` on, ``methods`` run with the aligned scorer (the zero-shot model ignores the
evidence, see experiments/notes/align.md) and ``zero_shot_methods`` with the zero-shot one;
with it off, ``methods`` run with the zero-shot scorer.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from coral.align.config import AlignConfig
from coral.align.twins import C_GRID, twin_input_sets
from coral.config import to_dict
from coral.data.dataset import CoralDataset, DataConfig
from coral.envs import EnvConfig
from coral.errors import CoralError, DataError
from coral.io import atomic_write_json
from coral.llm import ScorerConfig, ScorerSpec, parse_scorer_spec
from coral.llm.aligned import read_meta, scorer_name
from coral.pipeline.claims import claims_records, paper_claims
from coral.pipeline.compare import SIDE_FEATURES, RunScores, side_feature_model, twin_model
from coral.pipeline.config import RunConfig
from coral.pipeline.headroom import HEADROOM_FILE, headroom, headroom_section, reference_rows
from coral.pipeline.pairs import SharedPairs
from coral.pipeline.report import (
    console_summary,
    controls_section,
    dataset_report,
    display_name,
    markdown_table,
    plot_round_bands,
    score_rows,
    training_section,
    write_text,
)
from coral.pipeline.scores import SCORES_FILE, MethodScores, SplitScores, load_scores, save_scores
from coral.pipeline.stages import Stage, run_stage
from coral.results import append_rows, library_versions

#: Algorithm of each trained-policy method name.
TRAINED = {"coral-ppo": "ppo", "coral-ddpg": "ddpg", "coral-maskable_ppo": "maskable_ppo"}
FIXED = ("llm-only", "coral-random", "coral-greedy")
CONTROLS_FILE = "controls.json"
CONTROLS_SCORES = "controls.npz"
CLAIMS_FILE = "claims.json"


def read_controls(directory: Path) -> dict[str, Any]:
    """A controls stage's figures (``controls.json``) with its P(Yes) per pair (``controls.npz``) as ``per_pair``,
    which the report pools over seeds (:func:`coral.pipeline.report.controls_section`).

    :param directory: the stage's directory.
    """
    figures = json.loads((directory / CONTROLS_FILE).read_text())
    with np.load(directory / CONTROLS_SCORES) as per_pair:
        figures["per_pair"] = {k: per_pair[k] for k in per_pair.files}
    return figures


@dataclass
class RunOutputs:
    """Where a run's outputs are."""

    root: Path
    results: Path
    table: Path
    table_text: str
    summary: str
    """The end-of-run summary (Markdown): each method's AUC and the claims' verdicts."""
    plots: list[Path]


def scorer_row_tag(spec: str) -> str:
    """The scorer part of the rows that the run's ``scorer`` scores: for ``aligned:DIR`` the name of what
    produced that alignment (e.g. ``top2-finetune+rates+cf4``), else ``zero-shot`` (a model as shipped).

    :raises CoralError: when ``aligned:DIR`` holds no finished alignment.
    """
    parsed = parse_scorer_spec(spec)
    return scorer_name(read_meta(parsed.argument)) if parsed.backend == "aligned" else "zero-shot"


def stage_identity(kind: str, dataset: CoralDataset, **parts: Any) -> dict[str, Any]:
    """What a stage's outputs depend on: its kind, the full resolved config of everything it runs
    (dataclasses as :func:`coral.config.to_dict`, defaults included), the dataset's fingerprint
    and the library versions. Its hash names the stage's directory, so that no change of any of
    these can reuse a stale result."""
    return {
        "stage": kind,
        "dataset_fingerprint": dataset.fingerprint,
        "versions": library_versions(),
        **{k: to_dict(v, identity=True) if dataclasses.is_dataclass(v) else v for k, v in parts.items()},
    }


def _prompt_config():
    """The prompt settings of the environment (``coral.llm.prompt.PromptConfig`` defaults)."""
    from coral.llm.prompt import PromptConfig

    return PromptConfig()


def _alignment_parts(align_config: AlignConfig) -> dict[str, Any]:
    """What an aligned scorer depends on, in a stage identity: the align stage's and those of the
    stages that read its outputs (the input twins fit its targets)."""
    return {
        "alignment": align_config,
        "prompt": align_config.prompt,
        "warm_start_model": align_config.warm.baseline(align_config.seed),
    }


class MainJob:
    """Builds and runs the stages of one ``coral run``."""

    def __init__(self, config: RunConfig, out: Path, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = out
        self.log = log
        #: The data section each loaded dataset came from, by fingerprint.
        self._data: dict[str, DataConfig] = {}

    # ---- shared resources ---------------------------------------------------------------------
    def checked_scorer(self) -> ScorerSpec:
        """The run's ``--scorer``, checked before anything is loaded or written: a spec that cannot
        serve a stage of this run is one line here, not an error after the baselines have run.

        It scores the zero-shot stages (``methods`` with ``align`` off, ``zero_shot_methods`` with
        it on); with ``align`` on it is also the model the alignment fine-tunes, so it must be a
        local model (``hf`` or ``hf:PATH``).
        """
        spec = parse_scorer_spec(self.config.scorer.scorer)
        spec.require_files()
        if self.config.align and spec.backend != "hf":
            raise CoralError(
                f"--scorer {spec.text}: alignment (method {self.config.alignment.method}) fine-tunes a local model, hf "
                "or hf:PATH, "
                f"and {spec.backend} is not one; pass --no-align to run the methods with {spec.text} as it is"
            )
        base = self.config.alignment.base_model
        if self.config.align and spec.path is not None and base is not None and Path(base).expanduser() != spec.path:
            raise CoralError(
                f"--scorer {spec.text} and --alignment.base-model {base} name different models; give only --scorer"
            )
        return spec

    def alignment_config(self, seed: int) -> AlignConfig:
        """The alignment's settings for run seed ``seed``: its seed offset by ``seed``, and the run's
        ``--scorer hf:PATH`` as the model it starts from (``hf``: the embedded model, as the default)."""
        spec = parse_scorer_spec(self.config.scorer.scorer)
        base = self.config.alignment.base_model if spec.path is None else spec.argument
        return dataclasses.replace(self.config.alignment, seed=self.config.alignment.seed + seed, base_model=base)

    def scorer_config(self, spec: str) -> ScorerConfig:
        """The scorer section of a stage: the run's, with the stage's spec (zero-shot or aligned).

        An "auto" precision is resolved here (for the in-process backends), so that the precision
        this machine picks is part of every stage identity.
        """
        precision = self.config.scorer.precision
        if parse_scorer_spec(spec).local:
            from coral.llm.precision import resolve_precision

            precision = resolve_precision(precision)
        return dataclasses.replace(self.config.scorer, scorer=spec, precision=precision)

    def scorer(self, spec: str):
        """One scorer per spec for the whole process (the model loads once)."""
        from coral.envs.resources import resolve_scorer

        return resolve_scorer(self.scorer_config(spec))

    def dataset(self, name: str, seed: int = 0) -> CoralDataset:
        """The dataset ``name`` (a name or path) with the run's data settings; with ``vary_split``
        run seed ``seed`` splits it with ``split_seed + seed``."""
        from coral.data import load_dataset

        data = dataclasses.replace(self.config.data, dataset=name)
        if self.config.vary_split:
            data = dataclasses.replace(data, split_seed=data.split_seed + seed)
        ds = load_dataset(data)
        self._data[ds.fingerprint] = data
        return ds

    def pairs(self, ds: CoralDataset, root: Path, seed: int) -> SharedPairs:
        """The shared evaluation pairs of ``ds`` (seeded by its split seed), also written as CSV."""
        pairs = SharedPairs.draw(
            ds, self.config.eval_pairs, self.config.valid_pairs, self._data[ds.fingerprint].split_seed
        )
        pairs.write(root / f"pairs-seed{seed}.csv", ds)
        return pairs

    def env_config(self, ds: CoralDataset, spec: str, warm_start: str, seed: int) -> EnvConfig:
        """The environment of the LLM stages on ``ds``: the run's training environment with this
        dataset, scorer and warm start, its embeddings seeded by the run seed (so that every
        retrieval method of one seed, trained or not, searches the same warm-start tables)."""
        env = self.config.train.env
        warm = dataclasses.replace(env.warm, warm_start=warm_start)
        return dataclasses.replace(
            env, data=self._data[ds.fingerprint], scorer=self.scorer_config(spec), warm=warm, embedding_seed=seed
        )

    def _eval_identity(self, pairs: SharedPairs) -> dict[str, Any]:
        return {"pairs": pairs.fingerprint, "batch_size": self.config.train.n_envs}

    # ---- stages -------------------------------------------------------------------------------
    def baselines_stage(self, ds: CoralDataset, seed: int, side_features: bool = False) -> Stage:
        """The CTR baselines and the mean-rating reference on the whole validation and test splits,
        one scores file per model (a killed stage resumes at the next model).

        :param side_features: the stage of ``side_feature_baselines`` instead: the CTR baselines
            trained with the dataset's item side features (rows ``dfm+side``, ...; no reference).
        """
        from coral.baselines.reference import REFERENCE_NAME

        template = self.config.baseline
        if side_features:
            template = dataclasses.replace(template, use_side_features=True)
            models = list(self.config.baselines)
        else:
            models = [*self.config.baselines, REFERENCE_NAME]

        def run(directory: Path) -> None:
            from coral.baselines.runner import fit_and_score

            for model in models:
                path = directory / f"{model}.npz"
                if path.exists():
                    continue
                fitted = fit_and_score(ds, model, seed, template)
                splits = {
                    name: SplitScores(np.arange(len(ds.split(name))), ds.split(name).label, getattr(fitted, name))
                    for name in ("test", "valid")
                }
                info = {"config": fitted.config, "train_seconds": round(fitted.train_seconds, 3), **fitted.details}
                row = side_feature_model(model) if side_features else model
                save_scores(path, [MethodScores(row, seed, splits["test"], splits["valid"], info)])
                self.log(
                    f"       {row}: validation AUC {info.get('valid_auc', float('nan')):.4f}, "
                    f"{fitted.train_seconds:.0f} s"
                    if "valid_auc" in info
                    else f"       {row}: {fitted.train_seconds:.1f} s"
                )
            save_scores(
                directory / SCORES_FILE, [m for model in models for m in load_scores(directory / f"{model}.npz")]
            )

        # The stage without side features keeps the identity it had before side_feature_baselines existed.
        identity = stage_identity("baselines", ds, baseline=template, models=models, seed=seed)
        return Stage(f"baselines{SIDE_FEATURES if side_features else ''}-seed{seed}", identity, run)

    def fixed_policy_stage(
        self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, policy_name: str, seed: int
    ) -> Stage:
        """Random (or greedy) retrieval on the shared pairs, K rounds; round 0 is the LLM alone.

        ``llm-only`` alone runs 0 rounds: only the prompts without evidence are scored.
        """
        from coral.envs import EnvResources
        from coral.policies.fixed import fixed_policy_env
        from coral.policies.greedy import GreedyPolicy
        from coral.policies.random_policy import RandomPolicy

        rounds = 0 if policy_name == "llm-only" else self.config.train.env.rounds
        policy = GreedyPolicy() if policy_name == "coral-greedy" else RandomPolicy(seed=seed)
        # Greedy searches the warm start that the trained policies use first.
        env = fixed_policy_env(self.env_config(ds, spec, self.config.warm_starts[0], seed), policy, seed)
        warm = env.warm.warm_start
        batch = self.config.train.n_envs

        # Greedy's row names its warm start, as a trained policy's does: claim 2 pairs the two.
        model = f"coral-greedy-{warm}" if policy_name == "coral-greedy" else policy_name

        def run(directory: Path) -> None:
            from coral.policies.evaluate import evaluate_policy, write_records

            scorer = self.scorer(spec)
            resources = EnvResources(dataset=ds, scorer=scorer)
            test = evaluate_policy(
                policy, env, resources, split="test", rounds=rounds, batch_size=batch, episodes=pairs.test
            )
            valid = evaluate_policy(
                policy, env, resources, split="valid", rounds=rounds, batch_size=batch, episodes=pairs.valid
            )
            write_records(directory / "eval_test.jsonl", [test])
            config = {
                "policy": policy_name,
                "scorer": tag,
                "scorer_fingerprint": scorer.fingerprint,
                "rounds": rounds,
                "warm_start_fingerprint": test.warm_start_fingerprint,
            }
            methods = (
                []
                if policy_name == "llm-only"
                else [_scores(f"{model}@{tag}", seed, test, valid, dict(config), test.retrieval_statistics())]
            )
            if policy_name in ("llm-only", "coral-random"):
                methods.append(
                    _scores(
                        f"llm-only@{tag}",
                        seed,
                        test,
                        valid,
                        dict(config, policy="llm-only", rounds=0),
                        {},
                        last_round=0,
                    )
                )
            save_scores(directory / SCORES_FILE, methods)

        identity = stage_identity(
            "fixed-policy",
            ds,
            policy=policy_name,
            seed=seed,
            rounds=rounds,
            env=env,
            prompt=_prompt_config(),
            warm_start_model=env.warm.baseline(env.embedding_seed),
            **self._eval_identity(pairs),
        )
        return Stage(f"{policy_name}@{tag}-seed{seed}", identity, run)

    def trained_policy_stage(
        self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, method: str, warm: str, seed: int
    ) -> Stage:
        from coral.envs import EnvResources

        algo = TRAINED[method]
        timesteps = self.config.ddpg_timesteps if algo == "ddpg" else self.config.ppo_timesteps
        env = self.env_config(ds, spec, warm, seed)
        if algo == "maskable_ppo":
            # MaskablePPO picks among candidates; without their features it has nothing to choose by
            # (experiments/notes/env-policies.md, the scripted table), so it always sees them.
            env = dataclasses.replace(
                env,
                observe="candidates",
                stop_action=self.config.candidate_stop,
                piece_cost=self.config.candidate_piece_cost,
            )
        template = dataclasses.replace(self.config.train, env=env, algo=algo, timesteps=timesteps, seed=seed)
        batch = self.config.train.n_envs

        def run(directory: Path) -> None:
            from coral.policies.evaluate import evaluate_policy, write_records
            from coral.policies.run_dir import load_run_policy, read_summary
            from coral.policies.train import train

            run_dir = directory / "run"
            train_config = dataclasses.replace(template, out=str(run_dir))
            resources = EnvResources(dataset=ds, scorer=self.scorer(spec))
            if not (run_dir / "model.zip").exists():
                resume = self.config.resume_training and (run_dir / "checkpoints" / "latest.json").exists()
                if not resume and run_dir.exists():
                    shutil.rmtree(run_dir)  # a killed training restarts, so results equal an uninterrupted run's
                train(train_config, resources, resume=resume)
            config, policy = load_run_policy(run_dir)
            test = evaluate_policy(
                policy, config.env_config("test"), resources, split="test", batch_size=batch, episodes=pairs.test
            )
            valid = evaluate_policy(
                policy, config.env_config("valid"), resources, split="valid", batch_size=batch, episodes=pairs.valid
            )
            write_records(run_dir / "eval_test.jsonl", [test])
            summary = read_summary(run_dir)
            updates = {k: int(summary[k]) for k in ("policy_updates", "gradient_steps") if k in summary}
            fingerprints = {
                "scorer_fingerprint": test.scorer_fingerprint,
                "warm_start_fingerprint": test.warm_start_fingerprint,
            }
            info = {
                "config": {**config.to_dict(), "scorer": tag, **fingerprints},
                "train_seconds": float(summary.get("train_seconds", 0.0)),
                **updates,
            }
            save_scores(
                directory / SCORES_FILE,
                [
                    _scores(
                        f"{config.model_name}@{tag}",
                        seed,
                        test,
                        valid,
                        info.pop("config"),
                        {**info, **test.retrieval_statistics()},
                    )
                ],
            )

        # The run directory lives inside the stage directory, whose name the identity gives: not part of it.
        train_identity = {k: v for k, v in to_dict(template, identity=True).items() if k != "out"}
        identity = stage_identity(
            "trained-policy",
            ds,
            train=train_identity,
            prompt=_prompt_config(),
            warm_start_model=template.env.warm.baseline(seed),
            **self._eval_identity(pairs),
        )
        return Stage(f"{method}-{warm}@{tag}-seed{seed}", identity, run)

    def align_stage(self, ds: CoralDataset, seed: int) -> Stage:
        align_config = self.alignment_config(seed)

        def run(directory: Path) -> None:
            from coral.align.run import run_alignment

            run_alignment(ds, align_config, directory / "aligned", validate=False)

        identity = stage_identity("align", ds, **_alignment_parts(align_config))
        return Stage(f"align-seed{seed}", identity, run)

    def like_share_stage(self, ds: CoralDataset, pairs: SharedPairs, warm_start: str, seed: int) -> Stage:
        """The kNN like-share rows (no LLM): on the shared pairs, the share of liked pieces among the
        r = 0..K nearest observed interactions in the seed's warm start (greedy's evidence), plain
        (``knn-share-WARM``) and distance-weighted (``knn-share-dist-WARM``)."""
        env = self.env_config(ds, self.config.scorer.scorer, warm_start, seed)
        rounds = env.rounds

        def run(directory: Path) -> None:
            from coral.retrieval import EvidenceIndex, resolve_embeddings, tables_fingerprint
            from coral.retrieval.like_share import like_share_scores

            tables = resolve_embeddings(ds, env.warm, seed=seed)
            index = EvidenceIndex(ds, tables)
            config = {
                "policy": "greedy",
                "reader": "like-share",
                "rounds": rounds,
                "warm_start": warm_start,
                "warm_start_fingerprint": tables_fingerprint(tables),
            }
            methods = []
            for name, weighted in ((f"knn-share-{warm_start}", False), (f"knn-share-dist-{warm_start}", True)):
                splits = []
                for split, rows in (("test", pairs.test), ("valid", pairs.valid)):
                    part = ds.split(split)
                    splits.append(
                        SplitScores(
                            rows,
                            part.label[rows],
                            like_share_scores(index, part.user[rows], part.item[rows], rounds, weighted),
                        )
                    )
                methods.append(MethodScores(name, seed, *splits, info={"config": dict(config, weighted=weighted)}))
            save_scores(directory / SCORES_FILE, methods)

        identity = stage_identity(
            "like-share",
            ds,
            seed=seed,
            rounds=rounds,
            warm=env.warm,
            warm_start_model=env.warm.baseline(seed),
            pairs=pairs.fingerprint,
        )
        return Stage(f"knn-share-{warm_start}-seed{seed}", identity, run)

    def controls_stage(self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, seed: int) -> Stage:
        """Does the scorer read evidence? The controls of :mod:`coral.align.controls` on the shared
        test pairs: ``controls.json`` (AUC and paired Δ vs no evidence) and ``controls.npz`` (P per pair)."""
        warm = dataclasses.replace(self.config.train.env.warm, warm_start=self.config.warm_starts[0])
        rounds = self.config.train.env.rounds
        n_boot = self.config.n_boot or 1000  # the table's intervals are its point

        def run(directory: Path) -> None:
            from coral.align.controls import evidence_controls
            from coral.align.topk import evidence_index
            from coral.io import atomic_write_json, atomic_write_npz
            from coral.llm.prompt import scorer_prompt_builder
            from coral.retrieval import resolve_embeddings

            scorer = self.scorer(spec)
            index = evidence_index(ds, resolve_embeddings(ds, warm, seed=seed))  # fitted on head + its fold
            builder = scorer_prompt_builder(ds, scorer)  # as the environment builds it
            figures = evidence_controls(
                scorer, ds, builder, "test", pairs.test, index, k=rounds, seed=seed, n_boot=n_boot, progress=False
            )
            report = {
                "scorer": tag,
                "seed": seed,
                "n": figures["n"],
                "n_negative": figures["n_negative"],
                "controls": {name: {k: float(v) for k, v in row.items()} for name, row in figures["controls"].items()},
                "nearest_by_pieces": [float(a) for a in figures["nearest_by_pieces"]],
                "mean_pieces": figures["mean_pieces"],
            }
            atomic_write_npz(
                directory / CONTROLS_SCORES,
                rows=pairs.test,
                labels=figures["labels"],
                **{f"p_{k}": v for k, v in figures["p"].items()},
            )
            atomic_write_json(directory / CONTROLS_FILE, report)

        identity = stage_identity(
            "controls",
            ds,
            seed=seed,
            rounds=rounds,
            n_boot=n_boot,
            prompt=_prompt_config(),
            warm_start_model=warm.baseline(seed),
            warm=warm,
            scorer=self.scorer_config(spec),
            pairs=pairs.fingerprint,
        )
        return Stage(f"controls@{tag}-seed{seed}", identity, run)

    def label_aware_stage(self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, seed: int) -> Stage:
        """The label-aware reference (:mod:`coral.policies.label_aware`: it reads the targets'
        labels; evaluation only, never a method, in no claim) with the methods' scorer in the first
        warm start, on ``label_aware_pairs`` of the shared test pairs (:func:`reference_rows`), K
        rounds; its row ``reference-label-aware-WARM@SCORER`` feeds only the headroom section."""
        from coral.envs import EnvResources

        warm = self.config.warm_starts[0]
        env = self.env_config(ds, spec, warm, seed)
        rows = reference_rows(ds, pairs, self.config.label_aware_pairs)
        nearest, random = self.config.label_aware_nearest, self.config.label_aware_random
        model = f"reference-label-aware-{warm}@{tag}"

        def run(directory: Path) -> None:
            from coral.policies.evaluate import evaluate_policy, write_records
            from coral.policies.label_aware import LabelAwarePolicy, require_reference_name

            require_reference_name(model)
            policy = LabelAwarePolicy(nearest, random, seed=seed)
            scorer = self.scorer(spec)
            test = evaluate_policy(
                policy,
                env,
                EnvResources(dataset=ds, scorer=scorer),
                split="test",
                batch_size=self.config.train.n_envs,
                episodes=rows,
            )
            write_records(directory / "eval_test.jsonl", [test])
            config = {
                "policy": "label-aware",
                "evaluation_only": True,
                "candidates": f"the {nearest} nearest and {random} random",
                "n_nearest": nearest,
                "n_random": random,
                "scorer": tag,
                "scorer_fingerprint": scorer.fingerprint,
                "rounds": test.rounds,
                "warm_start_fingerprint": test.warm_start_fingerprint,
            }
            info = {
                "config": config,
                "eval_seconds": round(test.seconds, 3),
                "prompts_scored": test.prompts_scored + policy.prompts_scored,
                "candidate_prompts": policy.prompts_scored,
                **test.retrieval_statistics(),
            }
            no_pairs = SplitScores(
                np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((test.rounds + 1, 0))
            )
            save_scores(
                directory / SCORES_FILE,
                [MethodScores(model, seed, SplitScores(test.rows, test.labels, test.p), no_pairs, info)],
            )

        identity = stage_identity(
            "label-aware",
            ds,
            seed=seed,
            env=env,
            prompt=_prompt_config(),
            warm_start_model=env.warm.baseline(env.embedding_seed),
            pairs=pairs.fingerprint,
            label_aware_pairs=self.config.label_aware_pairs,
            n_nearest=nearest,
            n_random=random,
            batch_size=self.config.train.n_envs,
        )
        return Stage(f"{model}-seed{seed}", identity, run)

    def twin_stage(self, ds: CoralDataset, pairs: SharedPairs, aligned: Path, seed: int) -> Stage | None:
        """The input twins of the aligned scorer of run seed ``seed`` (no LLM): logistic regressions
        on the numbers its prompts give it (:mod:`coral.align.twins`), fitted on the very targets the
        alignment trained on (its ``targets.npz``), with the warm-start tables its soft tokens and
        evidence read, scored on the shared test and validation pairs; rows :func:`twin_model`
        (``twin-rates``, ``twin-cf-dfm``, ``twin-rates+cf-dfm``, ``twin-rates+cf+share-dfm``).
        None when its prompt holds no such numbers (no base rates, no soft tokens).

        :param aligned: the alignment directory the align stage wrote.
        """
        align_config = self.alignment_config(seed)
        input_sets = twin_input_sets(align_config.prompt)
        if not input_sets:
            return None
        rounds = self.config.train.env.rounds
        warm = align_config.warm.warm_start

        def run(directory: Path) -> None:
            from coral.align.topk import evidence_index
            from coral.align.twins import alignment_targets, score_twins, twin_name
            from coral.retrieval import resolve_embeddings, tables_fingerprint

            tables = resolve_embeddings(
                ds, align_config.warm, seed=align_config.seed
            )  # the alignment's: fitted on head + its fold
            index = evidence_index(ds, tables)
            targets = alignment_targets(ds, aligned)
            shared = {
                split: (ds.split(split).user[rows], ds.split(split).item[rows])
                for split, rows in (("test", pairs.test), ("valid", pairs.valid))
            }
            # C chosen by cross-validation on the targets themselves: never on a validation or test pair.
            scored = score_twins(ds, index, targets, shared, input_sets, k=rounds, c=None)
            methods = []
            for inputs in input_sets:
                p = scored[twin_name(inputs, rounds)]
                splits = [
                    SplitScores(rows, ds.split(split).label[rows], p[split])
                    for split, rows in (("test", pairs.test), ("valid", pairs.valid))
                ]
                config = {
                    "reader": "logistic regression",
                    "inputs": list(inputs),
                    "k": rounds,
                    "c": p["c"],
                    "c_chosen_by": "5-fold cross-validated AUC on the targets",
                    "fitted_on": "alignment targets",
                    "n_fit": len(targets),
                    "warm_start": warm,
                    "warm_start_fingerprint": tables_fingerprint(tables),
                }
                methods.append(MethodScores(twin_model(inputs, warm), seed, *splits, info={"config": config}))
            save_scores(directory / SCORES_FILE, methods)

        identity = stage_identity(
            "input-twins",
            ds,
            **_alignment_parts(align_config),
            inputs=[list(i) for i in input_sets],
            rounds=rounds,
            c_grid=list(C_GRID),
            pairs=pairs.fingerprint,
        )
        return Stage(f"twins-seed{seed}", identity, run)

    # ---- the whole job ------------------------------------------------------------------------
    def llm_stages(
        self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, methods: Sequence[str], seed: int
    ) -> list[Stage]:
        """The LLM methods' stages for one scorer and seed; llm-only and coral-random share one stage."""
        unknown = [m for m in methods if m not in FIXED and m not in TRAINED]
        if unknown:
            raise CoralError(f"unknown method(s) {', '.join(unknown)}; expected {', '.join(FIXED + tuple(TRAINED))}")
        stages = []
        if "coral-random" in methods:  # its round 0 is the llm-only row
            stages.append(self.fixed_policy_stage(ds, pairs, spec, tag, "coral-random", seed))
        elif "llm-only" in methods:
            stages.append(self.fixed_policy_stage(ds, pairs, spec, tag, "llm-only", seed))
        if "coral-greedy" in methods:
            stages.append(self.fixed_policy_stage(ds, pairs, spec, tag, "coral-greedy", seed))
        for method in (m for m in methods if m in TRAINED):
            stages.extend(
                self.trained_policy_stage(ds, pairs, spec, tag, method, warm, seed) for warm in self.config.warm_starts
            )
        return stages

    def run(self) -> RunOutputs:
        started = time.perf_counter()
        self.checked_scorer()
        names = self.config.dataset_names
        reports: list[tuple[str, Path, str, list[dict], str]] = []
        for name in names:
            root = self.out / name if len(names) > 1 else self.out
            try:
                result = self.run_dataset(name, root)
            except DataError as err:
                if not self.config.skip_missing:
                    raise
                warnings.warn(f"skipping dataset {name}: {err}", stacklevel=1)
                continue
            reports.append((name, root, *result))
        if not reports:
            raise CoralError("no dataset could be run (all missing?)")
        rows = [r for *_, dataset_rows, _ in reports for r in dataset_rows]
        results = self.out / "results.csv"
        if len(reports) == 1:
            text, summary = reports[0][2], reports[0][4]
        else:  # the overview; each dataset's own results.md has the intervals, differences and claims
            text = summary = markdown_table(rows)
            for _, root, dataset_text, _, _ in reports:
                write_text(dataset_text, root / "results.md")
        write_text(text, self.out / "results.md")
        # The run's results.csv is rebuilt from the stages' scores, so it always matches them.
        if results.exists():
            results.unlink()
        append_rows(results, rows, replace_keys=("dataset", "model", "seed", "split", "round"))
        self.log(f"finished in {(time.perf_counter() - started) / 60:.1f} min; results in {results}")
        plots = [root / name for _, root, *_ in reports for name in ("auc_by_round.png", "training_curves.png")]
        return RunOutputs(self.out, results, self.out / "results.md", text, summary, plots)

    def run_dataset(self, name: str, root: Path) -> tuple[str, list[dict], str]:
        """Every seed's stages on dataset ``name``, then its report (results.md text, result rows,
        the console summary); its claims also go to ``claims.json``."""
        scores: list[MethodScores] = []
        # The label-aware stages run after every seed's methods: the main table does not wait for them.
        reference_stages: list[Stage] = []
        pairs_by_seed: dict[int, SharedPairs] = {}
        curves: dict[str, dict[int, Path]] = {}
        controls: list[dict[str, Any]] = []
        dataset_name = name
        given = self.config.scorer.scorer  # the scorer of the zero-shot stages (align on) or of the methods (align off)
        given_tag = scorer_row_tag(given)
        for seed in self.config.seeds:
            ds = self.dataset(name, seed if self.config.vary_split else 0)
            dataset_name = ds.name
            if self.config.side_feature_baselines and self.config.baselines and not ds.item_features:
                raise CoralError(
                    f"side_feature_baselines: dataset {ds.name!r} has no item side features; turn it off for this "
                    "dataset"
                )
            ds.require_both_classes("train", "valid", "test")
            pairs = pairs_by_seed[seed] = self.pairs(ds, root, seed)
            self.log(
                f"== {ds.name} seed {seed}: {ds.n_users} users, {ds.n_items} items, test {len(ds.test)} interactions, "
                f"{len(pairs.test)} shared test pairs, {len(pairs.valid)} validation pairs"
            )
            stages = [self.baselines_stage(ds, seed)] if self.config.baselines else []
            if self.config.baselines and self.config.side_feature_baselines:
                stages.append(self.baselines_stage(ds, seed, side_features=True))
            if self.config.count_references:
                stages.append(self.like_share_stage(ds, pairs, self.config.warm_starts[0], seed))
            zero_shot = self.config.zero_shot_methods if self.config.align else self.config.methods
            stages += self.llm_stages(ds, pairs, given, given_tag, zero_shot, seed)
            for stage in stages:
                scores += self._run(stage, root, curves)
            if not self.config.align and self.config.controls:  # the methods' scorer is the given one
                controls.append(self._controls(ds, pairs, given, given_tag, seed, root))
            if not self.config.align and self.config.label_aware_pairs:
                reference_stages.append(self.label_aware_stage(ds, pairs, given, given_tag, seed))
            if self.config.align:
                directory, _ = run_stage(self.align_stage(ds, seed), root, self.log)
                aligned = directory / "aligned"
                tag = scorer_name(read_meta(aligned))
                twins = self.twin_stage(ds, pairs, aligned, seed) if self.config.input_twins else None
                if twins is not None:
                    scores += self._run(twins, root, curves)
                for stage in self.llm_stages(ds, pairs, f"aligned:{aligned}", tag, self.config.methods, seed):
                    scores += self._run(stage, root, curves)
                if self.config.controls:
                    controls.append(self._controls(ds, pairs, f"aligned:{aligned}", tag, seed, root))
                if self.config.label_aware_pairs:
                    reference_stages.append(self.label_aware_stage(ds, pairs, f"aligned:{aligned}", tag, seed))
        references = [
            m for stage in reference_stages for m in load_scores(run_stage(stage, root, self.log)[0] / SCORES_FILE)
        ]
        run = RunScores(scores, pairs_by_seed, n_boot=self.config.n_boot)
        plot_round_bands(
            run, root / "auc_by_round.png", title=f"{dataset_name}: AUC after each retrieval round (95% bands)"
        )
        from coral.policies.curves import plot_training_curves

        plot_training_curves(
            {display_name(m): [d for _, d in sorted(runs.items())] for m, runs in curves.items()},
            root / "training_curves.png",
            title=f"{dataset_name}: retrieval policy training (mean over seeds, band: min to max)",
        )
        preamble = f"`coral run` on {dataset_name}; config and library versions in every row of results.csv."
        claims = paper_claims(run)
        atomic_write_json(root / CLAIMS_FILE, claims_records(claims[0]))
        room = headroom(run, references)
        if references:
            atomic_write_json(root / HEADROOM_FILE, room)
        text = (
            dataset_report(run, dataset_name, claims, preamble)
            + training_section(curves, display_name)
            + headroom_section(room, display_name)
            + controls_section(controls, self.config.n_boot or 1000)
        )
        return text, score_rows(run, dataset_name), console_summary(run, dataset_name, claims)

    def _controls(
        self, ds: CoralDataset, pairs: SharedPairs, spec: str, tag: str, seed: int, root: Path
    ) -> dict[str, Any]:
        directory, _ = run_stage(self.controls_stage(ds, pairs, spec, tag, seed), root, self.log)
        return read_controls(directory)

    def _run(self, stage: Stage, root: Path, curves: dict[str, dict[int, Path]]) -> list[MethodScores]:
        """Run (or skip) ``stage``; a trained policy's run directory goes into ``curves`` (model -> seed ->
        directory)."""
        directory, _ = run_stage(stage, root, self.log)
        scores = load_scores(directory / SCORES_FILE)
        if (directory / "run" / "logs").is_dir():
            for m in scores:
                curves.setdefault(m.model, {})[m.seed] = directory / "run"
        return scores


def _scores(
    model: str, seed: int, test, valid, config: dict, info: dict, last_round: int | None = None
) -> MethodScores:
    """MethodScores of an evaluation (:class:`coral.policies.evaluate.EvaluationResult`) on test and valid."""
    stop = None if last_round is None else last_round + 1
    splits = [SplitScores(res.rows, res.labels, res.p[:stop]) for res in (test, valid)]
    return MethodScores(
        model, seed, *splits, info={"config": config, "eval_seconds": round(test.seconds + valid.seconds, 3), **info}
    )


__all__ = ["MainJob", "RunConfig", "RunOutputs"]
