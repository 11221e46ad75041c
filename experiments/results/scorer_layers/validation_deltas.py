"""Paired Δs of the layers ablation (issue 27; top8e1: top8 aligned for one epoch;
top8h: top8 stopped after the first epoch of its two-epoch schedule; top2e3, top2e4: the default's
two layers trained for 3 or 4 epochs) from the saved P(Yes) of experiments/bench/scorer_ablation.py.

python experiments/results/scorer_layers/validation_deltas.py OUT   (OUT: the bench's --out folder)
"""
import glob
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from coral.stats import format_interval, paired_auc_difference

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from scorer_ablation import carried  # noqa: E402  the bench's own rule for a missing piece

out = sys.argv[1]
ref = np.load(f"{out}/p-references.npz")
y = ref["labels"]
NAMES = ("top2", "top4", "top8", "top8e1", "top8h", "top2e3", "top2e4")


def saved(name: str) -> dict:
    """The bench's saved P(Yes) of a variant: rates_cf4_600 for the default (top2), rates_cf4_NAME_600 for the rest."""
    tag = "" if name == "top2" else f"{name}_"
    return carried(dict(np.load(glob.glob(f"{out}/v-rates_cf4_{tag}600-*.npz")[0])))


variants = {n: saved(n) for n in NAMES}
scores = {}
for n, v in variants.items():
    for label, key in (("none", "none0"), ("5 nearest", "nearest5"), ("random", "random5"), ("shuffled", "shuffled5")):
        scores[f"{n} {label}"] = v[key]
for k in ("like-share@5", "LR(base rates)", "LR(base rates + CF embeddings + like-share@5)"):
    scores[k] = ref[k]
for name, s in scores.items():
    print(f"AUC {name:<50} {100 * roc_auc_score(y, s):.2f}")


def show(a, b):
    r = paired_auc_difference(y, scores[a], scores[b])
    print(f"{a:<16} - {b}: {format_interval(r.diff, r.low, r.high)} p={r.p_value:.2g}")


for n in variants:
    for c in ("5 nearest", "random", "shuffled"):
        show(f"{n} {c}", f"{n} none")
others = [n for n in variants if n != "top2"]
for n in others:
    show(f"{n} 5 nearest", "top2 5 nearest")
    show(f"{n} none", "top2 none")
show("top8 5 nearest", "top4 5 nearest")
show("top8e1 5 nearest", "top8 5 nearest")  # one epoch against two
show("top8e1 none", "top8 none")
show("top8h 5 nearest", "top8 5 nearest")  # the first half of top8's own run against the whole of it
show("top8h none", "top8 none")
show("top2e4 5 nearest", "top2e3 5 nearest")  # the two longer doses of the default
for n in others:
    for k in ("like-share@5", "LR(base rates)", "LR(base rates + CF embeddings + like-share@5)"):
        show(f"{n} 5 nearest", k)
for n, v in variants.items():
    print(f"mean |P(5 nearest) - P(none)| {n}: {np.abs(v['nearest5'] - v['none0']).mean():.3f}")
