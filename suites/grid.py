"""Suite files: read, validate and expand a suite into its grid of resolved runs.

Everything is checked here, before anything is written or run: a mistake in a suite file is a
one-line :class:`~trbench.base.errors.UsageError` naming the file, the TOML key and what is allowed.
The schema is documented in ``suites/README.md``.

Settings for one run are layered, later layers winning key by key::

    algorithm defaults < [hparams.all] < the variant's hparams < [hparams.<arm>]
                       < [env.<id>.hparams.all] < [env.<id>.hparams.<arm>]

A list value is a grid axis (for list-typed settings such as ``policy_hidden``, a list of lists
is). Axis values become part of the arm's label, ``trpo[max_kl=0.02]``, so that reports keep the
grid points apart, and a run's id stays the same when values are added to an axis.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import functools
import itertools
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import gymnasium as gym

from trbench.algos.registry import available_algorithms, resolve_algorithm
from trbench.algos.rollout import make_vector_env
from trbench.base.errors import UsageError
from trbench.suites.run_spec import ResolvedRun, RunSpec, resolve
from trbench.suites.suite import Arm, ArmSettings, Setting, Suite, SuiteSettings, Variant, merge_layers

BUILTIN_VARIANTS_FILE = Path(__file__).parent / "presets" / "variants.toml"
ALL_ARMS = "all"

# `tune` holds settings for `trbench tune --suite`; the runner itself ignores it
SUITE_KEYS = (
    "name",
    "description",
    "steps",
    "seeds",
    "envs",
    "algos",
    "hparams",
    "env",
    "variants",
    "tune",
    "seeds_per_worker",
)
ENV_KEYS = ("steps", "hparams")
VARIANT_KEYS = ("algo", "description", "hparams")

SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def read_suite_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """A suite file's text and its parsed TOML; UsageError naming the file when it is unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read suite file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        return text, tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: malformed TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: malformed TOML: {str(exc).splitlines()[0]}") from None


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file and expand its grid; UsageError on any mistake."""
    return load_suite_settings(path).suite


def load_suite_settings(path: Path | str) -> SuiteSettings:
    """Like :func:`load_suite`, keeping each arm's settings layers and the [tune] table."""
    path = Path(path)
    text, data = read_suite_toml(path)
    return _SuiteReader(path, text, data, builtin_variants()).read()


def parse_suite(path: Path, text: str, data: dict[str, Any]) -> Suite:
    """Validate and expand a suite held in memory: `data` is its TOML, `text` what the runner
    copies into the results folder, `path` what error messages name."""
    return _SuiteReader(path, text, data, builtin_variants()).read().suite


@functools.cache
def builtin_variants() -> dict[str, Variant]:
    data = tomllib.loads(BUILTIN_VARIANTS_FILE.read_text())
    reader = _SuiteReader(Path("suites/presets/variants.toml"), "", data, {})
    return reader.read_variants(data.get("variants", {}))


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (_dt.date, _dt.time, _dt.datetime)):
        return "a date/time"
    return type(value).__name__


def _format_value(value: Any) -> str:
    """Compact text of an axis value for an arm label: 0.02, true, 64x64, tanh."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "x".join(_format_value(v) for v in value)
    return str(value)


def _is_list_field(hint: Any) -> bool:
    """Whether a config field holds a sequence (policy_hidden), so that a list is one value."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(typing.get_origin(arg) is tuple for arg in typing.get_args(hint))
    return typing.get_origin(hint) is tuple


@functools.cache
def _config_fields(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


class _SuiteReader:
    def __init__(self, path: Path, text: str, data: dict[str, Any], builtin: dict[str, Variant]):
        self.path = path
        self.text = text
        self.data = data
        self.builtin = builtin

    def fail(self, key: str, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.path}: {key}: {message}")

    # --- small typed readers ----------------------------------------------------------------------
    def check_keys(self, table: dict[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"unknown key; allowed here: {', '.join(allowed)}")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a table, got {_type_name(value)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_type_name(value)} {value!r}")
        return value

    def seeds_per_worker(self, value: Any) -> int | None:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            self.fail("seeds_per_worker", f"must be an integer >= 1 (1: one seed per worker), got {value!r}")
        return value

    def steps(self, value: Any, key: str) -> int:
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.fail(key, f"must be an integer >= 1 (environment steps), got {value!r}")
        return value

    def string_list(self, value: Any, key: str, what: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(key, f"must be a list of {what}, got {_type_name(value)} {value!r}")
        if not value:
            self.fail(key, f"is empty, so the grid is empty; list at least one of {what}")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"must be a string, got {_type_name(item)} {item!r}")
            if item in seen:
                self.fail(f"{key}[{i}]", f"duplicate entry {item!r}; each may appear once")
            seen.add(item)
        return value

    # --- the suite ----------------------------------------------------------------------------------
    def read(self) -> SuiteSettings:
        data = self.data
        self.check_keys(data, "", SUITE_KEYS)
        for required in ("envs", "algos", "seeds"):
            if required not in data:
                self.fail(required, "missing; a suite needs envs, algos and seeds (and steps)")
        name = self.suite_name(data.get("name", self.path.stem))
        description = self.string(data.get("description", ""), "description")
        seeds = self.seeds(data["seeds"])
        envs = self.envs(data["envs"])
        variants = self.read_variants(self.table(data.get("variants", {}), "variants"), in_suite=True)
        arms = self.arms(data["algos"], variants)
        env_tables = self.env_tables(self.table(data.get("env", {}), "env"), envs)
        global_steps = self.steps(data["steps"], "steps") if "steps" in data else None
        hparams = self.hparams_tables(self.table(data.get("hparams", {}), "hparams"), "hparams", arms)

        runs: list[tuple[int, ResolvedRun]] = []
        steps_by_env: dict[str, int] = {}
        layers: dict[str, dict[str, tuple[dict[str, Setting], ...]]] = {arm.name: {} for arm in arms}
        for env_id in envs:
            env_table = env_tables.get(env_id, {})
            if "steps" in env_table:
                steps = self.steps(env_table["steps"], f"env.{env_id}.steps")
            elif global_steps is not None:
                steps = global_steps
            else:
                self.fail("steps", f"missing; set steps at the top level or in [env.{env_id}]")
            steps_by_env[env_id] = steps
            env_hparams = self.hparams_tables(
                self.table(env_table.get("hparams", {}), f"env.{env_id}.hparams"), f"env.{env_id}.hparams", arms
            )
            for arm in arms:
                arm_layers = layers[arm.name][env_id] = (
                    hparams.get(ALL_ARMS, {}),
                    arm.variant.settings if arm.variant else {},
                    hparams.get(arm.name, {}),
                    env_hparams.get(ALL_ARMS, {}),
                    env_hparams.get(arm.name, {}),
                )
                for seed_index, seed in enumerate(seeds):
                    runs.extend((seed_index, run) for run in self.expand(arm, env_id, steps, seed, arm_layers))
        self.check_backends(runs)
        # seeds outermost: an interrupted grid holds every arm and env for its first seeds
        ordered = tuple(run for _, run in sorted(runs, key=lambda pair: pair[0]))
        seeds_per_worker = self.seeds_per_worker(data.get("seeds_per_worker"))
        suite = Suite(
            self.path, name, description, self.text, tuple(envs), tuple(arms), tuple(seeds), ordered, seeds_per_worker
        )
        arm_settings = {arm.name: ArmSettings(arm, layers[arm.name]) for arm in arms}
        return SuiteSettings(suite, steps_by_env, arm_settings, data.get("tune", {}))

    def check_backends(self, runs: list[tuple[int, ResolvedRun]]) -> None:
        """envs were checked against gymnasium; a run on another backend must exist there too
        (envpool offers only the MuJoCo tasks, and only when its extra is installed)."""
        checked: set[tuple[str, str]] = set()
        for _, run in runs:
            pair = (run.spec.env_id, run.config.env_backend)
            if pair[1] == "gymnasium" or pair in checked:
                continue
            checked.add(pair)
            try:
                make_vector_env(pair[0], 1, pair[1]).close()
            except UsageError as exc:
                self.fail(f"hparams (env_backend = {pair[1]!r}, env {pair[0]})", str(exc))

    def suite_name(self, value: Any) -> str:
        name = self.string(value, "name")
        if not SUITE_NAME.fullmatch(name):
            self.fail("name", f"must be letters, digits, '_', '.' or '-' (it names the results folder), got {name!r}")
        return name

    def seeds(self, value: Any) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                self.fail("seeds", f"a count must be >= 1 (seeds = 10 means 0..9), got {value}")
            return list(range(value))
        if not isinstance(value, list):
            self.fail(
                "seeds", f"must be a list of distinct integers >= 0 or a count, got {_type_name(value)} {value!r}"
            )
        if not value:
            self.fail("seeds", "is empty, so the grid is empty; give a list of seeds or a count")
        seen: set[int] = set()
        for i, seed in enumerate(value):
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                self.fail(f"seeds[{i}]", f"must be an integer >= 0, got {seed!r}")
            if seed in seen:
                self.fail(f"seeds[{i}]", f"duplicate seed {seed}; seeds must be distinct")
            seen.add(seed)
        return value

    def envs(self, value: Any) -> list[str]:
        envs = self.string_list(value, "envs", "gymnasium env ids")
        for i, env_id in enumerate(envs):
            if env_id not in gym.registry:
                close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
                hint = f"did you mean {', '.join(close)}?" if close else "e.g. Hopper-v5, InvertedPendulum-v5"
                self.fail(f"envs[{i}]", f"unknown gymnasium env id {env_id!r}; {hint}")
            try:
                make_vector_env(env_id, 1).close()
            except UsageError as exc:
                self.fail(f"envs[{i}]", str(exc).removeprefix("env: "))
            except Exception as exc:  # noqa: BLE001 - a missing dependency of the env, for instance
                self.fail(f"envs[{i}]", f"{env_id!r} cannot be created: {type(exc).__name__}: {exc}".splitlines()[0])
        return envs

    def env_tables(self, table: dict[str, Any], envs: list[str]) -> dict[str, dict[str, Any]]:
        for env_id, env_table in table.items():
            if env_id not in envs:
                self.fail(f"env.{env_id}", f"not one of envs; allowed: {', '.join(envs)}")
            self.table(env_table, f"env.{env_id}")
            self.check_keys(env_table, f"env.{env_id}.", ENV_KEYS)
        return table

    # --- algorithms and variants ---------------------------------------------------------------------
    def base_algorithm(self, name: str, key: str) -> dict[str, Any]:
        """The config fields of a registered algorithm or import path."""
        try:
            cls = resolve_algorithm(name)
        except UsageError as exc:
            message = str(exc).removeprefix("algo: ")
            if "unknown algorithm" in message:
                variants = sorted(self.builtin) + sorted(self.data.get("variants", {}) or {})
                message = (
                    f"unknown algorithm or variant {name!r}; allowed: {', '.join(available_algorithms())}, "
                    f"the variants {', '.join(variants)}, or an import path module:Class"
                )
            self.fail(key, message)
        return _config_fields(cls.Config)  # type: ignore[arg-type]  # a class is hashable; mypy checks its instances

    def read_variants(self, table: dict[str, Any], in_suite: bool = False) -> dict[str, Variant]:
        variants: dict[str, Variant] = {}
        registered = set(available_algorithms())
        for name, body in table.items():
            key = f"variants.{name}"
            if not VARIANT_NAME.fullmatch(name):
                self.fail(key, "a variant name must be letters, digits, '_', '.', '+' or '-'")
            if in_suite and name in self.builtin:
                self.fail(key, f"{name!r} is a built-in variant; choose another name for your own")
            if name in registered or name == ALL_ARMS:
                self.fail(key, f"{name!r} is already an algorithm name; choose another name")
            self.check_keys(self.table(body, key), f"{key}.", VARIANT_KEYS)
            if "algo" not in body:
                self.fail(f"{key}.algo", "missing; name the algorithm this variant configures (e.g. trpo)")
            algorithm = self.string(body["algo"], f"{key}.algo")
            if algorithm in self.builtin or algorithm in table:
                self.fail(f"{key}.algo", f"{algorithm!r} is a variant; a variant configures a plain algorithm")
            fields = self.base_algorithm(algorithm, f"{key}.algo")
            settings = self.settings(
                self.table(body.get("hparams", {}), f"{key}.hparams"), f"{key}.hparams", fields, f"for {algorithm}"
            )
            description = self.string(body.get("description", ""), f"{key}.description")
            variants[name] = Variant(name, algorithm, description, settings)
        return variants

    def arms(self, value: Any, variants: dict[str, Variant]) -> list[Arm]:
        names = self.string_list(value, "algos", "algorithms or variants")
        arms = []
        for i, name in enumerate(names):
            if name == ALL_ARMS:
                self.fail(f"algos[{i}]", f"{ALL_ARMS!r} is reserved for [hparams.all]")
            variant = variants.get(name) or self.builtin.get(name)
            algorithm = variant.algorithm if variant else name
            fields = self.base_algorithm(algorithm, f"algos[{i}]")
            arms.append(Arm(name, algorithm, fields, variant))
        return arms

    # --- hyperparameters -----------------------------------------------------------------------------
    def hparams_tables(self, table: dict[str, Any], prefix: str, arms: list[Arm]) -> dict[str, dict[str, Setting]]:
        by_name = {arm.name: arm for arm in arms}
        tables: dict[str, dict[str, Setting]] = {}
        for target, body in table.items():
            key = f"{prefix}.{target}"
            body = self.table(body, key)
            if target == ALL_ARMS:
                # shared settings apply to the arms that have them (policy_lr: vpg and ppo), but a
                # key no arm knows is a typo
                fields: dict[str, Any] = {}
                for arm in arms:
                    fields = {**arm.config_fields, **fields}
                tables[target] = self.settings(body, key, fields, "for any algorithm in algos")
            elif target in by_name:
                tables[target] = self.settings(body, key, by_name[target].config_fields, f"for {target}")
            else:
                self.fail(key, f"no arm {target!r} in algos; allowed: {', '.join([ALL_ARMS, *by_name])}")
        return tables

    def settings(self, table: dict[str, Any], prefix: str, fields: dict[str, Any], scope: str) -> dict[str, Setting]:
        settings = {}
        for name, value in table.items():
            key = f"{prefix}.{name}"
            if name not in fields:
                self.fail(key, f"unknown setting {scope}; allowed: {', '.join(sorted(fields))}")
            settings[name] = self.setting(value, key, _is_list_field(fields[name]))
        return settings

    def setting(self, value: Any, key: str, list_field: bool) -> Setting:
        def check_scalar(item: Any, where: str, allow_list: bool) -> None:
            if isinstance(item, dict) or isinstance(item, (_dt.date, _dt.time, _dt.datetime)):
                self.fail(where, f"must be a value or a list of values (a grid axis), got {_type_name(item)}")
            if isinstance(item, list) and not allow_list:
                self.fail(where, "a grid axis holds single values, got a nested list")
            if isinstance(item, list):
                for j, element in enumerate(item):
                    check_scalar(element, f"{where}[{j}]", allow_list=False)

        if list_field:
            # the value itself is a list: [64, 64] is one value, [[64, 64], [256, 256]] an axis
            is_axis = isinstance(value, list) and bool(value) and all(isinstance(v, list) for v in value)
            if isinstance(value, list) and not is_axis and any(isinstance(v, list) for v in value):
                self.fail(key, "mixes lists and single values; write one list ([64, 64]) or a list of lists (an axis)")
        else:
            is_axis = isinstance(value, list)
        if not is_axis:
            check_scalar(value, key, allow_list=list_field)
            return Setting(key, (value,), False)
        if not value:
            self.fail(key, "is an empty list, so the grid is empty; give at least one value")
        seen = []
        for i, item in enumerate(value):
            check_scalar(item, f"{key}[{i}]", allow_list=list_field)
            if item in seen:
                self.fail(f"{key}[{i}]", f"duplicate value {item!r} in a grid axis")
            seen.append(item)
        return Setting(key, tuple(value), True)

    # --- expansion ----------------------------------------------------------------------------------
    def expand(
        self, arm: Arm, env_id: str, steps: int, seed: int, layers: tuple[dict[str, Setting], ...]
    ) -> list[ResolvedRun]:
        merged = merge_layers(arm, layers)
        axes = sorted(k for k, s in merged.items() if s.is_axis)
        fixed = {k: s.values[0] for k, s in merged.items() if not s.is_axis}
        runs = []
        for point in itertools.product(*(merged[k].values for k in axes)):
            overrides = {**fixed, **dict(zip(axes, point))}
            label = arm.name
            if axes:
                label += "[" + ",".join(f"{k}={_format_value(v)}" for k, v in zip(axes, point)) + "]"
            spec = RunSpec(
                algorithm=arm.algorithm, env_id=env_id, steps=steps, seed=seed, overrides=overrides, label=label
            )
            runs.append(self.resolve(spec, merged))
        return runs

    def resolve(self, spec: RunSpec, merged: dict[str, Setting]) -> ResolvedRun:
        try:
            return resolve(spec)
        except UsageError as exc:
            message = str(exc)
            field_name, _, rest = message.partition(": ")
            if field_name in merged:
                self.fail(merged[field_name].key_path, rest)
            self.fail(f"hparams for {spec.arm} on {spec.env_id}", message)
