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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

__all__ = [
    "ParamsError",
    "Range",
    "SECTIONS",
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


def _parse_dataclass(cls: type, value: Any, path: str) -> Any:
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
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = parse(hints[name], value[name], key_path)
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


@dataclass(frozen=True)
class SyntheticReid:
    """The procedural pedestrian generator (see ``personlab.data.synthetic``)."""

    num_identities: Annotated[int, Range(4, None)] = 120
    num_train_identities: Annotated[int, Range(2, None)] = 60
    num_cameras: Annotated[int, Range(2, 9)] = 4
    images_per_camera: tuple[Annotated[int, Range(1, None)], Annotated[int, Range(1, None)]] = (2, 4)
    camera_presence: Annotated[float, Probability] = 0.85
    height: Annotated[int, Range(32, None)] = 128
    width: Annotated[int, Range(16, None)] = 64
    num_distractors: Annotated[int, NonNegative] = 40
    num_junk: Annotated[int, NonNegative] = 20
    # realism: identity attribute pools (small pools give look-alikes)
    num_top_colors: Annotated[int, Range(1, None)] = 8
    num_bottom_colors: Annotated[int, Range(1, None)] = 6
    num_patterns: Annotated[int, Range(1, 4)] = 4
    bag_probability: Annotated[float, Probability] = 0.4
    backpack_probability: Annotated[float, Probability] = 0.3
    logo_probability: Annotated[float, Probability] = 0.3
    # per-camera appearance
    camera_color_cast: Annotated[float, NonNegative] = 0.12
    camera_exposure: Annotated[float, NonNegative] = 0.25
    camera_blur: Annotated[float, NonNegative] = 0.8
    noise_std: Annotated[float, NonNegative] = 6.0
    # per-image geometry and clutter
    pose_variation: Annotated[float, NonNegative] = 1.0
    bbox_jitter: Annotated[float, NonNegative] = 0.08
    occlusion_probability: Annotated[float, Probability] = 0.25
    clutter: Annotated[int, NonNegative] = 6
    jpeg_quality: Annotated[int, Range(50, 100)] = 90


@dataclass(frozen=True)
class ReidData:
    """Where the re-ID dataset comes from."""

    source: Literal["synthetic", "market1501", "dukemtmc", "cuhk03", "msmt17"] = "synthetic"
    archive: str = ""  # local path or http(s) URL of the official archive (real sources only)
    md5: str = ""  # "" = the official archive's md5 where known
    cuhk03_images: Literal["labeled", "detected"] = "labeled"  # which CUHK03-NP split the splits stage uses
    msmt17_use_val: bool = False  # add list_val.txt to training (torchreid combineall); BoT: no
    synthetic: SyntheticReid = field(default_factory=SyntheticReid)


@dataclass(frozen=True)
class Data:
    seed: Annotated[int, NonNegative] = 0
    reid: ReidData = field(default_factory=ReidData)
    pose: dict[str, Any] = field(default_factory=dict)  # typed by personlab.pose once that lands


SECTIONS: dict[str, type] = {
    "common": Common,
    "data": Data,
}


# ----------------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found; run from the project root or pass its path")
    try:
        data = yaml.safe_load(path.read_text())
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
