"""What a study needs (:class:`TuneSettings`), built and checked from the command line and a suite file."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trbench.algos.registry import resolve_algorithm
from trbench.algos.rollout import make_vector_env
from trbench.algos.settings import parse_set_arguments
from trbench.base.errors import UsageError, check_output_folder
from trbench.suites.grid import load_suite_settings
from trbench.suites.run_spec import ResolvedRun, RunSpec, resolve

from .space import ParamRange, parse_space
from .storage import HEARTBEAT_GRACE_S, HEARTBEAT_INTERVAL_S, check_storage_url, default_storage

# Trial runs use seeds TRIAL_SEED_BASE .. +K-1 and re-evaluation runs REEVALUATION_SEED_BASE ..
# +K2-1. Keeping the ranges disjoint is what makes re-evaluation an honest test: the study picked
# its best configuration on the trial seeds, so scoring it there again would reward overfitting
# to them. Every trial uses the same seeds (common random numbers): trials differ by their
# configuration only, which makes them comparable with few seeds.
TRIAL_SEED_BASE = 0
REEVALUATION_SEED_BASE = 10_000
DEFAULT_TRIAL_SEEDS = 3

PRUNERS = ("patient", "median", "hyperband", "none")
SAMPLERS = ("tpe", "random", "gp")
# Median-style pruners on RL curves stop good but jittery trials (optuna/optuna#1447); the
# patient pruner only prunes when the median rule says so AND the trial has not improved for
# PRUNER_PATIENCE consecutive reports, so it is the default.
DEFAULT_PRUNER = "patient"
PRUNER_PATIENCE = 2
# Trials that finish before the median rule is used: fewer makes the median of a handful of
# noisy trials the bar, which prunes by luck. Optuna's own default.
PRUNER_STARTUP_TRIALS = 5
# Random trials before TPE / GP model the objective: Optuna's default; with two parameters ten
# points give the model a coarse picture of the space.
SAMPLER_STARTUP_TRIALS = 10
# How many of the best trials --reevaluate re-runs next to the default configuration.
DEFAULT_TOP_K = 3

NAME_PATTERN = re.compile(r"[^A-Za-z0-9_.-]+")
TUNE_KEYS = ("algo", "trials", "seeds", "params")


@dataclass(frozen=True)
class TuneSettings:
    """Everything a study needs; `identity()` is what a resumed study must agree on."""

    algorithm: str
    envs: tuple[str, ...]
    steps: int
    seeds: int
    space: tuple[ParamRange, ...]
    fixed: dict[str, Any]  # typed config values given with --set / the suite, for every env
    env_fixed: dict[str, dict[str, Any]]  # per-env values from a suite file's [env.<id>] tables
    trials: int
    out: Path
    storage: str
    study_name: str
    workers: int = 1
    pruner: str = DEFAULT_PRUNER
    pruner_startup_trials: int = PRUNER_STARTUP_TRIALS
    pruner_warmup_steps: int | None = None
    patience: int = PRUNER_PATIENCE
    sampler: str = "tpe"
    sampler_startup_trials: int = SAMPLER_STARTUP_TRIALS
    sampler_seed: int | None = None
    reevaluate: int = 0
    top_k: int = DEFAULT_TOP_K
    arm: str = ""
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S  # seconds between two heartbeats of a running trial
    heartbeat_grace_s: int = HEARTBEAT_GRACE_S  # seconds of silence after which a running trial is stale

    @property
    def label(self) -> str:
        return self.arm or self.algorithm

    @property
    def trial_seeds(self) -> list[int]:
        return [TRIAL_SEED_BASE + i for i in range(self.seeds)]

    @property
    def normalised(self) -> bool:
        return len(self.envs) > 1

    def overrides(self, env_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.fixed, **self.env_fixed.get(env_id, {}), **params}

    def first_run(self) -> ResolvedRun:
        """The trials' first run (trial seed 0 on the first env) at the searched settings' defaults;
        its `steps_taken` is the step unit of the pruners."""
        return resolve(
            RunSpec(self.algorithm, self.envs[0], self.steps, TRIAL_SEED_BASE, self.overrides(self.envs[0], {}))
        )

    def identity(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "arm": self.label,
            "envs": list(self.envs),
            "steps": self.steps,
            "seeds": self.trial_seeds,
            "space": [p.text for p in self.space],
            "fixed": jsonable(self.fixed),
            "env_fixed": jsonable(self.env_fixed),
            "objective": self.objective_name(),
        }

    def objective_name(self) -> str:
        what = "normalised score" if self.normalised else "final eval return"
        return f"mean {what} over {self.seeds} seed(s)" + (f" and {len(self.envs)} envs" if self.normalised else "")

    def to_worker(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data

    @classmethod
    def from_worker(cls, data: dict[str, Any]) -> TuneSettings:
        data = dict(data)
        data["space"] = tuple(ParamRange(**p) for p in data["space"])
        data["envs"] = tuple(data["envs"])
        data["out"] = Path(data["out"])
        return cls(**data)


def jsonable(value: Any) -> Any:
    """`value` as JSON and TOML hold it: tuples become lists, anything else unknown a string."""
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def suite_name(text: str) -> str:
    name = NAME_PATTERN.sub("-", text).strip("-.") or "tuned"
    return name if name[0].isalnum() else f"t{name}"


# --- a suite file's part -----------------------------------------------------------------------------


@dataclass
class _SuiteInput:
    envs: list[str] = field(default_factory=list)
    steps: int | None = None
    algorithm: str | None = None
    arm: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    env_fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: int | None = None
    seeds: int | None = None
    params: list[str] = field(default_factory=list)


def read_suite_input(path: Path, algo: str | None) -> _SuiteInput:
    """A suite file's envs, steps and the settings it gives one arm, plus its [tune] table."""
    suite_settings = load_suite_settings(path)
    tune = suite_settings.tune
    if not isinstance(tune, dict):
        raise UsageError(f"{path}: tune: must be a table")
    for key in tune:
        if key not in TUNE_KEYS:
            raise UsageError(f"{path}: tune.{key}: unknown key; allowed here: {', '.join(TUNE_KEYS)}")
    result = _SuiteInput()
    for key in ("trials", "seeds"):
        if key in tune:
            value = tune[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{path}: tune.{key}: must be an integer >= 1, got {value!r}")
            setattr(result, key, value)
    params = tune.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise UsageError(f"{path}: tune.params: must be a list of strings name=low:high[:log]")
    result.params = params
    arm_names = list(suite_settings.arms)
    wanted = algo or tune.get("algo")
    if wanted is None:
        if len(arm_names) != 1:
            raise UsageError(
                f"{path}: tune.algo: the suite lists {len(arm_names)} arms; name the one to tune "
                f"(one of {', '.join(arm_names)})"
            )
        wanted = arm_names[0]
    if wanted not in arm_names:
        raise UsageError(f"{path}: tune.algo: {wanted!r} is not in algos; allowed: {', '.join(arm_names)}")
    arm_settings = suite_settings.arms[wanted]
    result.algorithm, result.arm = arm_settings.arm.algorithm, arm_settings.arm.name
    result.envs = list(suite_settings.suite.envs)
    per_env: dict[str, dict[str, Any]] = {}
    for env_id in result.envs:
        if result.steps not in (None, suite_settings.steps[env_id]):
            raise UsageError(f"{path}: env.{env_id}.steps: every env must have the same budget to be tuned together")
        result.steps = suite_settings.steps[env_id]
        merged = arm_settings.merged(env_id)
        if any(setting.is_axis and len(setting.values) > 1 for setting in merged.values()):
            raise UsageError(
                f"{path}: hparams for {wanted}: a grid axis (a list value) cannot be tuned; "
                f"search it with tune.params instead"
            )
        per_env[env_id] = {name: setting.values[0] for name, setting in merged.items()}
    # a value every env agrees on is fixed for all of them, the rest stays per env
    shared = {
        k: v
        for k, v in next(iter(per_env.values())).items()
        if all(k in values and values[k] == v for values in per_env.values())
    }
    result.fixed = shared
    result.env_fixed = {env: {k: v for k, v in values.items() if k not in shared} for env, values in per_env.items()}
    return result


# --- the command line ---------------------------------------------------------------------------------


def build_settings(args: argparse.Namespace) -> TuneSettings:
    """Validate everything before anything is written."""
    suite = read_suite_input(args.suite, args.algo) if args.suite is not None else _SuiteInput()
    algorithm = suite.algorithm or args.algo or "trpo"
    arm = suite.arm
    cls = resolve_algorithm(algorithm)
    envs = args.envs or suite.envs
    if not envs:
        raise UsageError("--env: required; give at least one gymnasium env id, e.g. --env Hopper-v5")
    if len(set(envs)) != len(envs):
        raise UsageError(f"--env: each env may be given once, got {', '.join(envs)}")
    steps = args.steps or suite.steps
    if steps is None:
        raise UsageError("--steps: required (environment steps per run)")
    trials = args.trials or suite.trials
    if trials is None:
        raise UsageError("--trials: required (trials in total)")
    seeds = args.seeds or suite.seeds or DEFAULT_TRIAL_SEEDS
    if TRIAL_SEED_BASE + seeds > REEVALUATION_SEED_BASE:
        raise UsageError(
            f"--seeds: at most {REEVALUATION_SEED_BASE - TRIAL_SEED_BASE}, so trial seeds stay disjoint "
            f"from re-evaluation seeds"
        )
    space = parse_space(args.params or suite.params, cls.Config)
    given = parse_set_arguments(args.overrides)
    for param in space:
        if param.name in given:
            raise UsageError(f"--set {param.name}: also searched by --param; a setting is either fixed or tuned")
    fixed_raw = {**suite.fixed, **given}
    env_fixed: dict[str, dict[str, Any]] = {}
    fixed: dict[str, Any] = {}
    for env_id in envs:
        env_values = {k: v for k, v in suite.env_fixed.get(env_id, {}).items() if k not in given}
        overrides = {**suite.fixed, **env_values, **given}
        run = resolve(RunSpec(algorithm, env_id, steps, TRIAL_SEED_BASE, overrides))
        # a Discrete-action env would otherwise only fail inside the first trial, after the study exists
        make_vector_env(env_id, 1, run.config.env_backend).close()
        typed = run.config.to_dict()
        fixed = {k: typed[k] for k in fixed_raw}
        env_fixed[env_id] = {k: typed[k] for k in env_values}
        for param in space:
            for bound in (param.low, param.high):
                try:
                    resolve(RunSpec(algorithm, env_id, steps, TRIAL_SEED_BASE, {**overrides, param.name: bound}))
                except UsageError as exc:
                    raise UsageError(
                        f"--param {param.text}: bound {bound:g} is not allowed: {str(exc).partition(': ')[2] or exc}"
                    ) from None
    env_fixed = {k: v for k, v in env_fixed.items() if v}
    label = arm or algorithm
    study_name = args.study_name or suite_name(f"{label}-{'+'.join(envs)}")
    out = args.out or Path("results") / f"tune-{suite_name(study_name)}"
    check_output_folder(out)
    storage = args.storage or default_storage(out)
    check_storage_url(storage)
    if args.heartbeat_grace <= args.heartbeat_interval:
        raise UsageError(
            f"--heartbeat-grace: must be > --heartbeat-interval ({args.heartbeat_interval} s), got "
            f"{args.heartbeat_grace}, or live trials would be failed between two heartbeats"
        )
    return TuneSettings(
        algorithm=algorithm,
        envs=tuple(envs),
        steps=steps,
        seeds=seeds,
        space=tuple(space),
        fixed=fixed,
        env_fixed=env_fixed,
        trials=trials,
        out=out,
        storage=storage,
        study_name=study_name,
        workers=args.workers,
        pruner=args.pruner,
        pruner_startup_trials=args.pruner_startup_trials,
        pruner_warmup_steps=args.pruner_warmup_steps,
        patience=args.patience,
        sampler=args.sampler,
        sampler_startup_trials=args.sampler_startup_trials,
        sampler_seed=args.sampler_seed,
        reevaluate=args.reevaluate,
        top_k=args.top_k,
        arm=label if label != algorithm else "",
        heartbeat_interval_s=args.heartbeat_interval,
        heartbeat_grace_s=args.heartbeat_grace,
    )
