"""Per trained run of a policy_tuning.py output: median approx_kl, sampled return first -> last, and the
deterministic validation return first -> last beside greedy's (coral.policies.curves, as coral run's report reads them).

python experiments/results/rl_reading_scorer/training_stats.py OUT
"""
import sys
from pathlib import Path

from coral.policies.curves import training_returns, training_summary

for run in sorted(Path(sys.argv[1], "runs").iterdir()):
    t = training_summary(run)
    _, sampled = training_returns(run)
    print(
        f"{run.name}: median approx_kl {t.median_approx_kl:.4f} over {t.updates} updates; sampled return "
        f"{sampled[0]:+.4f} -> {sampled[-1]:+.4f}; validation return {t.val_first:+.4f} -> {t.val_last:+.4f} "
        f"({'rose' if t.rose else 'did not rise'}), greedy {t.greedy_return:+.4f}, "
        f"last - greedy {t.val_last - t.greedy_return:+.4f}"
    )
