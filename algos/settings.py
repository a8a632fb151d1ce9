"""The machinery of typed, documented settings: :func:`setting` declares a config field with its
meaning, source and allowed values, and :class:`ConfigBase` validates, coerces and describes them.

The algorithms' configurations themselves are in :mod:`.config`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trbench.base.errors import UsageError


def setting(
    default: Any,
    doc: str,
    *,
    source: str = "",
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a config field with its meaning, provenance and allowed range."""
    meta = {"doc": doc, "source": source, "gt": gt, "ge": ge, "le": le, "lt": lt, "choices": choices}
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def _allowed_text(meta: Mapping[str, Any]) -> str:
    parts = []
    if meta.get("choices"):
        parts.append("one of " + ", ".join(meta["choices"]))
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " and ".join(parts)


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(T, True)`` for a type hint ``T | None`` (``Optional[T]``), else ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Convert a value (a string from the command line, or a TOML value) to the field's type."""
    base, optional = strip_optional(tp)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
        return None
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"{key}: expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise UsageError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise UsageError(f"{key}: expected an integer, got {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise UsageError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{key}: expected a number, got {value!r}")
    if base is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{key}: expected a string, got {value!r}")
    if typing.get_origin(base) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{key}: expected a comma-separated list of integers, got {value!r}")
        if isinstance(items, list) and len(items) == 1 and items[0] == "":
            items = []
        return tuple(_coerce(key, int, item.strip() if isinstance(item, str) else item) for item in items)
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


@dataclass(frozen=True)
class ConfigBase:
    """Validation, coercion and introspection shared by all algorithm configs."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            tp, optional = strip_optional(hints[f.name])
            if value is None and optional:
                continue
            coerced = _coerce(f.name, hints[f.name], value)
            if coerced != value or type(coerced) is not type(value):
                object.__setattr__(self, f.name, coerced)
                value = coerced
            meta = f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise UsageError(f"{f.name}: must be {_allowed_text(meta)}, got {value!r}")
            numbers = value if isinstance(value, tuple) else (value,)
            for number in numbers:
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    bad = (
                        not math.isfinite(number)
                        or (meta.get("gt") is not None and not number > meta["gt"])
                        or (meta.get("ge") is not None and not number >= meta["ge"])
                        or (meta.get("lt") is not None and not number < meta["lt"])
                        or (meta.get("le") is not None and not number <= meta["le"])
                    )
                    if bad:
                        raise UsageError(f"{f.name}: must be {_allowed_text(meta)}, got {value!r}")
        self.check()

    def check(self) -> None:
        """Cross-field checks; subclasses extend and raise UsageError."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None):
        """Build a config from defaults plus overrides; unknown keys name the allowed ones."""
        overrides = dict(overrides or {})
        known = set(cls.field_names())
        for key in overrides:
            if key not in known:
                raise UsageError(f"{key}: unknown setting for {cls.__name__}; allowed: {', '.join(sorted(known))}")
        return cls(**overrides)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)
        }

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One row per field: name, type, default, meaning, source, allowed values."""
        hints = typing.get_type_hints(cls)
        return [
            {
                "name": f.name,
                "type": getattr(hints[f.name], "__name__", str(hints[f.name])),
                "default": f.default,
                "doc": f.metadata.get("doc", ""),
                "source": f.metadata.get("source", ""),
                "allowed": _allowed_text(f.metadata),
            }
            for f in dataclasses.fields(cls)
        ]


def parse_set_arguments(pairs: list[str]) -> dict[str, str]:
    """Split `--set key=value` arguments; values stay strings until the config coerces them."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {pair!r}: expected key=value")
        overrides[key.strip()] = value.strip()
    return overrides
