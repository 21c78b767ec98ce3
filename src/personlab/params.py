"""Typed sections of ``params.yaml``.

Every stage reads its own section through :func:`load_section`. The whole file is validated first, so an
unknown key, a wrong type or an out-of-range value anywhere fails before any work is done, with one message
naming the key's dotted path (``baseline.optim.lr``) and what was expected.

A section is a frozen dataclass. Constraints ride on the type with ``Annotated``::

    lr: Annotated[float, Range(0, None, min_inclusive=False)] = 3.5e-4
    sampler: Literal["pk", "random"] = "pk"

Nested dataclasses become nested mappings; ``tuple[int, ...]`` and ``list[...]`` accept YAML lists; an
``int`` is accepted where a ``float`` is declared (``dvc exp run -S x=2`` writes ``2``), never the reverse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

__all__ = [
    "Erasing",
    "ParamsError",
    "Range",
    "ReidInput",
    "SECTIONS",
    "TrainLoop",
    "load_params",
    "load_section",
    "parse",
    "section_digest",
    "to_dict",
]


class ParamsError(ValueError):
    """A params file that does not match its schema; the message names the dotted key path."""


@dataclass(frozen=True)
class Range:
    """Numeric bounds for ``Annotated`` fields; ``None`` leaves a side open."""

    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def check(self, value: float, path: str) -> None:
        lo_ok = self.min is None or (value >= self.min if self.min_inclusive else value > self.min)
        hi_ok = self.max is None or (value <= self.max if self.max_inclusive else value < self.max)
        if not (lo_ok and hi_ok):
            lo = "-inf" if self.min is None else f"{self.min}"
            hi = "inf" if self.max is None else f"{self.max}"
            brackets = ("[" if self.min_inclusive else "(", "]" if self.max_inclusive else ")")
            raise ParamsError(f"{path}: {value!r} is out of range {brackets[0]}{lo}, {hi}{brackets[1]}")


Positive = Range(0, None, min_inclusive=False)
NonNegative = Range(0, None)
Probability = Range(0, 1)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def parse(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert it (lists to tuples, mappings to dataclasses)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *marks = typing.get_args(tp)
        out = parse(base, value, path)
        for mark in marks:
            if isinstance(mark, Range):
                mark.check(out, path)
        return out
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or type(value) is not type(next(c for c in choices if c == value)):
            raise ParamsError(f"{path}: {value!r} is not {_type_name(tp)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return parse(option, value, path)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(f"{path}: {value!r} is not {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ParamsError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
            return tuple(parse(a, v, f"{path}.{i}") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        return tuple(parse(item, v, f"{path}.{i}") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {parse(key_tp, k, f"{path}.{k}"): parse(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported params type {tp!r} at {path}")


def _parse_dataclass(cls: type, value: Any, path: str, base: Any = None) -> Any:
    """``base``: the instance whose values fill the keys ``value`` leaves out (the parent's default)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ParamsError(f"{path}: expected a mapping, got {value!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        known = ", ".join(sorted(fields))
        raise ParamsError(f"{where}: unknown key (known keys here: {known}); check the spelling")
    if base is None and all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING for f in fields.values()
    ):
        base = cls()
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}" if path else name
        inherited = getattr(base, name) if base is not None else None
        if name in value:
            if dataclasses.is_dataclass(inherited) and dataclasses.is_dataclass(hints[name]):
                # a partial sub-mapping keeps the defaults its parent chose, not the sub-class's own
                kwargs[name] = _parse_dataclass(hints[name], value[name], key_path, base=inherited)
            else:
                kwargs[name] = parse(hints[name], value[name], key_path)
        elif base is not None:
            kwargs[name] = inherited
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{key_path}: required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ParamsError as exc:
            raise ParamsError(f"{path}.{exc}" if path else str(exc)) from None
    return obj


def to_dict(obj: Any) -> Any:
    """A section back to plain YAML/JSON data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def section_digest(*sections: Any) -> str:
    """A short, stable digest of sections' values, recorded in checkpoints to tie them to their params."""
    blob = json.dumps([to_dict(s) for s in sections], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Sections. Each stage declares the sections it reads in dvc.yaml; keep these in step with params.yaml.
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Common:
    """Settings every stage shares."""

    seed: Annotated[int, NonNegative] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    num_threads: Annotated[int, NonNegative] = 0  # 0 = torch's default
    launcher: str = "python"  # runs the training stages: "python", or e.g. "torchrun --standalone --nproc-per-node 4"


# Shared building blocks that every training section embeds (``train: TrainLoop``, ``input: ReidInput``).
# They are read by ``personlab.engine`` and ``personlab.data.loader``; see docs/engine.md.


@dataclass(frozen=True)
class TrainLoop:
    """How ``personlab.engine`` runs a training stage (the loop, not the method)."""

    epochs: Annotated[int, Range(1, None)] = 10
    checkpoint_every: Annotated[int, Range(1, None)] = 1  # epochs between resumable checkpoints (last one always)
    amp: Literal["off", "bf16", "fp16"] = "bf16"  # CUDA only; CPU always trains in fp32
    channels_last: bool = True  # CUDA only
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch
    log_every: Annotated[int, Range(1, None)] = 10  # steps between loss read-backs (progress bar, NaN guard)
    progress: bool = True  # tqdm bar on rank 0


@dataclass(frozen=True)
class Erasing:
    """Random erasing (Zhong et al.); BoT: p 0.5, fill "mean"; layumi/DG-Net: fill "zero"."""

    p: Annotated[float, Probability] = 0.5
    area: tuple[Annotated[float, Probability], Annotated[float, Probability]] = (0.02, 0.4)  # of the image
    aspect: Annotated[float, Range(0, 1, min_inclusive=False)] = 0.3  # aspect drawn from [aspect, 1/aspect]
    attempts: Annotated[int, Range(1, None)] = 100
    fill: Literal["mean", "zero"] = "mean"  # "mean": ImageNet mean values written into the normalised tensor

    def validate(self) -> None:
        if self.area[0] > self.area[1]:
            raise ParamsError(f"area: {list(self.area)} must be [low, high] with low <= high")


@dataclass(frozen=True)
class ReidInput:
    """The re-ID input path: decoded store, sampler, on-device augmentation (``personlab.data.loader``)."""

    size: tuple[Annotated[int, Range(8, None)], Annotated[int, Range(8, None)]] = (256, 128)  # H, W
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # resize when decoding (PIL)
    # "pk": BoT identity sampler; "shuffle": plain shuffled batches (layumi/DG-Net); "anchor": RRID's groups of
    # an anchor and K-1 other images of its identity, every image an anchor once per epoch
    sampler: Literal["pk", "shuffle", "anchor"] = "pk"
    batch_size: Annotated[int, Range(1, None)] = 64  # global batch (all ranks together)
    num_instances: Annotated[int, Range(1, None)] = 4  # K images per identity (pk); P = batch_size / K
    positives: bool = False  # also return, per sample, another image of its identity (DG-Net)
    flip_p: Annotated[float, Probability] = 0.5
    pad: Annotated[int, NonNegative] = 10
    pad_mode: Literal["zero", "edge"] = "zero"  # BoT/layumi zero, DG-Net edge
    erasing: Erasing = field(default_factory=Erasing)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[Annotated[float, Positive], Annotated[float, Positive], Annotated[float, Positive]] = (
        0.229,
        0.224,
        0.225,
    )

    def validate(self) -> None:
        if self.sampler == "pk" and self.batch_size % self.num_instances:
            raise ParamsError(
                f"batch_size: {self.batch_size} is not a multiple of num_instances {self.num_instances} "
                "(the PK sampler needs P = batch_size / K identities per batch)"
            )


@dataclass(frozen=True)
class SyntheticReid:
    """The procedural pedestrian generator (see ``personlab.data.synthetic`` and docs/synthetic-data.md)."""

    num_identities: Annotated[int, Range(4, 9999)] = 120  # pids 0001..N (4 digits, as in Market-1501)
    num_train_identities: Annotated[int, Range(2, None)] = 60  # the rest are test (query + gallery) ids
    num_cameras: Annotated[int, Range(2, 9)] = 4
    images_per_camera: tuple[Annotated[int, Range(1, None)], Annotated[int, Range(1, None)]] = (2, 5)  # [min, max]
    camera_presence: Annotated[float, Probability] = 0.85  # chance an identity passes a camera (>= 2 forced)
    height: Annotated[int, Range(32, None)] = 128
    width: Annotated[int, Range(16, None)] = 64
    num_distractors: Annotated[int, NonNegative] = 40  # pid 0000 gallery images
    num_junk: Annotated[int, NonNegative] = 20  # pid -1 gallery images
    # realism: identity attribute pools (small pools give look-alikes)
    num_top_colors: Annotated[int, Range(1, 16)] = 8
    num_bottom_colors: Annotated[int, Range(1, 10)] = 6
    num_hair_colors: Annotated[int, Range(1, 6)] = 4
    num_patterns: Annotated[int, Range(1, 4)] = 4  # plain, stripes, checks, two-tone (first N)
    shade_jitter: Annotated[float, NonNegative] = 0.06  # per-identity shade of a pool colour
    bag_probability: Annotated[float, Probability] = 0.4
    backpack_probability: Annotated[float, Probability] = 0.3
    logo_probability: Annotated[float, Probability] = 0.3
    # per-camera appearance
    camera_color_cast: Annotated[float, NonNegative] = 0.12  # std of log per-channel gain
    camera_saturation: Annotated[float, NonNegative] = 0.15  # std of log saturation factor
    camera_exposure: Annotated[float, NonNegative] = 0.25  # std of log brightness gain
    camera_blur: Annotated[float, NonNegative] = 0.8  # max Gaussian radius, output pixels
    noise_std: Annotated[float, NonNegative] = 6.0  # grey levels
    view_bias: Annotated[float, Probability] = 0.6  # how strongly a camera prefers fronts/backs or sides
    # per-image geometry and clutter
    pose_variation: Annotated[float, NonNegative] = 1.0
    bbox_jitter: Annotated[float, NonNegative] = 0.08
    occlusion_probability: Annotated[float, Probability] = 0.25
    clutter: Annotated[int, NonNegative] = 6  # background objects per image
    jpeg_quality: Annotated[int, Range(50, 100)] = 90

    def validate(self) -> None:
        if self.num_train_identities >= self.num_identities:
            raise ParamsError(
                f"num_train_identities: {self.num_train_identities} leaves no test identity out of "
                f"num_identities={self.num_identities}; make it smaller"
            )
        lo, hi = self.images_per_camera
        if lo > hi:
            raise ParamsError(f"images_per_camera: [{lo}, {hi}] is [min, max]; min must not exceed max")


@dataclass(frozen=True)
class ReidData:
    """Where the re-ID dataset comes from."""

    source: Literal["synthetic", "market1501", "dukemtmc", "cuhk03", "msmt17"] = "synthetic"
    archive: str = ""  # local path or http(s) URL of the official archive (real sources only)
    md5: str = ""  # "" = the official archive's md5 where known
    cuhk03_images: Literal["labeled", "detected"] = "labeled"  # which CUHK03-NP split the splits stage uses
    # folder or URL prefix holding cuhk03_new_protocol_config_{labeled,detected}.mat; "" = inside the archive
    cuhk03_protocol: str = ""
    msmt17_use_val: bool = False  # add list_val.txt to training (torchreid combineall); BoT: no
    synthetic: SyntheticReid = field(default_factory=SyntheticReid)


@dataclass(frozen=True)
class PoseSkeleton:
    """Procedural bodies and poses: the synthetic test actors and the training pose database (spec §9.1)."""

    height_mean: Annotated[float, Positive] = 1700.0  # mm
    height_std: Annotated[float, NonNegative] = 90.0
    height_range: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (1450.0, 1950.0)
    proportion_noise: Annotated[float, Range(0, 0.3)] = 0.05  # per-bone relative noise per subject
    walking_fraction: Annotated[float, Probability] = 0.6  # share of walking poses in the pose database
    head_offset: float = 0.0  # mm, moves the 14-joint GT head joints up from the COCO head heuristic
    num_poses: Annotated[int, Range(1, None)] = 2000  # size of the training pose database


@dataclass(frozen=True)
class PoseRig:
    """A Campus-like camera rig around the capture area (spec §9.2)."""

    num_cameras: Annotated[int, Range(2, 16)] = 3
    focal: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (430.0, 710.0)  # px range
    distance: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (9000.0, 11000.0)  # mm from area centre
    height: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (1900.0, 2000.0)  # mm above the floor
    azimuth_jitter: Annotated[float, Range(0, 60)] = 20.0  # degrees around evenly spread azimuths
    principal_jitter: Annotated[float, NonNegative] = 5.0  # px around the image centre
    distorted_cameras: Annotated[int, NonNegative] = 1  # the first N cameras get the distortion below
    k: tuple[float, float, float] = (-0.05, 0.01, 0.0)
    p: tuple[float, float] = (0.001, -0.0005)


@dataclass(frozen=True)
class PoseSequence:
    """Walking actors of the synthetic test sequence (spec §9.3)."""

    num_frames: Annotated[int, Range(1, None)] = 200
    num_actors: Annotated[int, Range(1, None)] = 3
    fps: Annotated[float, Positive] = 25.0
    speed: Annotated[float, NonNegative] = 1200.0  # mm/s, mean walking speed
    turn_rate: Annotated[float, NonNegative] = 40.0  # degrees/s, std of the random heading change
    pause: Annotated[float, Probability] = 0.2  # chance per actor of standing still for a stretch
    absence: Annotated[float, Range(0, 0.6)] = 0.15  # share of frames each actor is absent (empty GT), one stretch
    area_center: tuple[float, float] = (0.0, 0.0)  # mm, floor (x, y) of the capture area
    area_size: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (6000.0, 6000.0)


@dataclass(frozen=True)
class DetectorNoise:
    """The 2D detector emulator behind the synthetic predictions file (spec §9.3)."""

    perfect: bool = False  # true: exact projections with score 1 (an upper-bound set)
    sigma_px: Annotated[float, NonNegative] = 5.0  # localisation std per 100 px of person height
    extremity_df: Annotated[float, NonNegative] = 3.0  # Student-t dof for wrists/ankles; 0 = Gaussian
    score_visible: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (8.0, 2.0)  # Beta(a, b)
    score_occluded: tuple[Annotated[float, Positive], Annotated[float, Positive]] = (2.0, 5.0)
    miss: Annotated[float, Probability] = 0.05  # drop a person in a view
    occlusion_iou: Annotated[float, Probability] = 0.5  # IoU with a nearer person that counts as occluded
    occluded_miss: Annotated[float, Probability] = 0.5  # drop probability of an occluded person
    swap: Annotated[float, Probability] = 0.02  # per left/right pair
    flip: Annotated[float, Probability] = 0.01  # whole-body left/right flip
    false_positive: Annotated[float, Probability] = 0.05  # per view: a ghost skeleton with low scores


@dataclass(frozen=True)
class SyntheticPose:
    rig: PoseRig = field(default_factory=PoseRig)
    sequence: PoseSequence = field(default_factory=PoseSequence)
    detector: DetectorNoise = field(default_factory=DetectorNoise)


@dataclass(frozen=True)
class PoseTrainSampler:
    """The synthetic training sampler of Campus/Shelf (spec §3.2, with the placement crash fixed)."""

    min_people: Annotated[int, Range(1, None)] = 1
    max_people: Annotated[int, Range(1, None)] = 5  # inclusive; Campus 9, Shelf 5
    neighbour: Annotated[float, Probability] = 0.3  # place next to an existing person instead of anywhere
    neighbour_offset: tuple[float, Annotated[float, NonNegative]] = (500.0, 50.0)  # mm mean, std per axis
    min_views: Annotated[int, NonNegative] = 2  # Campus 2; 0 skips the check (Shelf)
    view_margin: Annotated[float, NonNegative] = 10.0  # px
    space_margin: Annotated[float, NonNegative] = 500.0  # mm between the placement box and the space border
    placement_box: tuple[float, ...] = ()  # (x_min, x_max, y_min, y_max) mm; empty = the space minus space_margin
    max_tries: Annotated[int, Range(1, None)] = 100
    amplitude_noise: Literal["campus", "shelf", "none"] = "campus"
    person_drop: Annotated[float, Probability] = 0.0  # Shelf 0.05: a person vanishes from one view

    def validate(self) -> None:
        if self.min_people > self.max_people:
            raise ParamsError(f"min_people: {self.min_people} exceeds max_people {self.max_people}")
        box = self.placement_box
        if box and (len(box) != 4 or box[0] >= box[1] or box[2] >= box[3]):
            raise ParamsError(f"placement_box: {list(box)} must be empty or [x_min, x_max, y_min, y_max], min < max")


@dataclass(frozen=True)
class PanopticData:
    """CMU Panoptic sequences and cameras (spec §4.2)."""

    train_sequences: tuple[str, ...] = (
        "160422_ultimatum1", "160224_haggling1", "160226_haggling1", "161202_haggling1", "160906_ian1",
        "160906_ian2", "160906_ian3", "160906_band1", "160906_band2", "160906_band3",
    )
    val_sequences: tuple[str, ...] = ("160906_pizza1", "160422_haggling1", "160906_ian5", "160906_band4")
    train_interval: Annotated[int, Range(1, None)] = 3
    val_interval: Annotated[int, Range(1, None)] = 12
    cameras: tuple[tuple[int, int], ...] = ((0, 12), (0, 6), (0, 23), (0, 13), (0, 3))  # (panel, node)


@dataclass(frozen=True)
class PoseData:
    """Where the multi-view pose dataset comes from and its test protocol (see docs/pose-data.md)."""

    source: Literal["synthetic", "campus", "shelf", "panoptic"] = "synthetic"
    archive: str = ""  # campus/shelf: path or URL of the dataset archive; panoptic: the panoptic-toolbox data folder
    md5: str = ""  # of the archive; "" skips the check
    calibration: str = ""  # campus/shelf: path or URL of VoxelPose's calibration_<name>.json
    predictions: str = ""  # campus/shelf: path or URL of pred_<name>_maskrcnn_hrnet_coco.pkl
    num_cameras: Annotated[int, Range(1, None)] = 3  # the first N cameras are used
    image_size: tuple[Annotated[int, Positive], Annotated[int, Positive]] = (360, 288)  # original (w, h)
    test_frames: tuple[tuple[Annotated[int, NonNegative], Annotated[int, NonNegative]], ...] = ((20, 99), (120, 189))
    eval_actors: tuple[Annotated[int, NonNegative], ...] = (0, 1, 2)  # actors averaged into pcp_avg
    head: Literal["campus", "shelf"] = "campus"  # COCO → 14-joint head heuristic
    amplitude: Literal["one", "score"] = "one"  # test heatmap amplitude: 1 (Campus) or detector score (Shelf)
    empty_frame: Literal["miss", "skip"] = "miss"  # GT in frames without predictions: missed, or not counted
    skeleton: PoseSkeleton = field(default_factory=PoseSkeleton)
    train: PoseTrainSampler = field(default_factory=PoseTrainSampler)
    synthetic: SyntheticPose = field(default_factory=SyntheticPose)
    panoptic: PanopticData = field(default_factory=PanopticData)

    def validate(self) -> None:
        for i, (first, last) in enumerate(self.test_frames):
            if first > last:
                raise ParamsError(f"test_frames.{i}: first frame {first} is after last frame {last}")


@dataclass(frozen=True)
class Data:
    seed: Annotated[int, NonNegative] = 0
    reid: ReidData = field(default_factory=ReidData)
    pose: PoseData = field(default_factory=PoseData)


@dataclass(frozen=True)
class VoxelPoseOptim:
    """VoxelPose optimisation: Adam, at a constant rate as the original (spec §1.9) unless ``lr_steps``."""

    lr: Annotated[float, Positive] = 1e-4
    lr_steps: tuple[Annotated[int, Range(1, None)], ...] = ()  # epochs after which lr *= lr_gamma (mmpose: 10, 20)
    lr_gamma: Annotated[float, Range(0, 1, min_inclusive=False)] = 0.1
    batch_size: Annotated[int, Range(1, None)] = 1  # synthetic samples per step (global)
    samples_per_epoch: Annotated[int, Range(1, None)] = 3000
    # Departure (spec trap 12): for the first N epochs the PRN trains on GT roots + jitter instead of CPN
    # proposals, so it learns while the CPN is still cold. 0 = the original (CPN proposals only).
    gt_root_epochs: Annotated[int, NonNegative] = 0
    gt_root_jitter: Annotated[float, NonNegative] = 0.0  # mm, std per axis of the jitter added to GT roots
    max_prn_cubes: Annotated[int, NonNegative] = 0  # PRN cubes per step, a random subset; 0 = all (original)
    num_workers: Annotated[int, NonNegative] = 0  # DataLoader processes generating synthetic samples


@dataclass(frozen=True)
class VoxelPoseEval:
    """Evaluation options of ``evaluate@voxelpose``."""

    batch_size: Annotated[int, Range(1, None)] = 4  # test frames per forward pass
    picture_frames: Annotated[int, Range(1, 12)] = 3  # test frames drawn in the 3D and per-view pictures
    # the triangulation baseline: largest mean reprojection error, as a fraction of the person's 2D height,
    # for two detections (and then further views) to count as one person
    baseline_max_error: Annotated[float, Positive] = 0.1


@dataclass(frozen=True)
class VoxelPoseParams:
    """VoxelPose (spec §1, §2): heatmap geometry, the capture space, CPN/PRN cubes, training and evaluation.

    Defaults are the published Campus ``prn64_cpn80x80x20`` values; ``params.yaml`` holds the CPU default.
    """

    num_joints: Annotated[int, Range(1, None)] = 17  # COCO-17 (Campus/Shelf); 15 on Panoptic
    input_size: tuple[Annotated[int, Range(8, None)], Annotated[int, Range(8, None)]] = (800, 640)  # (w, h)
    heatmap_size: tuple[Annotated[int, Range(4, None)], Annotated[int, Range(4, None)]] = (200, 160)  # (w, h)
    sigma: Annotated[float, Positive] = 3.0  # 2D Gaussian, heatmap px, scaled with person size
    space_size: tuple[Annotated[float, Positive], Annotated[float, Positive], Annotated[float, Positive]] = (
        12000.0,
        12000.0,
        2000.0,
    )
    space_center: tuple[float, float, float] = (3000.0, 4500.0, 1000.0)
    cpn_shape: tuple[Annotated[int, Range(4, None)], Annotated[int, Range(4, None)], Annotated[int, Range(4, None)]] = (
        80,
        80,
        20,
    )
    prn_size: tuple[Annotated[float, Positive], Annotated[float, Positive], Annotated[float, Positive]] = (
        2000.0,
        2000.0,
        2000.0,
    )
    prn_shape: tuple[Annotated[int, Range(4, None)], Annotated[int, Range(4, None)], Annotated[int, Range(4, None)]] = (
        64,
        64,
        64,
    )
    cpn_width: Annotated[int, Range(2, None)] = 32  # V2V channels at full resolution (original 32)
    prn_width: Annotated[int, Range(2, None)] = 32
    max_people: Annotated[int, Range(1, None)] = 10  # K proposals
    threshold: float = 0.1  # on the raw CPN output (Campus/Shelf 0.1, Panoptic 0.3)
    beta: Annotated[float, Positive] = 100.0  # soft-argmax sharpness
    root_sigma: Annotated[float, Positive] = 200.0  # mm, the CPN's 3D Gaussian target
    match_distance: Annotated[float, Positive] = 500.0  # mm, proposal ↔ GT root for PRN training
    view_aggregation: Literal["visible", "all"] = "visible"  # mean over views that see the voxel, or all
    backbone: Literal["none", "pose_resnet50"] = "none"  # none: heatmaps from 2D detections (Campus/Shelf)
    backbone_depth: Literal[18, 34, 50, 101, 152] = 50  # ResNet depth of the PoseResNet (50 published)
    # simple-baselines PoseResNet weights (pose_resnet50_panoptic.pth.tar), imported strictly; "" = random init
    backbone_pretrained: str = ""
    train_backbone: bool = False  # false: frozen, eval mode, out of Adam (the original); true: trained on loss_2d
    pretrained: str = ""  # an original VoxelPose checkpoint (.pth.tar) to start from, imported strictly
    train: TrainLoop = field(default_factory=lambda: TrainLoop(epochs=30, amp="off", channels_last=False))
    optim: VoxelPoseOptim = field(default_factory=VoxelPoseOptim)
    eval: VoxelPoseEval = field(default_factory=VoxelPoseEval)

    def validate(self) -> None:
        for name in ("cpn_shape", "prn_shape"):
            shape = getattr(self, name)
            if any(s % 4 for s in shape):
                raise ParamsError(f"{name}: {list(shape)} must be multiples of 4 (V2V-Net pools twice)")
        for name in ("cpn_width", "prn_width"):
            if getattr(self, name) % 2:
                raise ParamsError(f"{name}: {getattr(self, name)} must be even (the stem has width / 2 channels)")
        if self.train.channels_last:
            raise ParamsError("train.channels_last: must be false for VoxelPose (channels_last is a 2D layout; "
                              "its networks are 3D)")
        if self.backbone == "none" and (self.backbone_pretrained or self.train_backbone):
            raise ParamsError("backbone_pretrained / train_backbone: need backbone: pose_resnet50 (images in, "
                              "Panoptic); with backbone: none the heatmaps come from 2D detections")
        if self.backbone != "none" and (any(v % 32 for v in self.input_size)
                                        or tuple(self.heatmap_size) != tuple(v // 4 for v in self.input_size)):
            raise ParamsError(f"input_size {list(self.input_size)} / heatmap_size {list(self.heatmap_size)}: the "
                              "PoseResNet needs an input divisible by 32 and gives heatmaps of a quarter of it; "
                              "e.g. input [960, 512] with heatmaps [240, 128]")
        if self.pretrained and self.backbone_pretrained:
            raise ParamsError("pretrained and backbone_pretrained are both set: a whole VoxelPose checkpoint already "
                              "holds its backbone; keep one of them")


@dataclass(frozen=True)
class BaselineModel:
    """BoT network (``personlab.models.bot.Baseline``); see docs/baseline-and-teacher.md."""

    depth: Literal[18, 34, 50, 101, 152] = 50
    last_stride: Literal[1, 2] = 1
    stem_relu: bool = False  # BoT's ResNet lacks the stem ReLU (spec trap 1); true = standard ResNet
    neck: Literal["bnneck", "no"] = "bnneck"
    neck_feat: Literal["after", "before"] = "after"  # test embedding: post-BN (after) or pre-BN feature
    pretrained: str = "imagenet"  # none | imagenet (torchvision V1 weights) | path of a ResNet state dict


@dataclass(frozen=True)
class BaselineLoss:
    """BoT loss: ``id_weight·LS-CE(post-BN logits) + triplet_weight·triplet(pre-BN) + center_weight·center``."""

    id_weight: Annotated[float, NonNegative] = 1.0
    label_smoothing: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.1  # epsilon; 0 = plain CE
    triplet_weight: Annotated[float, NonNegative] = 1.0  # 0 = BoT's "softmax" sampler setting (ID loss only)
    triplet_margin: Annotated[float, Positive] | None = 0.3  # null = soft margin
    center_weight: Annotated[float, NonNegative] = 0.0005  # beta; 0 = no center loss
    center_lr: Annotated[float, Positive] = 0.5  # the centers' own SGD

    def validate(self) -> None:
        if self.id_weight == 0 and self.triplet_weight == 0:
            raise ParamsError("id_weight: 0 together with triplet_weight 0 leaves nothing to train")


@dataclass(frozen=True)
class BaselineOptim:
    """Adam + BoT's per-epoch ``WarmupMultiStepLR``."""

    lr: Annotated[float, Positive] = 3.5e-4
    weight_decay: Annotated[float, NonNegative] = 5e-4  # on all parameters, biases included
    warmup_factor: Annotated[float, Range(0, 1)] = 0.01
    warmup_epochs: Annotated[int, NonNegative] = 10
    milestones: tuple[Annotated[int, Range(1, None)], ...] = (40, 70)
    gamma: Annotated[float, Positive] = 0.1

    def validate(self) -> None:
        if list(self.milestones) != sorted(self.milestones):
            raise ParamsError(f"milestones: {list(self.milestones)} must be increasing")


@dataclass(frozen=True)
class BaselineParams:
    """Stage ``baseline``: the BoT strong baseline. Defaults are the published Market-1501 recipe."""

    model: BaselineModel = field(default_factory=BaselineModel)
    loss: BaselineLoss = field(default_factory=BaselineLoss)
    optim: BaselineOptim = field(default_factory=BaselineOptim)
    input: ReidInput = field(default_factory=ReidInput)
    train: TrainLoop = field(default_factory=lambda: TrainLoop(epochs=120, amp="off"))


@dataclass(frozen=True)
class TeacherModel:
    """layumi ``ft_net`` (``personlab.models.ide.FtNet``)."""

    depth: Literal[18, 34, 50, 101, 152] = 50
    stride: Literal[1, 2] = 2  # layumi --stride
    linear: Annotated[int, Range(1, None)] = 512  # ClassBlock bottleneck width = the test embedding
    droprate: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.5
    pretrained: str = "imagenet"  # none | imagenet (torchvision V1 weights) | path of a ResNet state dict


@dataclass(frozen=True)
class TeacherOptim:
    """layumi: SGD (Nesterov) with the backbone at a tenth of the head's rate, StepLR, optional loss warm-up."""

    lr: Annotated[float, Positive] = 0.05  # the new layers (add_block, classifier)
    backbone_lr_mult: Annotated[float, NonNegative] = 0.1
    momentum: Annotated[float, Range(0, 1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, NonNegative] = 5e-4
    step_size: Annotated[int, Range(1, None)] = 40  # epochs; layumi: floor(2 * epochs / 3)
    gamma: Annotated[float, Positive] = 0.1
    warm_epochs: Annotated[int, NonNegative] = 0  # layumi --warm_epoch: the LOSS ramps 0.1 -> 1 over these epochs


@dataclass(frozen=True)
class TeacherParams:
    """Stage ``teacher``: layumi's ft_net trained with cross-entropy, DG-Net's teacher."""

    model: TeacherModel = field(default_factory=TeacherModel)
    optim: TeacherOptim = field(default_factory=TeacherOptim)
    input: ReidInput = field(
        default_factory=lambda: ReidInput(
            interpolation="bicubic", sampler="shuffle", batch_size=32, erasing=Erasing(p=0.0, fill="zero")
        )
    )
    train: TrainLoop = field(default_factory=lambda: TrainLoop(epochs=60, amp="off"))


@dataclass(frozen=True)
class RelationModel:
    """RRID network (``personlab.models.relation.RelationNet``)."""

    depth: Literal[18, 34, 50, 101, 152] = 50
    last_stride: Literal[1, 2] = 1
    dim: Annotated[int, Range(1, None)] = 256  # width of every local, rest, relation and global feature
    pretrained: str = "imagenet"  # none | imagenet (torchvision V1) | path to a torchvision-layout state dict


@dataclass(frozen=True)
class RelationLoss:
    """``triplet_weight·Σ_15 triplet + ce_weight·Σ_45 CE`` (RRID: 1 and 2)."""

    triplet_margin: Annotated[float, Positive] = 1.2
    triplet_weight: Annotated[float, NonNegative] = 1.0
    ce_weight: Annotated[float, NonNegative] = 2.0


@dataclass(frozen=True)
class RelationOptim:
    """SGD (momentum 0.9, weight decay on everything), backbone and new layers at their own rates, both ×gamma
    at each milestone epoch (RRID: 1e-3 / 1e-2, ×0.1 at 40 and 60, 80 epochs)."""

    backbone_lr: Annotated[float, Positive] = 1e-3
    lr: Annotated[float, Positive] = 1e-2  # relation, pooling and classifier layers
    momentum: Annotated[float, Range(0, 1)] = 0.9
    weight_decay: Annotated[float, NonNegative] = 5e-4
    milestones: tuple[Annotated[int, Range(1, None)], ...] = (40, 60)
    gamma: Annotated[float, Positive] = 0.1


@dataclass(frozen=True)
class RelationParams:
    """Stage ``relation``: RRID. Defaults are the published Market-1501 recipe."""

    # "trainval": every training identity (the standard protocol, default); "train": RRID's default, which
    # holds out the last ``num_val`` sorted identities (651 of Market's 751 ids are trained on)
    train_set: Literal["trainval", "train"] = "trainval"
    num_val: Annotated[int, NonNegative] = 100
    model: RelationModel = field(default_factory=RelationModel)
    loss: RelationLoss = field(default_factory=RelationLoss)
    optim: RelationOptim = field(default_factory=RelationOptim)
    input: ReidInput = field(
        default_factory=lambda: ReidInput(
            size=(384, 128), interpolation="bilinear", sampler="anchor", batch_size=64, num_instances=4, pad=0,
            # RRID's eraser fires with p = 0.75 on 2-20 % of the image; it paints a random colour at a shifted
            # offset (a bug), we fill the box with the mean colour at its drawn place
            erasing=Erasing(p=0.75, area=(0.02, 0.2), fill="mean"),
        )
    )
    train: TrainLoop = field(default_factory=lambda: TrainLoop(epochs=80, amp="off"))


@dataclass(frozen=True)
class DGNetGenerator:
    """``E_s`` + decoder + AdaIN MLPs (``personlab.models.dgnet.Generator``); DG-Net ``gen.dim``/``mlp_dim``."""

    dim: Annotated[int, Range(2, None)] = 16  # E_s first width; the structure code has 8·dim channels
    mlp_dim: Annotated[int, Range(1, None)] = 512
    # ASPP dilations; each must be below the structure code's width (input width / 4) for reflection padding
    dilations: tuple[Annotated[int, Range(1, None)], Annotated[int, Range(1, None)], Annotated[int, Range(1, None)]] = (
        3,
        6,
        9,
    )


@dataclass(frozen=True)
class DGNetDiscriminator:
    """Multi-scale LSGAN discriminator (``MultiScaleDiscriminator``); DG-Net ``dis.*``."""

    dim: Annotated[int, Range(1, None)] = 32
    num_layers: Annotated[int, Range(1, None)] = 2  # n_layer
    num_res: Annotated[int, NonNegative] = 4  # n_res
    num_scales: Annotated[int, Range(1, None)] = 3
    r1_weight: Annotated[float, NonNegative] = 0.01  # LAMBDA: gradient penalty on real images, per scale


@dataclass(frozen=True)
class DGNetAppearance:
    """``E_a`` (``AppearanceEncoder``, arch ``dgnet``): ResNet + max-pooled 4-stripe code + two ClassBlocks."""

    depth: Literal[18, 34, 50, 101, 152] = 50
    stride: Literal[1, 2] = 1  # ID_stride
    bottleneck: Annotated[int, Range(1, None)] = 512  # each head's test feature
    # imagenet: torchvision V1 backbone (the original); teacher: backbone and both heads copied from the
    # teacher stage's ft_net (same depth and bottleneck needed); none: random.
    init: Literal["imagenet", "teacher", "none"] = "imagenet"
    detach_code: bool = True  # the original's f.detach(): generation losses never reach E_a (spec trap 10)


@dataclass(frozen=True)
class DGNetOptim:
    """Adam (G, D) and SGD (E_a) with per-iteration multi-step decay at step_size·[1, 1.5, 1.75]."""

    lr_g: Annotated[float, Positive] = 1e-4
    lr_d: Annotated[float, Positive] = 1e-4
    lr_id: Annotated[float, Positive] = 0.002  # lr2: E_a backbone; the two heads get head_lr_mult times it
    head_lr_mult: Annotated[float, Positive] = 10.0
    beta1: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.0
    beta2: Annotated[float, Range(0, 1, max_inclusive=False)] = 0.999
    momentum: Annotated[float, Range(0, 1)] = 0.9  # E_a SGD, Nesterov
    weight_decay: Annotated[float, NonNegative] = 5e-4  # all three optimizers
    step_size: Annotated[int, Range(1, None)] = 60000  # iterations
    gamma: Annotated[float, Positive] = 0.1  # G and D decay
    gamma2: Annotated[float, Positive] = 0.1  # E_a decay


@dataclass(frozen=True)
class DGNetParams:
    """Stage ``dgnet``. Dataclass defaults are DG-Net's ``configs/latest.yaml`` (Market-1501); the loss
    weights and warm-ups keep the original's flat names so ``dvc exp run -S dgnet.teacher_w=2`` reads as in
    the paper. A weight ``w`` with a warm-up is ``w`` until its start iteration, then grows by
    ``warm_scale`` per iteration up to its cap; it is a function of the iteration, so resume restores it."""

    gan_w: Annotated[float, NonNegative] = 1.0
    recon_x_w: Annotated[float, NonNegative] = 5.0
    recon_xp_w: Annotated[float, NonNegative] = 5.0
    recon_f_w: Annotated[float, NonNegative] = 0.0  # start; warms to max_w after warm_iter
    recon_s_w: Annotated[float, NonNegative] = 0.0  # start; warms to max_w after warm_iter
    recon_x_cyc_w: Annotated[float, NonNegative] = 0.0  # start; warms to max_cyc_w after warm_iter
    id_w: Annotated[float, NonNegative] = 1.0
    pid_w: Annotated[float, NonNegative] = 1.0
    recon_id_w: Annotated[float, NonNegative] = 0.5
    teacher_w: Annotated[float, NonNegative] = 0.0  # start (0: off until warm_teacher_iter); warms to max_teacher_w
    T_w: Annotated[float, NonNegative] = 1.0  # KL term inside the teacher loss
    B_w: Annotated[float, NonNegative] = 0.2  # fine-grained term ("alpha" in the paper)
    max_w: Annotated[float, NonNegative] = 1.0
    max_cyc_w: Annotated[float, NonNegative] = 2.0
    max_teacher_w: Annotated[float, NonNegative] = 2.0
    warm_iter: Annotated[int, NonNegative] = 30000
    warm_teacher_iter: Annotated[int, NonNegative] = 30000
    warm_scale: Annotated[float, NonNegative] = 0.0005
    use_encoder_again: Annotated[float, Probability] = 0.5  # P(re-encode structure with the live E_s)
    train_bn: bool = True  # teacher and the frozen E_a pass use batch statistics (spec trap 9)
    pictures: Annotated[int, Range(2, None)] = 6  # images per side of the swap grid
    generator: DGNetGenerator = field(default_factory=DGNetGenerator)
    discriminator: DGNetDiscriminator = field(default_factory=DGNetDiscriminator)
    appearance: DGNetAppearance = field(default_factory=DGNetAppearance)
    optim: DGNetOptim = field(default_factory=DGNetOptim)
    input: ReidInput = field(
        default_factory=lambda: ReidInput(
            interpolation="bicubic",
            sampler="shuffle",
            batch_size=8,
            positives=True,
            pad_mode="edge",
            erasing=Erasing(p=0.5, fill="zero"),
        )
    )
    # 62 passes of 1617 iterations (Market, batch 8) ≈ the original's max_iter 100000
    train: TrainLoop = field(default_factory=lambda: TrainLoop(epochs=62, amp="off", checkpoint_every=6))

    def validate(self) -> None:
        if not self.input.positives:
            raise ParamsError("input.positives: must be true (DG-Net reconstructs from a positive's appearance)")
        if self.input.sampler != "shuffle":
            raise ParamsError("input.sampler: must be shuffle (DG-Net's two loaders are plain shuffles)")
        code_size = min(self.input.size) // 4
        if max(self.generator.dilations) >= code_size:
            raise ParamsError(
                f"generator.dilations: {list(self.generator.dilations)} must stay below the structure code's "
                f"size {code_size} (input {list(self.input.size)} / 4) for reflection padding; lower them"
            )


@dataclass(frozen=True)
class EvaluateRerank:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017), reported under ``rerank`` beside the plain numbers."""

    enabled: bool = True
    k1: Annotated[int, Range(1, None)] = 20
    k2: Annotated[int, Range(1, None)] = 6
    lambda_value: Annotated[float, Probability] = 0.3  # weight of the original distance against the Jaccard one


@dataclass(frozen=True)
class EvaluateParams:
    """Stage ``evaluate``: one re-ID test protocol for every model (see docs/evaluation.md).

    Defaults are BoT's published test: no flip, squared Euclidean on L2-normalised features, step-wise AP.
    """

    batch_size: Annotated[int, Range(1, None)] = 128  # images per forward pass
    flip: bool = False  # add the embedding of the mirrored image (layumi, DG-Net, RRID test); BoT: off
    fine_weight: Annotated[float, NonNegative] = 0.5  # DG-Net alpha: weight of the embedding parts after the first
    distance: Literal["euclidean", "dot"] = "euclidean"  # squared Euclidean (BoT) or dot-product score (layumi)
    ap: Literal["stepwise", "trapezoid"] = "stepwise"  # BoT/sklearn>=0.19, or the official Market-1501 rule
    max_rank: Annotated[int, Range(10, None)] = 50  # length of the CMC curve
    rerank: EvaluateRerank = field(default_factory=EvaluateRerank)
    ranked_queries: Annotated[int, Range(1, 32)] = 4  # rows of the ranked-list picture
    ranked_top: Annotated[int, Range(1, 30)] = 10  # gallery images per row


SECTIONS: dict[str, type] = {
    "common": Common,
    "data": Data,
    "voxelpose": VoxelPoseParams,
    "baseline": BaselineParams,
    "teacher": TeacherParams,
    "relation": RelationParams,
    "dgnet": DGNetParams,
    "evaluate": EvaluateParams,
}


# ----------------------------------------------------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, so ``off``, ``on``, ``yes`` and ``no``
    stay strings. ``dvc exp run -S`` rewrites params.yaml with a YAML 1.2 writer that drops the quotes of
    ``'off'``; read as YAML 1.1 it would come back as ``False``."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root or pass its path")
    try:
        data = yaml.load(path.read_text(), Loader=_Yaml12Loader)  # safe: a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate the whole params file and return every section, typed."""
    data = _read_yaml(Path(path))
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ParamsError(
            f"{unknown[0]}: unknown section in {path} (known sections: {', '.join(sorted(SECTIONS))})"
        )
    return {name: parse(cls, data.get(name), name) for name, cls in SECTIONS.items()}


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """One typed section; the whole file is validated first so a typo elsewhere is caught too."""
    if name not in SECTIONS:
        raise KeyError(f"no params section named {name!r}")
    return load_params(path)[name]
