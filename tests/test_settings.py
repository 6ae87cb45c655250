"""The settings base: one battery over every settings class of every study."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import jsonschema
import pytest

from galforge.settings import (
    Settings,
    SettingsError,
    choice,
    flag,
    integer,
    number,
    numbers,
    section,
    text,
    texts,
)
from galforge.studies import REGISTRY


def _all_classes() -> list[type[Settings]]:
    seen: list[type[Settings]] = []

    def walk(cls: type[Settings]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for f in dataclasses.fields(cls):
            sub = f.metadata.get("section")
            if sub is not None:
                walk(sub)

    for entry in REGISTRY:
        walk(entry.settings_class())
    return seen


CLASSES = _all_classes()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_defaults_round_trip_through_plain_json(cls):
    s = cls()
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert cls.from_dict(d) == s
    assert cls.from_dict(json.loads(json.dumps(d))) == s


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_unknown_keys_are_rejected_by_name(cls):
    with pytest.raises(SettingsError, match="no_such_key: unknown key"):
        cls.from_dict({"no_such_key": 1})
    with pytest.raises(SettingsError, match="must be a mapping"):
        cls.from_dict(["a", "list"])  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_declared_with_a_checked_helper(cls):
    """One place for the number checks: every field carries its checker and its doc."""
    for f in dataclasses.fields(cls):
        assert "check" in f.metadata, f"{cls.__name__}.{f.name} has no checker"
        if "section" not in f.metadata:
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no description"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_derived_schema_accepts_the_defaults(cls):
    schema = cls.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(cls().to_dict(), schema)


@dataclass(frozen=True)
class _Inner(Settings):
    n: int = integer(3, "n", lo=1, hi=10)
    x: float = number(0.5, "x", lo=0.0, hi=1.0, hi_open=True)
    xs: tuple[float, ...] = numbers((1.0, 2.0), "xs", increasing=True)
    t: str | None = text(None, "t", optional=True)


@dataclass(frozen=True)
class _Outer(Settings):
    inner: _Inner = section(_Inner, "inner", defaults={"n": 5})
    mode: str = choice("a", ("a", "b"), "mode")
    on: bool = flag(False, "on")
    names: tuple[str, ...] = texts(("p",), "names", options=("p", "q"))

    def check(self) -> None:
        if self.on and self.mode == "b":
            raise ValueError("on needs mode a")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"inner": {"n": 0}}, "inner.n = 0 must be in [1, 10]"),
        ({"inner": {"n": 2.5}}, "inner.n: must be an integer, got 2.5"),
        ({"inner": {"n": True}}, "inner.n: must be an integer, got True"),
        ({"inner": {"x": 1}}, "inner.x = 1.0 must be in [0.0, 1.0)"),
        ({"inner": {"x": float("nan")}}, "inner.x: must be finite"),
        ({"inner": {"xs": [2, 1]}}, "inner.xs: must increase strictly"),
        ({"inner": {"xs": [1, "a"]}}, "inner.xs: item 1 must be a number"),
        ({"inner": {"t": ""}}, "inner.t: must not be empty"),
        ({"inner": 3}, "inner: must be a mapping"),
        ({"mode": "c"}, "mode = 'c'; choose one of 'a', 'b'"),
        ({"on": "yes"}, "on: must be true or false"),
        ({"names": ["r"]}, "names: holds 'r'"),
        ({"names": ["p", "p"]}, "names: must not repeat"),
        ({"on": True, "mode": "b"}, "on needs mode a"),
    ],
)
def test_bad_values_raise_one_error_naming_the_key(raw, message):
    with pytest.raises(SettingsError) as info:
        _Outer.from_dict(raw)
    assert message in str(info.value)


def test_values_are_normalised_and_parent_defaults_apply():
    s = _Outer.from_dict({"inner": {"x": 0, "xs": [1, 2, 3]}})
    assert s.inner.n == 5  # the parent's default for the section
    assert isinstance(s.inner.x, float) and s.inner.xs == (1.0, 2.0, 3.0)
    assert _Outer().inner.n == 5
    assert s.replace(mode="b").mode == "b"
    with pytest.raises(SettingsError):
        s.replace(on=True, mode="b")
    schema = _Outer.json_schema()
    assert schema["properties"]["inner"]["properties"]["n"] == {
        "type": "integer", "minimum": 1, "maximum": 10, "default": 5, "description": "n"}
    assert schema["properties"]["inner"]["properties"]["t"]["type"] == ["string", "null"]


@dataclass(frozen=True)
class _Sized(Settings):
    n: int | None = integer(None, "n", lo=1, hi=10, optional=True)


@dataclass(frozen=True)
class _Tied(Settings):
    ties = (("model.n", "data.n"),)
    data: _Inner = section(_Inner, "data")
    model: _Sized = section(_Sized, "model")


def test_a_tied_key_follows_its_source_or_is_refused():
    assert _Tied.from_dict({"data": {"n": 7}}).model.n == 7
    assert _Tied.from_dict({"data": {"n": 7}, "model": {"n": 7}}).model.n == 7
    with pytest.raises(SettingsError, match=r"model\.n = 4 must equal data\.n \(7\)"):
        _Tied.from_dict({"data": {"n": 7}, "model": {"n": 4}})
    assert _Tied.linked() == {"model": ("data",)}
