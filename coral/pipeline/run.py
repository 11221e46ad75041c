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

import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coral.data.dataset import CoralDataset, DataConfig
from coral.errors import CoralError, DataError
from coral.pipeline.config import RunConfig
from coral.pipeline.report import plot_rounds, plot_training_curves, write_table
from coral.pipeline.stages import Stage, run_stage
from coral.results import append_rows, read_rows

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


def _timesteps(config: RunConfig, algo: str) -> int:
    return config.ddpg_timesteps if algo == "ddpg" else config.ppo_timesteps


def _limit(config: RunConfig) -> int | None:
    return config.max_eval or None


def _valid_limit(config: RunConfig) -> int | None:
    return config.valid_limit or None


class MainJob:
    """Builds and runs the stages of one ``coral run``."""

    def __init__(self, config: RunConfig, out: Path, log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = out
        self.log = log

    # ---- shared resources ---------------------------------------------------------------------
    @staticmethod
    def scorer(spec: str):
        """One scorer per spec for the whole process (the model loads once)."""
        from envs.resources import resolve_scorer

        return resolve_scorer(spec)

    def dataset(self, name: str) -> CoralDataset:
        from coral.data import load_dataset

        return load_dataset(name, DataConfig(seed=self.config.split_seed))

    # ---- stages -------------------------------------------------------------------------------
    def baselines_stage(self, ds: CoralDataset) -> Stage:
        from coral.baselines.config import BaselineConfig
        from coral.baselines.runner import run_baselines

        template = BaselineConfig(epochs=self.config.baseline_epochs)

        def run(directory: Path) -> None:
            rows = run_baselines(ds, self.config.baselines, self.config.seeds, directory, template=template)
            append_rows(directory / ROWS_FILE, rows)

        identity = {"dataset": ds.fingerprint, "models": self.config.baselines, "seeds": self.config.seeds, "epochs": self.config.baseline_epochs}
        return Stage("baselines", identity, run)

    def fixed_policy_stage(self, ds: CoralDataset, spec: str, tag: str, policy_name: str, seed: int) -> Stage:
        """Random (or greedy) retrieval on test and validation, K rounds; round 0 is the LLM alone.

        ``llm-only`` alone runs 0 rounds: only the prompts without evidence are scored.
        """
        rounds = 0 if policy_name == "llm-only" else self.config.rounds

        def run(directory: Path) -> None:
            from policies.evaluate import evaluate_policy, result_rows, write_records
            from policies.greedy import GreedyPolicy
            from policies.random_policy import RandomPolicy

            policy = GreedyPolicy() if policy_name == "coral-greedy" else RandomPolicy(seed=seed)
            scorer = self.scorer(spec)
            batch = self.config.n_envs
            test = evaluate_policy(policy, ds, scorer, "test", rounds, batch_size=batch, limit=_limit(self.config))
            valid = evaluate_policy(policy, ds, scorer, "valid", rounds, batch_size=batch, limit=_valid_limit(self.config))
            write_records(directory / "eval_test.jsonl", [test])
            identity = {"policy": policy_name, "scorer": spec, "scorer_fingerprint": scorer.fingerprint, "rounds": rounds, "limit": _limit(self.config), "valid_limit": _valid_limit(self.config)}
            suffix = f"@{tag}" if tag else ""
            rows = result_rows(test, valid, dataset=ds.name, model=policy_name + suffix, seed=seed, config=identity)
            llm_only = [dict(r, model="llm-only" + suffix, round="") for r in rows if int(r["round"]) == 0]
            if policy_name == "llm-only":
                rows = []
            elif policy_name != "coral-random":
                llm_only = []
            append_rows(directory / ROWS_FILE, rows + llm_only, replace_keys=("dataset", "model", "seed", "split", "round"))

        identity = {"dataset": ds.fingerprint, "policy": policy_name, "scorer": spec, "seed": seed, "rounds": rounds, "limit": _limit(self.config), "valid_limit": _valid_limit(self.config)}
        return Stage(f"{policy_name}@{tag or 'zeroshot'}-seed{seed}", identity, run)

    def trained_policy_stage(self, ds: CoralDataset, spec: str, tag: str, method: str, warm: str, seed: int) -> Stage:
        algo = TRAINED[method]

        def run(directory: Path) -> None:
            from policies.config import TrainConfig
            from policies.evaluate import evaluate_run
            from policies.train import Resources, train

            run_dir = directory / "run"
            train_config = TrainConfig(
                dataset=ds.name,
                algo=algo,
                warm_start=warm,
                timesteps=_timesteps(self.config, algo),
                seed=seed,
                out=str(run_dir),
                scorer=spec,
                n_envs=self.config.n_envs,
                eval_rounds=self.config.rounds,
                val_every=0,
                checkpoint_every=64,
                progress_bar=True,
            )
            if not (run_dir / "model.zip").exists():
                resume = self.config.resume_training and (run_dir / "checkpoints" / "latest.json").exists()
                if not resume and run_dir.exists():
                    shutil.rmtree(run_dir)  # a killed training restarts, so results equal an uninterrupted run's
                train(train_config, Resources(dataset=ds, scorer=self.scorer(spec)), resume=resume)
            rows = evaluate_run(run_dir, "test", results=directory / "eval.csv", batch_size=self.config.n_envs, limit=_limit(self.config), valid_limit=_valid_limit(self.config))
            suffix = f"@{tag}" if tag else ""
            append_rows(directory / ROWS_FILE, [dict(r, model=r["model"] + suffix) for r in rows], replace_keys=("dataset", "model", "seed", "split", "round"))

        identity = {
            "dataset": ds.fingerprint,
            "algo": algo,
            "warm": warm,
            "scorer": spec,
            "seed": seed,
            "timesteps": _timesteps(self.config, algo),
            "n_envs": self.config.n_envs,
            "rounds": self.config.rounds,
            "limit": _limit(self.config),
            "valid_limit": _valid_limit(self.config),
        }
        return Stage(f"{method}-{warm}@{tag or 'zeroshot'}-seed{seed}", identity, run)

    def align_stage(self, ds: CoralDataset) -> Stage:
        from coral.align.config import AlignConfig

        align_config = AlignConfig(method=self.config.align_method, n_train=self.config.align_examples)

        def run(directory: Path) -> None:
            from coral.align.run import run_alignment

            run_alignment(ds, align_config, directory / "aligned", validate=False)

        return Stage("align", {"dataset": ds.fingerprint, **align_config.to_dict()}, run)

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
        for name in self.config.datasets:
            try:
                ds = self.dataset(name)
            except DataError as err:
                if not self.config.skip_missing:
                    raise
                warnings.warn(f"skipping dataset {name}: {err}", stacklevel=1)
                continue
            root = self.out / ds.name if len(self.config.datasets) > 1 else self.out
            self.log(f"== {ds.name}: {ds.n_users} users, {ds.n_items} items, test {len(ds.test)} interactions")
            stages = [self.baselines_stage(ds)] if self.config.baselines else []
            zero_shot = self.config.zero_shot_methods if self.config.align else self.config.methods
            stages += self.llm_stages(ds, self.config.scorer, "", zero_shot)
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
