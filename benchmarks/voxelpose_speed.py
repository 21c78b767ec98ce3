"""VoxelPose inference per frame: cached sampling grids against the original's per-frame recomputation.

    .venv/bin/python benchmarks/voxelpose_speed.py [--repeats 3] [--people 3] [--out metrics/bench/voxelpose.json]

The Campus-sized model (published ``prn64_cpn80x80x20``: a 12 × 12 × 2 m space in 80×80×20 voxels, 2 m PRN
cubes in 64³ voxels, V2V width 32, 17 joints, 3 views of 360×288 images, 200×160 heatmaps), one frame of
``--people`` walking people seen by a Campus-like rig, timed in two modes of the *same* model and weights:

* ``cached``: the whole-space grid is computed once per rig and reused; every proposal's cube is projected
  for all proposals and views in one vectorised call; one ``grid_sample`` per volume;
* ``recompute``: as the original ``ProjectLayer`` — for every sample and view the voxel grid is rebuilt,
  projected, masked and sampled on its own, the whole-space grid included, every frame.

Reported per mode: the feature-volume construction (projection + sampling, CPN and PRN cubes: the part the
two modes differ in) and the whole forward pass (volumes + both V2V networks + NMS + soft-argmax), median
over ``--repeats`` after one warm-up. The CPN threshold is lowered so that exactly ``--people`` proposals
reach the PRN (an untrained network's scores are arbitrary). Runs on CUDA when present, else on the CPU;
outputs of the two modes are checked to agree. Writes ``metrics/bench/voxelpose.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from personlab.io import write_json
from personlab.params import PoseRig, PoseSkeleton
from personlab.pose import heatmaps as hm
from personlab.pose.synthetic import forward_kinematics, make_rig, random_angles, sample_body
from personlab.pose.volume import ViewRig
from personlab.pose.voxelpose import VoxelPose

IMAGE, INPUT, HEATMAP = (360, 288), (800, 640), (200, 160)


def _frame(people: int, seed: int) -> tuple[list, np.ndarray]:
    """A Campus-like rig and the (V, 17, H, W) heatmaps of ``people`` people drawn from their projections."""
    rng = np.random.default_rng(seed)
    cameras = make_rig(PoseRig(), IMAGE, (3000.0, 4500.0), seed)
    spots = rng.uniform([-1000, 1500], [7000, 7500], (people, 2))
    joints = np.stack([forward_kinematics(sample_body(rng, PoseSkeleton()), random_angles(rng), rng.uniform(-180, 180),
                                          spot)[:17] for spot in spots])
    affine = hm.heatmap_affine(IMAGE, INPUT, HEATMAP)
    maps = []
    for cam in cameras:
        uv = hm.transform_points(cam.project(joints), affine)
        maps.append(hm.draw_heatmaps(uv, np.ones(uv.shape[:2], bool), np.ones(uv.shape[:2]), HEATMAP, 3.0))
    return cameras, np.stack(maps)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up, and its last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench/voxelpose.json"))
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cameras, maps = _frame(args.people, args.seed)
    affine = hm.heatmap_affine(IMAGE, INPUT, HEATMAP)
    rig = ViewRig.from_cameras(cameras, [IMAGE] * len(cameras), [affine] * len(cameras), HEATMAP, device)
    heatmaps = torch.from_numpy(maps)[None].to(device)
    model = VoxelPose(num_joints=17, max_people=args.people, threshold=-float("inf")).eval().to(device)

    def space_volume() -> torch.Tensor:
        return model.space_volume(heatmaps, rig)

    def proposal_volumes() -> torch.Tensor:  # the same proposals every time: only the construction is timed
        return model.proposal_volumes(heatmaps, rig, fixed_centres, fixed_valid)[0]

    scores, fixed_centres = model.propose(model.root_volume(heatmaps, rig))
    fixed_valid = scores > model.threshold
    results: dict[str, dict[str, float]] = {}
    outputs = {}
    for mode, cached in (("cached", True), ("recompute", False)):
        model.cache_grids = cached
        rig._cache.clear()  # the cached mode pays its one-off grid computation in the warm-up call
        space_s, _ = _time(space_volume, device, args.repeats)
        proposals_s, _ = _time(proposal_volumes, device, args.repeats)
        forward_s, outputs[mode] = _time(lambda: model(heatmaps, rig), device, args.repeats)
        results[mode] = {"cpn_volume_s": space_s, "prn_volumes_s": proposals_s, "volume_s": space_s + proposals_s,
                         "forward_s": forward_s}
        print(f"{mode:9s}: CPN volume {space_s * 1000:8.1f} ms, PRN volumes {proposals_s * 1000:8.1f} ms, "
              f"whole frame {forward_s * 1000:9.1f} ms", flush=True)
    max_diff = float((outputs["cached"][..., :3] - outputs["recompute"][..., :3]).abs().max())
    assert max_diff < 1.0, f"the two modes disagree by {max_diff} mm"
    report = {
        "setup": {
            "model": "Campus prn64_cpn80x80x20: CPN 80x80x20 over 12x12x2 m, PRN 64^3 over 2 m, V2V width 32",
            "views": len(cameras), "heatmap": list(HEATMAP), "people": args.people, "repeats": args.repeats,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        },
        "cached": results["cached"],
        "recompute": results["recompute"],
        "speedup_cpn_volume": results["recompute"]["cpn_volume_s"] / results["cached"]["cpn_volume_s"],
        "speedup_prn_volumes": results["recompute"]["prn_volumes_s"] / results["cached"]["prn_volumes_s"],
        "speedup_volume": results["recompute"]["volume_s"] / results["cached"]["volume_s"],
        "speedup_forward": results["recompute"]["forward_s"] / results["cached"]["forward_s"],
        "max_joint_difference_mm": max_diff,
    }
    write_json(args.out, report)
    print(f"CPN volume {report['speedup_cpn_volume']:.1f}x, PRN volumes {report['speedup_prn_volumes']:.2f}x, all "
          f"volumes {report['speedup_volume']:.2f}x, whole frame {report['speedup_forward']:.2f}x; wrote {args.out}")


if __name__ == "__main__":
    main()
