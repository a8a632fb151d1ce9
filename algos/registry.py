"""Algorithms by name.

Three ways to make an algorithm known, so a researcher's own method gets `trbench train`, the
runner, reports and tuning without touching this package:

* an import path ``package.module:ClassName`` wherever an algorithm name is accepted;
* the ``trbench.algorithms`` entry-point group of an installed distribution;
* :func:`register` in code that runs before the name is looked up.

The class must subclass :class:`~trbench.algos.base.OnPolicyAlgorithm` and set ``Config``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from trbench.base.errors import UsageError

from .base import OnPolicyAlgorithm

BUILTIN = {
    "trpo": "trbench.algos.trpo:TRPO",
    "npg": "trbench.algos.npg:NPG",
    "vpg": "trbench.algos.vpg:VPG",
    "ppo": "trbench.algos.ppo:PPO",
    "ppo_kl": "trbench.algos.ppo_kl:PPOKL",
    "spo": "trbench.algos.spo:SPO",
    "truly_ppo": "trbench.algos.truly_ppo:TrulyPPO",
    "mdpo": "trbench.algos.mdpo:MDPO",
    "acktr": "trbench.algos.acktr:ACKTR",
    "trpl": "trbench.algos.trpl:TRPL",
}
ENTRY_POINT_GROUP = "trbench.algorithms"
_registered: dict[str, type[OnPolicyAlgorithm]] = {}


def register(name: str):
    """Class decorator: make `cls` available under `name`."""

    def decorate(cls: type[OnPolicyAlgorithm]) -> type[OnPolicyAlgorithm]:
        _check(name, cls)
        _registered[name] = cls
        return cls

    return decorate


def available_algorithms() -> list[str]:
    plugins = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(set(BUILTIN) | set(_registered) | set(plugins))


def _import_path(path: str, name: str) -> type:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"algo: cannot import {module_name!r} for {name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"algo: module {module_name!r} has no attribute {attr!r}") from None


def _check(name: str, cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, OnPolicyAlgorithm)):
        raise UsageError(f"algo: {name!r} is not an OnPolicyAlgorithm subclass")


def resolve_algorithm(name: str) -> type[OnPolicyAlgorithm]:
    """The algorithm class for a registered name or a ``module:Class`` import path."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN:
        cls = _import_path(BUILTIN[name], name)
    elif ":" in name:
        cls = _import_path(name, name)
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise UsageError(
                f"algo: unknown algorithm {name!r}; allowed: {', '.join(available_algorithms())} "
                "or an import path module:Class"
            )
        cls = matches[0].load()
    _check(name, cls)
    return cls
