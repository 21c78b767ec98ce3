"""The camera model of VoxelPose (spec §1.3), its calibration JSON, and the CMU Panoptic conversion.

A camera is ``R`` (world→camera rotation), ``T`` = the camera **centre** in world mm (not OpenCV's ``t``;
``T = -Rᵀ t``), pixel focal lengths and principal point, radial ``k = [k1, k2, k3]`` and tangential
``p = [p1, p2]`` distortion. Projection is the Human3.6M form, which equals OpenCV's model with p = [p1, p2]
(a unit test checks it against ``cv2.projectPoints``). There is no behind-the-camera test here, as in the
original; callers that need one use :meth:`Camera.depth`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from personlab.io import atomic_path
from personlab.pose import PoseDataError

__all__ = [
    "Camera",
    "PANOPTIC_M",
    "camera_from_panoptic",
    "camera_to_panoptic",
    "load_calibration",
    "look_at",
    "panoptic_to_world",
    "world_to_panoptic",
    "write_calibration",
]

# Panoptic world (y down, cm) → ours (z up): points as row vectors map by p' = p · M, then ×10 to mm.
PANOPTIC_M = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True, eq=False)
class Camera:
    """One calibrated view. Arrays are float64: ``R`` (3, 3), ``T`` (3,), ``k`` (3,), ``p`` (2,)."""

    R: np.ndarray
    T: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    k: np.ndarray
    p: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        for attr, shape in (("R", (3, 3)), ("T", (3,)), ("k", (3,)), ("p", (2,))):
            value = np.asarray(getattr(self, attr), dtype=np.float64).reshape(-1)
            if value.size != int(np.prod(shape)):
                raise PoseDataError(f"camera {self.name!r}: {attr} must have {int(np.prod(shape))} numbers, "
                                    f"got {value.size}")
            object.__setattr__(self, attr, value.reshape(shape))
        for attr in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, attr, float(getattr(self, attr)))

    @property
    def K(self) -> np.ndarray:
        """The 3×3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def t(self) -> np.ndarray:
        """OpenCV's extrinsic translation ``t = -R T`` (so that x_cam = R X + t)."""
        return -self.R @ self.T

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world mm → (..., 3) camera coordinates: ``R (X - T)``."""
        return (np.asarray(points, dtype=np.float64) - self.T) @ self.R.T

    def depth(self, points: np.ndarray) -> np.ndarray:
        """(...,) depth along the optical axis; negative means behind the camera."""
        return self.world_to_camera(points)[..., 2]

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world mm → (..., 2) distorted pixel coordinates (spec §1.3, the +1e-5 depth guard kept)."""
        xc = self.world_to_camera(points)
        u = xc[..., 0] / (xc[..., 2] + 1e-5)
        v = xc[..., 1] / (xc[..., 2] + 1e-5)
        r2 = u * u + v * v
        k1, k2, k3 = self.k
        p1, p2 = self.p
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        tangential = p1 * v + p2 * u
        ud = u * (radial + 2 * tangential) + p2 * r2
        vd = v * (radial + 2 * tangential) + p1 * r2
        return np.stack([self.fx * ud + self.cx, self.fy * vd + self.cy], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """The calibration-JSON entry (VoxelPose's ``calibration_{campus,shelf}.json`` layout)."""
        return {
            "R": self.R.tolist(),
            "T": self.T.reshape(3, 1).tolist(),
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "k": self.k.reshape(3, 1).tolist(),
            "p": self.p.reshape(2, 1).tolist(),
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any], name: str = "") -> "Camera":
        missing = [key for key in ("R", "T", "fx", "fy", "cx", "cy", "k", "p") if key not in entry]
        if missing:
            raise PoseDataError(f"camera {name!r}: calibration entry lacks {', '.join(missing)}")
        return cls(R=entry["R"], T=entry["T"], fx=entry["fx"], fy=entry["fy"], cx=entry["cx"], cy=entry["cy"],
                   k=entry["k"], p=entry["p"], name=name)


def load_calibration(path: str | Path) -> list[Camera]:
    """Read a VoxelPose calibration JSON (keys "0", "1", ...) into cameras sorted by numeric id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found; run the download stage (dvc repro download)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PoseDataError(f"{path}: not valid JSON ({exc}); replace it with the dataset's calibration file") from None
    if not isinstance(data, dict) or not data:
        raise PoseDataError(f"{path}: expected a mapping from camera id to calibration; got {type(data).__name__}")
    try:
        ids = sorted(data, key=int)
    except ValueError:
        raise PoseDataError(f"{path}: camera ids must be integers as strings (\"0\", \"1\", ...); "
                            f"got {sorted(data)}") from None
    return [Camera.from_dict(data[i], name=i) for i in ids]


def write_calibration(path: str | Path, cameras: Sequence[Camera]) -> None:
    """Write cameras as a VoxelPose calibration JSON, keyed "0".."V-1" in list order, atomically."""
    text = json.dumps({str(i): cam.to_dict() for i, cam in enumerate(cameras)}, indent=1, sort_keys=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def look_at(centre: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """World→camera rotation of a camera at ``centre`` looking at ``target`` with image y pointing down.

    Rows are the camera axes in world coordinates: x right, y down, z forward; world z is up, so the
    horizon stays level (no roll).
    """
    forward = np.asarray(target, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError("look_at: the camera looks straight up or down; its roll is undefined")
    right /= norm
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def panoptic_to_world(points_cm: np.ndarray) -> np.ndarray:
    """Panoptic points (..., 3) in cm, y down → world mm, z up: ``p · M · 10``."""
    return np.asarray(points_cm, dtype=np.float64) @ PANOPTIC_M * 10.0


def world_to_panoptic(points_mm: np.ndarray) -> np.ndarray:
    """Inverse of :func:`panoptic_to_world` (M is orthogonal, so the inverse is Mᵀ)."""
    return np.asarray(points_mm, dtype=np.float64) / 10.0 @ PANOPTIC_M.T


def camera_from_panoptic(entry: dict[str, Any]) -> Camera:
    """A Panoptic calibration entry (``K``, ``distCoef`` [k1 k2 p1 p2 k3], ``R``, ``t`` in cm) → Camera in mm.

    R' = R·M rotates our world into the camera; the centre is computed from ``t`` in cm, then scaled by 10.
    """
    missing = [key for key in ("K", "distCoef", "R", "t") if key not in entry]
    if missing:
        raise PoseDataError(f"Panoptic camera {entry.get('name', '?')!r}: calibration lacks {', '.join(missing)}")
    K = np.asarray(entry["K"], dtype=np.float64)
    dist = np.asarray(entry["distCoef"], dtype=np.float64).reshape(-1)
    R = np.asarray(entry["R"], dtype=np.float64) @ PANOPTIC_M
    t = np.asarray(entry["t"], dtype=np.float64).reshape(3)
    return Camera(R=R, T=-R.T @ t * 10.0, fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2],
                  k=dist[[0, 1, 4]], p=dist[[2, 3]], name=str(entry.get("name", "")))


def camera_to_panoptic(camera: Camera, panel: int, node: int, resolution: Sequence[int]) -> dict[str, Any]:
    """Our camera → a Panoptic calibration entry (cm, y-down world), the inverse of :func:`camera_from_panoptic`."""
    R = camera.R @ PANOPTIC_M.T
    t = -camera.R @ camera.T / 10.0
    return {
        "name": f"{panel:02d}_{node:02d}",
        "type": "hd",
        "resolution": [int(resolution[0]), int(resolution[1])],
        "panel": int(panel),
        "node": int(node),
        "K": camera.K.tolist(),
        "distCoef": [camera.k[0], camera.k[1], camera.p[0], camera.p[1], camera.k[2]],
        "R": R.tolist(),
        "t": t.reshape(3, 1).tolist(),
    }
