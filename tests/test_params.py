"""The typed params loader: every bad key fails with its dotted path, the committed file parses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest
import yaml

from personlab.params import ParamsError, Range, load_params, parse, section_digest


@dataclass(frozen=True)
class Inner:
    lr: Annotated[float, Range(0, None, min_inclusive=False)] = 0.1
    milestones: tuple[int, ...] = (40, 70)


@dataclass(frozen=True)
class Outer:
    mode: Literal["a", "b"] = "a"
    epochs: Annotated[int, Range(1, 10)] = 2
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_conversion():
    out = parse(Outer, {"inner": {"lr": 2, "milestones": [1, 2]}}, "s")
    assert out == Outer(inner=Inner(lr=2.0, milestones=(1, 2)))
    assert isinstance(out.inner.lr, float)  # `dvc exp run -S s.inner.lr=2` writes an int


@pytest.mark.parametrize(
    "data, message",
    [
        ({"epoch": 3}, "s.epoch: unknown key"),
        ({"inner": {"lrr": 1}}, "s.inner.lrr: unknown key"),
        ({"epochs": 0}, "s.epochs: 0 is out of range [1, 10]"),
        ({"epochs": 2.5}, "s.epochs: expected an integer"),
        ({"epochs": True}, "s.epochs: expected an integer"),
        ({"flag": "yes"}, "s.flag: expected true or false"),
        ({"mode": "c"}, "s.mode: 'c' is not one of 'a', 'b'"),
        ({"inner": {"lr": 0}}, "s.inner.lr: 0.0 is out of range (0, inf]"),
        ({"inner": {"milestones": [1, "x"]}}, "s.inner.milestones.1: expected an integer"),
        ({"inner": 3}, "s.inner: expected a mapping"),
    ],
)
def test_errors_name_the_dotted_key(data, message):
    with pytest.raises(ParamsError) as err:
        parse(Outer, data, "s")
    assert str(err.value).startswith(message)


def test_committed_params_file_parses():
    sections = load_params("params.yaml")
    assert sections["common"].seed >= 0


def test_unknown_section_and_nested_typo_in_file(tmp_path):
    good = yaml.safe_load(open("params.yaml"))
    bad = dict(good, commmon={"seed": 1})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match=r"^commmon: unknown section"):
        load_params(tmp_path / "p.yaml")
    bad = yaml.safe_load(open("params.yaml"))
    bad["common"]["sed"] = 1
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match=r"^common\.sed: unknown key"):
        load_params(tmp_path / "p.yaml")


def test_digest_changes_with_any_value():
    assert section_digest(Outer()) == section_digest(parse(Outer, {}, "s"))
    assert section_digest(Outer()) != section_digest(Outer(epochs=3))


@dataclass(frozen=True)
class WithNestedDefault:
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, milestones=(1,)))


def test_partial_sub_mapping_keeps_the_parents_defaults():
    out = parse(WithNestedDefault, {"inner": {"lr": 0.7}}, "s")
    assert out.inner == Inner(lr=0.7, milestones=(1,))  # not Inner's own (40, 70)
    assert parse(WithNestedDefault, {}, "s").inner == Inner(lr=0.5, milestones=(1,))


def test_unquoted_off_written_back_by_dvc_stays_a_string(tmp_path):
    # `dvc exp run -S` rewrites params.yaml with a YAML 1.2 writer: 'off' loses its quotes
    text = open("params.yaml").read().replace("amp: 'off'", "amp: off")
    assert "amp: off" in text
    (tmp_path / "p.yaml").write_text(text)
    sections = load_params(tmp_path / "p.yaml")
    assert sections["baseline"].train.amp == "off"
    (tmp_path / "q.yaml").write_text(text.replace("deterministic: true", "deterministic: yes"))
    with pytest.raises(ParamsError, match=r"^common\.deterministic: expected true or false"):
        load_params(tmp_path / "q.yaml")  # YAML 1.2: only true/false are booleans
