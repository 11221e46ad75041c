"""The evidence controls of several `coral run` directories in one report section, pooled over their seeds (issue 27:
top8's seeds 0, 1 and 2-4 were read by three runs).

python experiments/results/scorer_layers/pooled_controls.py RUN [RUN ...]

Every ``controls@SCORER-seedS`` stage of the runs enters, per seed as in results.md, then pooled per scorer over its
seeds (:func:`coral.pipeline.report.controls_section`; pair bootstrap within each seed, 2,000 resamples).
"""

import sys
from pathlib import Path

from coral.pipeline.report import controls_section
from coral.pipeline.run import read_controls

controls = [read_controls(stage) for run in sys.argv[1:] for stage in sorted(Path(run).glob("stages/controls@*"))]
if len({(c["scorer"], c["seed"]) for c in controls}) < len(controls):
    raise SystemExit("a scorer appears twice for one seed: give each seed's run once")
print(controls_section(sorted(controls, key=lambda c: (c["scorer"], c["seed"])), n_boot=2000))
