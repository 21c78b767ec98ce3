"""Stage ``relation``: train the Relation Network (RRID) on ``data/splits/reid``; write ``models/relation/``.

Reads params sections ``common`` and ``relation``; the engine writes ``checkpoints/relation/``,
``dvclive/relation/`` and ``metrics/train/relation.json``. See docs/relation.md.

Usage: ``python stages/relation.py`` from the project root (DVC runs ``${common.launcher} stages/relation.py``).
"""

import sys

from personlab.reid_train import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("relation"))
