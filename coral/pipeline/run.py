"""``coral run``: every method on every dataset, as config-keyed stages that a re-run skips.

Stages of one dataset, in order:

1. ``baselines``: the CTR baselines x seeds (``coral.baselines.run_baselines``, resumable per
   (model, seed));
2. ``coral-random@SCORER-seedS``: one evaluation of random retrieval on test and validation; its
   round 0 (no evidence) is the LLM alone (``llm-only``) and its rounds 0..K are CoRAL-random
   (``llm-only@SCORER-seedS`` scores round 0 alone when random retrieval is not asked for);
3. ``align``: the aligned scorer (``coral align``), when ``align`` is on;
4. ``coral-ALGO-WARM@SCORER-seedS``: a trained policy (``policies.train``) evaluated on test,
   with a validation subset for the F1 threshold;
5. the report: ``results.csv``, ``results.md`` (the paper's layout), ``auc_by_round.png``,
   ``training_curves.png``.

With ``align`` on, ``methods`` run with the aligned scorer (the zero-shot model ignores the
evidence, see experiments/notes/align.md) and ``zero_shot_methods`` with the zero-shot one;
with it off, ``methods`` run with the zero-shot scorer.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from coral.config import to_dict
from coral.data.dataset import CoralDataset, DataConfig
from coral.envs import EnvConfig
from coral.errors import CoralError, DataError
from coral.llm import ScorerConfig
from coral.pipeline.config import RunConfig
from coral.pipeline.report import plot_rounds, plot_training_curves, write_table
from coral.pipeline.stages import Stage, run_stage
from coral.results import append_rows, library_versions, read_rows

ROWS_FILE = "rows.csv"
#: Algorithm of each trained-policy method name.
TRAINED = {"coral-ppo": "ppo", "coral-ddpg": "ddpg", "coral-maskable_ppo": "maskable_ppo"}
FIXED = ("llm-only", "coral-random", "coral-greedy")


@dataclass
class RunOutputs:
    """Where a run's outputs are."""

    root: Path
    results: Path
    table: Path
    table_text: str
    plots: list[Path]


def stage_identity(kind: str, dataset: CoralDataset, **parts: Any) -> dict[str, Any]:
    """What a stage's outputs depend on: its kind, the full resolved config of everything it runs
    (dataclasses as :func:`coral.config.to_dict`, defaults included), the dataset's fingerprint
    and the library versions. Its hash names the stage's directory, so that no change of any of
    these can reuse a stale result."""
    return {
        "stage": kind,
        "dataset_fingerprint": dataset.fingerprint,
        "versions": library_versions(),
        **{k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in parts.items()},
    }


def _prompt_config():
    """The prompt settings of the environment (``coral.llm.prompt.PromptConfig`` defaults)."""
    from coral.llm.prompt import PromptConfig

    return PromptConfig()


class MainJob:
    """Builds and runs the stages of one ``coral run``."""

    def __init__(self, config: RunConfig, out: Path, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = out
        self.log = log
        #: The data section each loaded dataset came from, by fingerprint.
        self._data: dict[str, DataConfig] = {}

    # ---- shared resources ---------------------------------------------------------------------
    def scorer_config(self, spec: str) -> ScorerConfig:
        """The scorer section of a stage: the run's, with the stage's spec (zero-shot or aligned)."""
        return dataclasses.replace(self.config.scorer, scorer=spec)

    def scorer(self, spec: str):
        """One scorer per spec for the whole process (the model loads once)."""
        from coral.envs.resources import resolve_scorer

        return resolve_scorer(self.scorer_config(spec))

    def dataset(self, name: str) -> CoralDataset:
        """The dataset ``name`` (a name or path) with the run's data settings."""
        from coral.data import load_dataset

        data = dataclasses.replace(self.config.data, dataset=name)
        ds = load_dataset(data)
        self._data[ds.fingerprint] = data
        return ds

    def env_config(self, ds: CoralDataset, spec: str, warm_start: str) -> EnvConfig:
        """The environment of the LLM stages on ``ds``: the run's training environment with this
        dataset, scorer and warm start."""
        env = self.config.train.env
        return dataclasses.replace(env, data=self._data[ds.fingerprint], scorer=self.scorer_config(spec), warm=dataclasses.replace(env.warm, warm_start=warm_start))

    def _limits(self) -> dict[str, Any]:
        return {"limit": self.config.max_eval or None, "valid_limit": self.config.valid_limit or None, "batch_size": self.config.train.n_envs, "n_boot": self.config.n_boot}

    # ---- stages -------------------------------------------------------------------------------
    def baselines_stage(self, ds: CoralDataset) -> Stage:
        from coral.baselines.runner import run_baselines

        template = self.config.baseline

        def run(directory: Path) -> None:
            rows = run_baselines(ds, self.config.baselines, self.config.seeds, directory, template=template, n_boot=self.config.n_boot)
            append_rows(directory / ROWS_FILE, rows)

        identity = stage_identity("baselines", ds, baseline=template, models=list(self.config.baselines), seeds=list(self.config.seeds), n_boot=self.config.n_boot)
        return Stage("baselines", identity, run)

    def fixed_policy_stage(self, ds: CoralDataset, spec: str, tag: str, policy_name: str, seed: int) -> Stage:
        """Random (or greedy) retrieval on test and validation, K rounds; round 0 is the LLM alone.

        ``llm-only`` alone runs 0 rounds: only the prompts without evidence are scored.
        """
        from coral.envs import EnvResources

        rounds = 0 if policy_name == "llm-only" else self.config.train.env.rounds
        # Random retrieval ignores the embeddings ("none": random tables); greedy uses the default warm start.
        warm = "dfm" if policy_name == "coral-greedy" else "none"
        env = self.env_config(ds, spec, warm)
        limits = self._limits()

        def run(directory: Path) -> None:
            from coral.policies.evaluate import evaluate_policy, result_rows, write_records
            from coral.policies.greedy import GreedyPolicy
            from coral.policies.random_policy import RandomPolicy

            policy = GreedyPolicy() if policy_name == "coral-greedy" else RandomPolicy(seed=seed)
            scorer = self.scorer(spec)
            resources = EnvResources(dataset=ds, scorer=scorer)
            batch = limits["batch_size"]
            test = evaluate_policy(policy, env, resources, split="test", rounds=rounds, batch_size=batch, limit=limits["limit"])
            valid = evaluate_policy(policy, env, resources, split="valid", rounds=rounds, batch_size=batch, limit=limits["valid_limit"])
            write_records(directory / "eval_test.jsonl", [test])
            identity = {"policy": policy_name, "scorer": spec, "scorer_fingerprint": scorer.fingerprint, "rounds": rounds, "limit": limits["limit"], "valid_limit": limits["valid_limit"]}
            suffix = f"@{tag}" if tag else ""
            rows = result_rows(test, valid, dataset=ds.name, model=policy_name + suffix, seed=seed, config=identity, n_boot=limits["n_boot"])
            llm_only = [dict(r, model="llm-only" + suffix, round="") for r in rows if int(r["round"]) == 0]
            if policy_name == "llm-only":
                rows = []
            elif policy_name != "coral-random":
                llm_only = []
            append_rows(directory / ROWS_FILE, rows + llm_only, replace_keys=("dataset", "model", "seed", "split", "round"))

        identity = stage_identity(
            "fixed-policy", ds, policy=policy_name, seed=seed, rounds=rounds, env=env, prompt=_prompt_config(),
            warm_start_model=env.warm.baseline(env.embedding_seed), **limits,
        )
        return Stage(f"{policy_name}@{tag or 'zeroshot'}-seed{seed}", identity, run)

    def trained_policy_stage(self, ds: CoralDataset, spec: str, tag: str, method: str, warm: str, seed: int) -> Stage:
        from coral.envs import EnvResources

        algo = TRAINED[method]
        timesteps = self.config.ddpg_timesteps if algo == "ddpg" else self.config.ppo_timesteps
        template = dataclasses.replace(self.config.train, env=self.env_config(ds, spec, warm), algo=algo, timesteps=timesteps, seed=seed)
        limits = self._limits()

        def run(directory: Path) -> None:
            from coral.policies.evaluate import evaluate_run
            from coral.policies.train import train

            run_dir = directory / "run"
            train_config = dataclasses.replace(template, out=str(run_dir))
            resources = EnvResources(dataset=ds, scorer=self.scorer(spec))
            if not (run_dir / "model.zip").exists():
                resume = self.config.resume_training and (run_dir / "checkpoints" / "latest.json").exists()
                if not resume and run_dir.exists():
                    shutil.rmtree(run_dir)  # a killed training restarts, so results equal an uninterrupted run's
                train(train_config, resources, resume=resume)
            rows = evaluate_run(run_dir, "test", results=directory / "eval.csv", batch_size=limits["batch_size"], limit=limits["limit"], valid_limit=limits["valid_limit"], n_boot=limits["n_boot"], resources=resources)
            suffix = f"@{tag}" if tag else ""
            append_rows(directory / ROWS_FILE, [dict(r, model=r["model"] + suffix) for r in rows], replace_keys=("dataset", "model", "seed", "split", "round"))

        # The run directory lives inside the stage directory, whose name the identity gives: not part of it.
        train_identity = {k: v for k, v in to_dict(template).items() if k != "out"}
        identity = stage_identity(
            "trained-policy", ds, train=train_identity, prompt=_prompt_config(),
            warm_start_model=template.env.warm.baseline(seed), **limits,
        )
        return Stage(f"{method}-{warm}@{tag or 'zeroshot'}-seed{seed}", identity, run)

    def align_stage(self, ds: CoralDataset) -> Stage:
        from coral.llm.prompt import PromptConfig

        align_config = self.config.alignment

        def run(directory: Path) -> None:
            from coral.align.run import run_alignment

            run_alignment(ds, align_config, directory / "aligned", validate=False)

        identity = stage_identity(
            "align", ds, alignment=align_config, prompt=PromptConfig(chat_template=align_config.chat_template),
            warm_start_model=align_config.warm.baseline(0),
        )
        return Stage("align", identity, run)

    # ---- the whole job ------------------------------------------------------------------------
    def llm_stages(self, ds: CoralDataset, spec: str, tag: str, methods: list[str]) -> list[Stage]:
        """The LLM methods' stages for one scorer; llm-only and coral-random share one stage."""
        unknown = [m for m in methods if m not in FIXED and m not in TRAINED]
        if unknown:
            raise CoralError(f"unknown method(s) {', '.join(unknown)}; expected {', '.join(FIXED + tuple(TRAINED))}")
        stages = []
        for seed in self.config.seeds:
            if "coral-random" in methods:  # its round 0 is the llm-only row
                stages.append(self.fixed_policy_stage(ds, spec, tag, "coral-random", seed))
            elif "llm-only" in methods:
                stages.append(self.fixed_policy_stage(ds, spec, tag, "llm-only", seed))
            if "coral-greedy" in methods:
                stages.append(self.fixed_policy_stage(ds, spec, tag, "coral-greedy", seed))
            for method in (m for m in methods if m in TRAINED):
                stages.extend(self.trained_policy_stage(ds, spec, tag, method, warm, seed) for warm in self.config.warm_starts)
        return stages

    def run(self) -> RunOutputs:
        rows: list[dict] = []
        curves: dict[str, list[Path]] = {}
        started = time.perf_counter()
        names = self.config.dataset_names
        for name in names:
            try:
                ds = self.dataset(name)
            except DataError as err:
                if not self.config.skip_missing:
                    raise
                warnings.warn(f"skipping dataset {name}: {err}", stacklevel=1)
                continue
            ds.require_both_classes("train", "valid", "test")
            root = self.out / ds.name if len(names) > 1 else self.out
            self.log(f"== {ds.name}: {ds.n_users} users, {ds.n_items} items, test {len(ds.test)} interactions")
            stages = [self.baselines_stage(ds)] if self.config.baselines else []
            zero_shot = self.config.zero_shot_methods if self.config.align else self.config.methods
            stages += self.llm_stages(ds, self.config.scorer.scorer, "", zero_shot)
            for stage in stages:
                rows += self._run(stage, root, curves)
            if self.config.align:
                directory, _ = run_stage(self.align_stage(ds), root, self.log)
                aligned = f"aligned:{directory / 'aligned'}"
                for stage in self.llm_stages(ds, aligned, "aligned", self.config.methods):
                    rows += self._run(stage, root, curves)
        if not rows:
            raise CoralError("no dataset could be run (all missing?)")
        return self.report(rows, curves, time.perf_counter() - started)

    def _run(self, stage: Stage, root: Path, curves: dict[str, list[Path]]) -> list[dict]:
        directory, _ = run_stage(stage, root, self.log)
        logs = sorted((directory / "run" / "logs").glob("segment*/progress.csv"), key=lambda p: int(p.parent.name[7:]))
        if logs:
            curves[stage.name] = logs
        return read_rows(directory / ROWS_FILE)

    def report(self, rows: list[dict], curves: dict[str, list[Path]], seconds: float) -> RunOutputs:
        results = self.out / "results.csv"
        # The run's results.csv is rebuilt from the stages' rows, so it always matches them.
        if results.exists():
            results.unlink()
        append_rows(results, rows, replace_keys=("dataset", "model", "seed", "split", "round"))
        table = write_table(rows, self.out / "results.md")
        plots = [self.out / "auc_by_round.png", self.out / "training_curves.png"]
        plot_rounds(rows, plots[0])
        plot_training_curves(curves, plots[1])
        self.log(f"finished in {seconds / 60:.1f} min; results in {results}")
        return RunOutputs(self.out, results, self.out / "results.md", table, plots)


__all__ = ["MainJob", "RunConfig", "RunOutputs"]
