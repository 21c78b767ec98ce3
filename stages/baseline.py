"""Stage ``baseline``: train the BoT strong baseline on ``data/splits/reid``; write ``models/baseline/``.

Reads params sections ``common`` and ``baseline``; the engine writes ``checkpoints/baseline/``, ``dvclive/baseline/`` and
``metrics/train/baseline.json``. See docs/baseline-and-teacher.md.

Usage: ``python stages/baseline.py`` from the project root (DVC runs ``${common.launcher} stages/baseline.py``).
"""

import sys

from personlab.reid_train import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("baseline"))
