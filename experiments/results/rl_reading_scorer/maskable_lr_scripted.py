"""MaskablePPO with candidate features on the scripted environments (no LLM) at the benchmark's 2,048 steps
(8 envs x 32 steps, minibatch 64): the deterministic return on the tuning rows and the median approx_kl, per
learning rate and training seed. About 100 s on 2 cores.

python experiments/results/rl_reading_scorer/maskable_lr_scripted.py [WORK_DIR]
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripted_table import environment, learned_policy  # noqa: E402  experiments/scripted_table.py

from coral.policies.curves import training_summary  # noqa: E402
from coral.policies.evaluate import evaluate_policy, mean_return, tuning_episodes  # noqa: E402
from coral.policies.greedy import GreedyPolicy  # noqa: E402

work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
for env_name, n_rows in (("planted", 48), ("movielens", 200)):
    for seed in (0, 1, 2):
        cfg, resources = environment(env_name, seed)
        rows = tuning_episodes(resources.dataset, n_rows)

        def evaluate(policy, env, resources=resources, rows=rows):
            return evaluate_policy(policy, env, resources, split="valid", episodes=rows, batch_size=16, progress=False)

        line = [f"{env_name} seed {seed}: greedy {mean_return(evaluate(GreedyPolicy(), cfg)):+.3f}"]
        for lr in (3e-4, 1e-3, 3e-3):
            out = work / f"{env_name}-{seed}-{lr:g}"
            settings = {"algo": "maskable_ppo", "n_steps": 32, "batch_size": 64, "learning_rate": lr}
            policy, env = learned_policy(cfg, resources, settings, {"observe": "candidates"}, seed, 2048, out)
            kl = training_summary(out).median_approx_kl
            line.append(f"lr {lr:g}: return {mean_return(evaluate(policy, env)):+.3f}, approx_kl {kl:.4f}")
        print(" | ".join(line), flush=True)
