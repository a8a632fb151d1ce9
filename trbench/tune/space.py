"""The search space: which numeric settings a study samples, and from which intervals."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass

import optuna

from trbench.algos.settings import strip_optional
from trbench.base.errors import UsageError

# The search space when no --param is given (see the issue): max_kl spans two decades around the
# published 0.01-0.07; damping covers both anchors, 0.1 (Spinning Up, sb3-contrib) and 1e-5
# (rllab, garage), from nearly exact Fisher solves to strongly regularised ones.
DEFAULT_SPACE_TEXT = ("max_kl=1e-3:1e-1:log", "damping=1e-4:1:log")
LOG_FLAG = "log"


@dataclass(frozen=True)
class ParamRange:
    """One tuned setting: a numeric config field and the interval it is sampled from."""

    name: str
    low: float | int
    high: float | int
    log: bool
    integer: bool

    @property
    def text(self) -> str:
        return f"{self.name}={self.low:g}:{self.high:g}" + (f":{LOG_FLAG}" if self.log else "")

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def suggest(self, trial: optuna.Trial) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def numeric_type(hint: typing.Any) -> type | None:
    """int or float for a (possibly optional) numeric config field, else None."""
    base, _ = strip_optional(hint)
    return base if base in (int, float) else None


def tunable_fields(config_cls: type) -> list[str]:
    return sorted(name for name, hint in typing.get_type_hints(config_cls).items() if numeric_type(hint))


def _bound(text: str, what: str, where: str) -> float:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise UsageError(f"{where}: {what} {text!r} is not a number; expected name=low:high[:log]") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {what} must be a finite number, got {text!r}")
    return value


def parse_param(text: str, config_cls: type, where: str = "--param") -> ParamRange:
    """Parse ``name=low:high[:log]`` and check it against the fields of ``config_cls``."""
    where = f"{where} {text}"
    name, sep, bounds = text.partition("=")
    name = name.strip()
    parts = [part.strip() for part in bounds.split(":")]
    if not sep or not name or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != LOG_FLAG):
        raise UsageError(f"{where}: expected name=low:high or name=low:high:log, e.g. max_kl=1e-3:1e-1:log")
    hints = typing.get_type_hints(config_cls)
    allowed = ", ".join(tunable_fields(config_cls))
    if name not in hints:
        raise UsageError(f"{where}: unknown setting {name!r} for {config_cls.__name__}; allowed: {allowed}")
    base = numeric_type(hints[name])
    if base is None:
        raise UsageError(f"{where}: {name} is not a numeric setting, so it has no range; allowed: {allowed}")
    low, high = _bound(parts[0], "low", where), _bound(parts[1], "high", where)
    log = len(parts) == 3
    if base is int and not (low.is_integer() and high.is_integer()):
        raise UsageError(f"{where}: {name} is an integer setting; low and high must be integers")
    if not low < high:
        raise UsageError(f"{where}: low must be < high, got low={low:g} >= high={high:g}")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0, got low={low:g}; drop ':log' for a uniform range")
    if base is int:
        return ParamRange(name, int(low), int(high), log, True)
    return ParamRange(name, low, high, log, False)


def default_space(config_cls: type) -> tuple[list[str], str]:
    """The space searched when no --param is given, and its name for messages: max_kl and damping
    where the config has both (TRPO, NPG); otherwise the method's trust-region radius (what plays
    TRPO's delta: PPO's clip range, PPO-KL's d_targ, ...) log-uniform over two decades around its
    default, as max_kl's range spans two decades; a method without one (VPG) has no default."""
    names = [text.partition("=")[0] for text in DEFAULT_SPACE_TEXT]
    if all(n in typing.get_type_hints(config_cls) for n in names):
        return list(DEFAULT_SPACE_TEXT), "default space"
    radius = getattr(config_cls, "radius", None)
    if radius is not None:
        default = float(getattr(config_cls(), radius.setting))
        return [f"{radius.setting}={default / 10:g}:{default * 10:g}:log"], "default space (the radius)"
    raise UsageError(
        f"--param: {config_cls.__name__} has no trust-region radius and no {' or '.join(names)}, so there is "
        f"no default space; give one with --param name=low:high[:log] (allowed: "
        f"{', '.join(tunable_fields(config_cls))})"
    )


def parse_space(texts: list[str], config_cls: type, where: str = "--param") -> list[ParamRange]:
    if not texts:
        texts, where = default_space(config_cls)
    space = [parse_param(text, config_cls, where) for text in texts]
    names = [param.name for param in space]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"{where} {name}: given more than once; each setting may appear once")
    return space
