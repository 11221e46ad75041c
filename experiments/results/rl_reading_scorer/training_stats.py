"""Per trained run of a policy_tuning.py output: median approx_kl, sampled return first -> last, and the
deterministic validation return first -> last beside greedy's (from each run's progress.csv and validation.csv).

python experiments/results/rl_reading_scorer/training_stats.py OUT
"""
import csv
import sys
from pathlib import Path

import numpy as np

for run in sorted(Path(sys.argv[1], "runs").iterdir()):
    rows = [r for f in sorted(run.glob("logs/*/progress.csv")) for r in csv.DictReader(open(f))]
    kl = [float(r["train/approx_kl"]) for r in rows if r.get("train/approx_kl")]
    sampled = [float(r["rollout/ep_rew_mean"]) for r in rows if r.get("rollout/ep_rew_mean")]
    val = list(csv.DictReader(open(run / "validation.csv")))
    first, last, greedy = float(val[0]["val_return"]), float(val[-1]["val_return"]), float(val[-1]["greedy_return"])
    print(
        f"{run.name}: median approx_kl {np.median(kl):.4f} over {len(kl)} updates; sampled return "
        f"{sampled[0]:+.4f} -> {sampled[-1]:+.4f}; validation return {first:+.4f} -> {last:+.4f} "
        f"({'rose' if last > first else 'did not rise'}), greedy {greedy:+.4f}, last - greedy {last - greedy:+.4f}"
    )
