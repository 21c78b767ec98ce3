"""Stage ``voxelpose``: train VoxelPose (CPN + PRN) on synthetic heatmaps of the pose split's camera rig.

Reads params sections ``common`` and ``voxelpose`` and ``data/splits/pose``; writes ``models/voxelpose/``
(``model.pt`` + ``model.json``), and through the engine ``checkpoints/voxelpose/``, ``dvclive/voxelpose/`` and
``metrics/train/voxelpose.json``. See docs/voxelpose.md.

Usage: ``python stages/voxelpose.py`` from the project root (DVC runs ``${common.launcher} stages/voxelpose.py``).
"""

import sys
from pathlib import Path

from personlab.params import load_params
from personlab.pose.train import train_voxelpose


def main() -> int:
    """Bad input (params, a missing or malformed split, an unreadable image or checkpoint) ends with one
    ``error:`` line and exit status 1, as in the re-ID stages."""
    try:
        params = load_params()
        train_voxelpose(params["voxelpose"], params["common"], Path("data/splits/pose"), Path("models/voxelpose"))
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
