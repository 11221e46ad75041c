"""The evidence controls of several `coral run` directories in one report section, pooled over their seeds (issue 27:
top8's seeds 0, 1 and 2-4 were read by three runs).

python experiments/results/scorer_layers/pooled_controls.py RUN [RUN ...]

Every ``controls@SCORER-seedS`` stage of the runs enters, per seed as in results.md, then pooled per scorer over its
seeds (:func:`coral.pipeline.report.controls_section`; pair bootstrap within each seed, 2,000 resamples).
"""

import glob
import json
import sys

import numpy as np

from coral.pipeline.report import controls_section

controls = []
for run in sys.argv[1:]:
    for stage in sorted(glob.glob(f"{run}/stages/controls@*")):
        figures = json.loads(open(f"{stage}/controls.json").read())
        with np.load(f"{stage}/controls.npz") as per_pair:
            figures["per_pair"] = {k: per_pair[k] for k in per_pair.files}
        controls.append(figures)
if len({(c["scorer"], c["seed"]) for c in controls}) < len(controls):
    raise SystemExit("a scorer appears twice for one seed: give each seed's run once")
print(controls_section(sorted(controls, key=lambda c: (c["scorer"], c["seed"])), n_boot=2000))
