"""One base for every settings section: typed, frozen, checked on construction.

Every section of the configuration (``environment.maps``, ``spectra.model``, the
training settings, the mock universes, ...) is a frozen dataclass that derives
from :class:`Settings` and declares each field with one of the field helpers
below (:func:`number`, :func:`integer`, :func:`choice`, :func:`flag`,
:func:`text`, :func:`numbers`, :func:`texts`, :func:`section`, :func:`value`).
The helper carries the default, the allowed range and a one-line description, so
that

* the range check of every value is written once, here, and raises
  :class:`SettingsError` naming the key;
* :meth:`Settings.from_dict` rejects unknown keys by name, :meth:`Settings.to_dict`
  is its JSON-able inverse and :meth:`Settings.replace` checks again;
* the JSON schema of a section (:meth:`Settings.json_schema`: types, bounds,
  enums, defaults, descriptions) is *derived* from the class, so the dataclass
  default is the only place a default lives (scale presets aside, which live in
  each study's ``presets`` module).

A study's whole section is itself a :class:`Settings` whose fields are
:func:`section` fields (nested settings) and plain values; its :meth:`~Settings.check`
hook holds the checks that tie two sections together. The pattern follows the
small typed configs of ``sbi`` and ``zuko`` (unknown keys rejected, values
validated at construction).

This module imports only the standard library: the configuration checker and
every workflow job import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from numbers import Real
from typing import Any, ClassVar, Self

__all__ = [
    "ModelSettings",
    "Settings",
    "SettingsError",
    "check_each",
    "choice",
    "flag",
    "integer",
    "number",
    "numbers",
    "section",
    "text",
    "texts",
    "value",
]


class SettingsError(ValueError):
    """A bad settings value or key. ``key`` is the dotted key path at fault."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        if not key:
            text = message
        elif message.startswith("= "):
            text = f"{key} {message}"
        else:
            text = f"{key}: {message}"
        super().__init__(text)

    def under(self, prefix: str) -> SettingsError:
        """The same error with ``prefix`` put in front of its key path."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return SettingsError(key, self.detail)


# -- field helpers ------------------------------------------------------------------------
#
# Each helper returns a dataclasses.field whose metadata holds a checker (value -> the
# stored, normalised value, or a SettingsError naming no key: the base adds it) and a JSON
# schema fragment.

Checker = Callable[[Any], Any]


def _field(default: Any, check: Checker, schema: dict[str, Any], doc: str) -> Any:
    meta = {"check": check, "schema": schema, "doc": doc}
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults: pass a tuple, or use section()")
    return dataclasses.field(default=default, metadata=meta)


def _is_number(v: Any) -> bool:
    # Real covers int, float and NumPy's number scalars (not its bool) without NumPy
    return not isinstance(v, bool) and isinstance(v, Real)


def _bounds_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"> {lo}" if lo_open else f">= {lo}"
    if lo is None:
        return f"< {hi}" if hi_open else f"<= {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _bounds_schema(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if lo is not None and math.isfinite(lo):
        out["exclusiveMinimum" if lo_open else "minimum"] = lo
    if hi is not None and math.isfinite(hi):
        out["exclusiveMaximum" if hi_open else "maximum"] = hi
    return out


def _range_checker(kind: str, lo: float | None, hi: float | None, lo_open: bool,
                   hi_open: bool) -> Checker:
    def check(v: Any) -> Any:
        if kind == "integer":
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not _is_number(v) or int(v) != v:
                raise ValueError(f"must be an integer, got {v!r}")
            v = int(v)
        else:
            if not _is_number(v):
                raise ValueError(f"must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"must be finite, got {v!r}")
        low = lo is not None and (v <= lo if lo_open else v < lo)
        high = hi is not None and (v >= hi if hi_open else v > hi)
        if low or high:
            raise ValueError(f"= {v!r} must be {_bounds_text(lo, hi, lo_open, hi_open)}")
        return v

    return check


def _optional(check: Checker, schema: dict[str, Any], optional: bool
              ) -> tuple[Checker, dict[str, Any]]:
    if not optional:
        return check, schema

    def maybe(v: Any) -> Any:
        return None if v is None else check(v)

    t = schema.get("type")
    out = dict(schema)
    if t is not None:
        out["type"] = [t, "null"] if isinstance(t, str) else [*t, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return maybe, out


def number(default: float | None, doc: str = "", *, lo: float | None = None,
           hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           optional: bool = False) -> Any:
    """A finite real number in ``[lo, hi]`` (``lo_open``/``hi_open``: exclusive bounds).

    ``optional``: ``None`` is allowed too (and means "off" or "derive it").
    """
    check = _range_checker("number", lo, hi, lo_open, hi_open)
    schema = {"type": "number", **_bounds_schema(lo, hi, lo_open, hi_open)}
    check, schema = _optional(check, schema, optional)
    return _field(default, check, schema, doc)


def integer(default: int | None, doc: str = "", *, lo: int | None = None,
            hi: int | None = None, optional: bool = False) -> Any:
    """An integer in ``[lo, hi]`` (a float with an integer value is accepted)."""
    check = _range_checker("integer", lo, hi, False, False)
    schema = {"type": "integer", **_bounds_schema(lo, hi, False, False)}
    check, schema = _optional(check, schema, optional)
    return _field(default, check, schema, doc)


def choice(default: Any, options: Sequence[Any], doc: str = "", *,
           optional: bool = False) -> Any:
    """One of ``options`` (strings, or ``None`` with ``optional``)."""
    opts = tuple(options)

    def check(v: Any) -> Any:
        if v not in opts or isinstance(v, bool) != any(isinstance(o, bool) for o in opts):
            raise ValueError(f"= {v!r}; choose one of {', '.join(map(repr, opts))}")
        return v

    check, schema = _optional(check, {"enum": list(opts)}, optional)
    return _field(default, check, schema, doc)


def flag(default: bool, doc: str = "") -> Any:
    """``true`` or ``false``."""

    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v

    return _field(default, check, {"type": "boolean"}, doc)


def text(default: str | None, doc: str = "", *, optional: bool = False,
         nonempty: bool = True) -> Any:
    """A string (non-empty unless ``nonempty=False``)."""

    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"must be a string, got {v!r}")
        if nonempty and not v:
            raise ValueError("must not be empty")
        return v

    schema: dict[str, Any] = {"type": "string", **({"minLength": 1} if nonempty else {})}
    check, schema = _optional(check, schema, optional)
    return _field(default, check, schema, doc)


def numbers(default: Sequence[float] | None, doc: str = "", *, integer: bool = False,
            lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False, length: int | None = None, min_length: int = 0,
            increasing: bool = False, optional: bool = False) -> Any:
    """A list of numbers (stored as a tuple), each in ``[lo, hi]``.

    ``length``: exactly that many; ``min_length``: at least that many;
    ``increasing``: strictly increasing.
    """
    one = _range_checker("integer" if integer else "number", lo, hi, lo_open, hi_open)

    def check(v: Any) -> tuple[Any, ...]:
        if getattr(v, "ndim", None) == 1 and hasattr(v, "tolist"):  # a 1-D array
            v = v.tolist()
        if isinstance(v, str | bytes | Mapping) or not isinstance(v, Sequence):
            raise ValueError(f"must be a list of numbers, got {v!r}")
        out = check_each(one, v)
        if length is not None and len(out) != length:
            raise ValueError(f"must hold {length} numbers, got {len(out)}")
        if len(out) < min_length:
            raise ValueError(f"must hold at least {min_length} numbers, got {len(out)}")
        if increasing and any(b <= a for a, b in zip(out, out[1:], strict=False)):
            raise ValueError(f"must increase strictly, got {list(out)}")
        return tuple(out)

    item = {"type": "integer" if integer else "number", **_bounds_schema(lo, hi, lo_open,
                                                                         hi_open)}
    schema: dict[str, Any] = {"type": "array", "items": item}
    if length is not None:
        schema["minItems"] = schema["maxItems"] = length
    elif min_length:
        schema["minItems"] = min_length
    check, schema = _optional(check, schema, optional)
    return _field(None if default is None else tuple(default), check, schema, doc)


def check_each(check: Checker, values: Sequence[Any], what: str = "item") -> tuple[Any, ...]:
    """``check`` applied to every entry of ``values``; an error names the entry's index."""
    out = []
    for i, item in enumerate(values):
        try:
            out.append(check(item))
        except ValueError as exc:
            raise ValueError(f"{what} {i} {exc}") from None
    return tuple(out)


def texts(default: Sequence[str], doc: str = "", *, options: Sequence[str] | None = None,
          unique: bool = True) -> Any:
    """A list of strings (stored as a tuple), each one of ``options`` when given."""
    opts = None if options is None else tuple(options)

    def check(v: Any) -> tuple[str, ...]:
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise ValueError(f"must be a list of strings, got {v!r}")
        for s in v:
            if not isinstance(s, str):
                raise ValueError(f"must hold strings, got {s!r}")
            if opts is not None and s not in opts:
                raise ValueError(f"holds {s!r}; choose from {', '.join(opts)}")
        if unique and len(set(v)) != len(v):
            raise ValueError(f"must not repeat an item, got {list(v)}")
        return tuple(v)

    item: dict[str, Any] = {"type": "string"}
    if opts is not None:
        item = {"enum": list(opts)}
    schema = {"type": "array", "items": item, **({"uniqueItems": True} if unique else {})}
    return _field(tuple(default), check, schema, doc)


def value(default: Any, check: Checker, schema: Mapping[str, Any], doc: str = "") -> Any:
    """Any other kind of value: ``check`` normalises it or raises ValueError.

    ``schema`` is its JSON schema fragment. Mutable defaults are copied per instance.
    """
    meta = {"check": check, "schema": dict(schema), "doc": doc}
    if isinstance(default, list | dict | set):
        frozen = default

        return dataclasses.field(default_factory=lambda: check(_copy(frozen)), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


def section(cls: type[Settings], doc: str = "", *,
            defaults: Mapping[str, Any] | None = None) -> Any:
    """A nested settings section of class ``cls`` (a mapping in the configuration).

    ``defaults``: this parent's own defaults for some of the section's keys (e.g. a
    study's validation fraction), applied under what the configuration sets.
    """
    base = dict(defaults or {})

    def check(v: Any) -> Settings:
        if isinstance(v, cls):
            return v
        if v is not None and not isinstance(v, Mapping):
            raise ValueError(f"must be a mapping of keys, got {v!r}")
        return cls.from_dict({**base, **dict(v or {})})

    meta = {"check": check, "section": cls, "doc": doc, "defaults": base}
    return dataclasses.field(default_factory=lambda: cls.from_dict(base), metadata=meta)


# -- the base -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Base of every settings class (derive with ``@dataclass(frozen=True)``).

    Subclasses declare fields with the helpers of this module and may override
    :meth:`check` for checks that tie fields together (raise :class:`ValueError`
    or :class:`SettingsError`; the key is added where it is missing).
    """

    #: ``(target, source)`` dotted key paths of a study's settings: the target key follows
    #: the source (set from it when left unset, refused when it differs), e.g.
    #: ``("model.npix", "maps.npix")``. See :meth:`linked`.
    ties: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is None:
                continue
            try:
                object.__setattr__(self, f.name, check(getattr(self, f.name)))
            except SettingsError as exc:
                raise exc.under(f.name) from None
            except (TypeError, ValueError) as exc:
                raise SettingsError(f.name, str(exc)) from None
        self._apply_ties()
        try:
            self.check()
        except SettingsError:
            raise
        except (TypeError, ValueError) as exc:
            raise SettingsError("", str(exc)) from None

    def check(self) -> None:
        """Cross-field checks (none by default)."""

    def _apply_ties(self) -> None:
        for target, source in self.ties:
            tsec, tkey = target.split(".")
            ssec, skey = source.split(".")
            want = getattr(getattr(self, ssec), skey)
            sub = getattr(self, tsec)
            have = getattr(sub, tkey)
            if have is None:
                try:
                    object.__setattr__(self, tsec, sub.replace(**{tkey: want}))
                except SettingsError as exc:
                    raise exc.under(tsec) from None
            elif have != want:
                raise SettingsError(target, f"= {have!r} must equal {source} ({want!r}); leave "
                                    f"it unset to follow {source}")

    @classmethod
    def linked(cls) -> dict[str, tuple[str, ...]]:
        """For each section, the sections its values follow (from :attr:`ties`): a workflow
        rule given the section is given these too, so that a job can check the tie."""
        out: dict[str, tuple[str, ...]] = {}
        for target, source in cls.ties:
            t, src = target.split(".")[0], source.split(".")[0]
            if src not in out.get(t, ()):
                out[t] = (*out.get(t, ()), src)
        return out

    # -- construction and conversion ---------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The keys this section takes."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None) -> Self:
        """Settings from a mapping of overrides of the defaults.

        Raises
        ------
        SettingsError
            On an unknown key (named, with the keys this section knows) or a bad value.
        """
        if d is None:
            d = {}
        if isinstance(d, cls):
            return d
        if not isinstance(d, Mapping):
            raise SettingsError("", f"must be a mapping of keys, got {d!r}")
        known = cls.keys()
        unknown = sorted(str(k) for k in set(d) - set(known))
        if unknown:
            raise SettingsError(
                unknown[0],
                "unknown key" + (f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
                + f"; known keys: {', '.join(sorted(known))}",
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping of every field (the inverse of :meth:`from_dict`)."""
        return {f.name: _plain(getattr(self, f.name))
                for f in dataclasses.fields(self) if f.init}

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    # -- schema ------------------------------------------------------------------------
    @classmethod
    def json_schema(cls, description: str | None = None,
                    defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON schema of this section, derived from the fields (defaults included).

        ``defaults``: overrides of the class defaults (a parent's :func:`section` defaults).
        """
        defaults = cls.from_dict(defaults or {}).to_dict()
        props: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            sub = f.metadata.get("section")
            if sub is not None:
                props[f.name] = sub.json_schema(f.metadata.get("doc") or None,
                                                f.metadata.get("defaults"))
                continue
            entry = dict(f.metadata.get("schema", {}))
            entry["default"] = defaults[f.name]
            if f.metadata.get("doc"):
                entry["description"] = f.metadata["doc"]
            props[f.name] = entry
        out: dict[str, Any] = {"type": "object", "additionalProperties": False, "default": {}}
        doc = description if description is not None else (cls.__doc__ or "").strip()
        if doc.startswith(f"{cls.__name__}("):  # the dataclass's generated signature
            doc = ""
        if doc:
            out["description"] = " ".join(doc.split("\n\n")[0].split())
        out["properties"] = props
        return out


@dataclass(frozen=True)
class ModelSettings(Settings):
    """Settings that describe one network: :attr:`model_class` names it (``"module:Class"``,
    imported on first use, so the settings stay torch-free) and :meth:`model_kwargs` gives
    its JSON-able constructor arguments."""

    model_class: ClassVar[str] = ""

    def model_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of :attr:`model_class`."""
        raise NotImplementedError

    def build(self) -> Any:
        """The network these settings describe."""
        import importlib

        module, _, name = self.model_class.partition(":")
        return getattr(importlib.import_module(module), name)(**self.model_kwargs())


def _plain(v: Any) -> Any:
    if isinstance(v, Settings):
        return v.to_dict()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def default_of(cls: type[Settings], name: str) -> Any:
    """The default of field ``name`` of ``cls`` (for documentation and tests)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(name)
