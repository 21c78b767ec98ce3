"""Stage ``teacher``: train layumi's ``ft_net`` (DG-Net's teacher) on ``data/splits/reid``; write ``models/teacher/``.

Reads params sections ``common`` and ``teacher``; the engine writes ``checkpoints/teacher/``, ``dvclive/teacher/`` and
``metrics/train/teacher.json``. See docs/baseline-and-teacher.md.

Usage: ``python stages/teacher.py`` from the project root (DVC runs ``${common.launcher} stages/teacher.py``).
"""

import sys

from personlab.reid_train import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("teacher"))
