"""`trbench tune`: Optuna search over an algorithm's settings (by default TRPO's max_kl × damping).

One trial trains the candidate configuration on K seeds (× every env) and scores it by the mean
final deterministic evaluation return (on normalised scores when several envs are given). The
study lives in an Optuna storage (by default ``DIR/study.db``), so several worker processes, or
several machines, share it, and rerunning the same command continues it to N trials in total.
Every run is an ordinary run folder under ``DIR/runs/``, so ``trbench report DIR`` reads them.
The user guide is docs/tuning.md.

Trial bookkeeping, the part that makes resumption exact:

- a trial *counts* towards N once it is COMPLETE, PRUNED, or FAIL with a ``fail_reason`` user
  attribute (a configuration that cannot train is a finished, informative trial);
- a trial that was interrupted (Ctrl-C, a killed worker, a machine that stopped sending
  heartbeats) does not count: it is failed without a reason and its parameters are enqueued
  again, once, so the retry trains the same configuration on the same seeds and reuses the runs
  the interrupted attempt completed (run ids are stable);
- before sampling, a worker stops when the counted and in-flight trials reach N; two workers
  racing past that check are caught inside the trial, where the later one gives way (its trial
  is failed with a ``surplus`` attribute, runs nothing and does not count).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing
import os
import re
import socket
import sys
import tomllib
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trbench.base.errors import UsageError, check_output_folder
from trbench.base.processes import die_with_parent

# --- documented constants ---------------------------------------------------------------------------

# Trial runs use seeds TRIAL_SEED_BASE .. +K-1 and re-evaluation runs REEVALUATION_SEED_BASE ..
# +K2-1. Keeping the ranges disjoint is what makes re-evaluation an honest test: the study picked
# its best configuration on the trial seeds, so scoring it there again would reward overfitting
# to them. Every trial uses the same seeds (common random numbers): trials differ by their
# configuration only, which makes them comparable with few seeds.
TRIAL_SEED_BASE = 0
REEVALUATION_SEED_BASE = 10_000

# The search space when no --param is given (see the issue): max_kl spans two decades around the
# published 0.01-0.07; damping covers both anchors, 0.1 (Spinning Up, sb3-contrib) and 1e-5
# (rllab, garage), from nearly exact Fisher solves to strongly regularised ones.
DEFAULT_SPACE_TEXT = ("max_kl=1e-3:1e-1:log", "damping=1e-4:1:log")
LOG_FLAG = "log"

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
# Hyperband's successive-halving rate: Optuna's default, keeps a third of the trials per rung.
HYPERBAND_REDUCTION_FACTOR = 3
# Random trials before TPE / GP model the objective: Optuna's default; with two parameters ten
# points give the model a coarse picture of the space.
SAMPLER_STARTUP_TRIALS = 10

# How many of the best trials --reevaluate re-runs next to the default configuration.
DEFAULT_TOP_K = 3
# Seeds of tuned.toml when no --reevaluate count is given: the shipped suites' 10 seeds.
TUNED_SUITE_SEEDS = 10
# Two-sided Welch test level for "the best beats the default".
SIGNIFICANCE_LEVEL = 0.05
# Seed of every bootstrap, so best.json and reevaluation.json are reproducible.
BOOTSTRAP_SEED = 0

# SQLite locks the whole file per write; workers wait this long for it instead of failing.
SQLITE_BUSY_TIMEOUT_S = 60
# Running trials record a heartbeat every HEARTBEAT_INTERVAL_S (Optuna's on RDB storages, the
# same interface in trbench.tune_heartbeat on journal storages); one silent for HEARTBEAT_GRACE_S
# (a worker on another machine that died) is failed by the next worker that looks and its
# configuration enqueued again. The grace is four beats, so a worker held up by a busy storage
# for a while is not declared dead. A trial's process on this machine is checked directly (is
# its pid alive?), with no wait. Both are --heartbeat-interval / --heartbeat-grace.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120

STUDY_ATTR = "trbench_tune"
COUNTED_FAIL_ATTR = "fail_reason"
PRUNED_ATTR = "pruned_reason"
SURPLUS_ATTR = "surplus"
RETRY_ATTR = "retry_of"
WORKER_ATTR = "worker"
NAME_PATTERN = re.compile(r"[^A-Za-z0-9_.-]+")


# --- search space -----------------------------------------------------------------------------------


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

    def distribution(self):
        import optuna

        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def suggest(self, trial) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def _base_type(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def tunable_fields(config_cls: type) -> list[str]:
    return sorted(name for name, hint in typing.get_type_hints(config_cls).items() if _base_type(hint) in (int, float))


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
    base = _base_type(hints[name])
    if base not in (int, float):
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


def parse_space(texts: list[str], config_cls: type, where: str = "--param") -> list[ParamRange]:
    if not texts:
        names = [text.partition("=")[0] for text in DEFAULT_SPACE_TEXT]
        if not all(n in typing.get_type_hints(config_cls) for n in names):
            raise UsageError(
                f"--param: {config_cls.__name__} has no {' or '.join(names)}, so the default space does "
                f"not apply; give one with --param name=low:high[:log] (allowed: "
                f"{', '.join(tunable_fields(config_cls))})"
            )
        texts, where = list(DEFAULT_SPACE_TEXT), "default space"
    space = [parse_param(text, config_cls, where) for text in texts]
    names = [param.name for param in space]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"{where} {name}: given more than once; each setting may appear once")
    return space


# --- settings ---------------------------------------------------------------------------------------


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

    def first_run(self):
        """The trials' first run (trial seed 0 on the first env) at the searched settings' defaults."""
        from trbench.suites.run_spec import RunSpec, resolve

        return resolve(
            RunSpec(self.algorithm, self.envs[0], self.steps, TRIAL_SEED_BASE, self.overrides(self.envs[0], {}))
        )

    def stride(self) -> int:
        """Environment steps one run takes: whole iterations, so the budget rounded up."""
        return self.first_run().steps_taken

    def identity(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "arm": self.label,
            "envs": list(self.envs),
            "steps": self.steps,
            "seeds": self.trial_seeds,
            "space": [p.text for p in self.space],
            "fixed": _jsonable(self.fixed),
            "env_fixed": _jsonable(self.env_fixed),
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


# --- storage, study, sampler, pruner ------------------------------------------------------------------


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def open_storage(
    url: str, heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S, heartbeat_grace_s: int = HEARTBEAT_GRACE_S
):
    """An RDB URL (sqlite:///, postgresql://, mysql://) or ``journal:PATH`` for a journal file,
    either way with trial heartbeats whose stale trials are enqueued again (requeue_trial)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        from trbench.tune_heartbeat import HeartbeatJournalStorage

        path = url.removeprefix("journal:")
        if not path:
            raise UsageError("--storage: journal:PATH needs a file path, e.g. journal:results/tune/journal.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(
            JournalFileBackend(path),
            heartbeat_interval=heartbeat_interval_s,
            grace_period=heartbeat_grace_s,
            heartbeat_stale_trial_callback=requeue_trial,
        )
    if "://" not in url:
        raise UsageError(
            f"--storage: {url!r} is not a storage URL; use sqlite:///PATH, postgresql://..., "
            f"mysql://... or journal:PATH"
        )
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else None
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats; optuna is pinned
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval_s,
            grace_period=heartbeat_grace_s,
            heartbeat_stale_trial_callback=requeue_trial,
        )
    except Exception as exc:  # noqa: BLE001 - a driver that is not installed, a server that does not answer
        raise UsageError(f"--storage: cannot open {url!r}: {str(exc).splitlines()[0] or type(exc).__name__}") from None


def make_sampler(settings: TuneSettings, worker_index: int, trials_so_far: int):
    """Optuna 5's TPE is multivariate with the constant liar by default, which is what parallel
    workers need (running trials count as bad guesses, so workers do not pile onto one point)."""
    import optuna

    seed = None
    if settings.sampler_seed is not None:
        # distinct per worker, and per session, so a resumed study does not replay its first points
        seed = (settings.sampler_seed * 1_000_003 + worker_index * 7919 + trials_so_far) % (2**32)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)


def make_pruner(settings: TuneSettings, stride: int):
    import optuna

    warmup = stride if settings.pruner_warmup_steps is None else settings.pruner_warmup_steps
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=stride,
            max_resource=stride * settings.seeds * len(settings.envs),
            reduction_factor=HYPERBAND_REDUCTION_FACTOR,
        )
    median = optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials, n_warmup_steps=warmup)
    if settings.pruner == "median":
        return median
    return optuna.pruners.PatientPruner(median, patience=settings.patience)


def load_study(settings: TuneSettings, *, worker_index: int = 0, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats, PatientPruner and the matplotlib plots are marked experimental; we pin optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(settings.storage, settings.heartbeat_interval_s, settings.heartbeat_grace_s)
    stride = settings.stride()
    if create:
        study = optuna.create_study(
            storage=storage, study_name=settings.study_name, direction="maximize", load_if_exists=True
        )
        recorded = study.user_attrs.get(STUDY_ATTR)
        if recorded is None:
            study.set_user_attr(STUDY_ATTR, settings.identity())
        elif recorded != settings.identity():
            differ = [k for k in settings.identity() if recorded.get(k) != settings.identity()[k]]
            raise UsageError(
                f"--study-name: study {settings.study_name!r} in {settings.storage} was created with "
                f"different settings ({', '.join(differ)}: {[recorded.get(k) for k in differ]}); "
                f"resume it with the same command, or choose another --study-name or --out"
            )
    trials_so_far = len(optuna.load_study(study_name=settings.study_name, storage=storage).trials)
    return optuna.load_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(settings, worker_index, trials_so_far),
        pruner=make_pruner(settings, stride),
    )


# --- trial bookkeeping -------------------------------------------------------------------------------


def counts(trial) -> bool:
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and COUNTED_FAIL_ATTR in trial.user_attrs


def holds_slot(trial) -> bool:
    from optuna.trial import TrialState

    return counts(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


def retry_root(trial) -> int:
    return int(trial.user_attrs.get(RETRY_ATTR, trial.number))


def requeue_trial(study, trial) -> None:
    """Enqueue an interrupted trial's configuration again (called by whoever failed it, once)."""
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: retry_root(trial)})


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_local_trials(study) -> int:
    """Fail and re-enqueue RUNNING trials whose worker process on this machine is gone."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    recovered = 0
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR) or {}
        if owner.get("host") != host or _process_alive(int(owner.get("pid", -1))):
            continue
        try:
            # the state change is the lock: only the one process that makes it enqueues the retry
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError, RuntimeError, optuna.exceptions.StorageInternalError):
            continue
        requeue_trial(study, trial)
        recovered += 1
    return recovered


def study_progress(study) -> tuple[int, int, int]:
    """(counted trials, running trials, waiting trials)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return (
        sum(counts(t) for t in trials),
        sum(t.state == TrialState.RUNNING for t in trials),
        sum(t.state == TrialState.WAITING for t in trials),
    )


# --- the objective ------------------------------------------------------------------------------------


class TrialFailed(Exception):
    """A configuration that cannot be trained (an error that is not divergence); counts as a trial."""


class SurplusTrial(Exception):
    """This trial was created after the study already had N trials; it gives way, uncounted."""


def load_normalization_for(envs: tuple[str, ...]):
    from trbench.analysis.normalization import load_normalization

    table = load_normalization()
    missing = [env for env in envs if env not in table]
    if missing:
        raise UsageError(
            f"--env {missing[0]}: no normalisation constants (analysis/data/normalization.csv), which a "
            f"multi-env objective needs; allowed: {', '.join(sorted(table))}"
        )
    return {env: table[env] for env in envs}


class Objective:
    """Train a trial's configuration on every (seed, env) and return the mean score.

    Intermediate values go to step ``r * stride + s`` of run ``r`` (seed-major), so every trial's
    step ``t`` means the same amount of training and pruners compare like with like. The value at
    a step is the mean score of the runs so far, the current one counting with its latest
    evaluation; after each run (every seed, with one env) it is the mean of finished runs.
    """

    def __init__(self, settings: TuneSettings):
        self.settings = settings
        self.stride = settings.stride()
        self.constants = load_normalization_for(settings.envs) if settings.normalised else {}
        self.runs_dir = settings.out / "runs"

    def score(self, env_id: str, value: float) -> float:
        return float(self.constants[env_id].normalize(value)) if self.settings.normalised else float(value)

    def claim(self, trial) -> None:
        study = trial.study
        trial.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
        ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and holds_slot(t)]
        if len(ahead) >= self.settings.trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"the study already has {self.settings.trials} trials")

    def __call__(self, trial) -> float:
        import optuna

        from trbench.base.run_folder import run_is_complete
        from trbench.suites.execute import RunPruned, execute_run
        from trbench.suites.run_spec import RunSpec, resolve

        s = self.settings
        self.claim(trial)
        params = {param.name: param.suggest(trial) for param in s.space}
        label = f"{s.label}[trial={retry_root(trial)}]"
        done_scores: list[float] = []
        seed_scores: list[float] = []
        returns: dict[str, list[float]] = {env: [] for env in s.envs}
        run_ids: list[str] = []
        last_run = s.seeds * len(s.envs) - 1
        for i, seed in enumerate(s.trial_seeds):
            env_scores = []
            for j, env_id in enumerate(s.envs):
                r = i * len(s.envs) + j
                run = resolve(RunSpec(s.algorithm, env_id, s.steps, seed, s.overrides(env_id, params), label=label))
                run_ids.append(run.run_id)
                trial.set_user_attr("run_ids", run_ids)
                folder = self.runs_dir / run.run_id
                pruned_at: list[int] = []

                def on_iteration(row: dict[str, Any], r=r, env_id=env_id, pruned_at=pruned_at) -> None:
                    if row.get("eval_return") is None or row["step"] >= self.stride:
                        return  # the last iteration's evaluation is reported as the run's result below
                    step = r * self.stride + row["step"]
                    trial.report(_mean(done_scores + [self.score(env_id, row["eval_return"])]), step)
                    if trial.should_prune():
                        pruned_at.append(step)
                        raise RunPruned(f"pruned by the tuner ({s.pruner} pruner) at trial step {step}")

                if run_is_complete(folder):
                    result = json.loads((folder / "result.json").read_text())
                else:
                    result = execute_run(run, folder, on_iteration=on_iteration)
                if pruned_at:
                    trial.set_user_attr(
                        PRUNED_ATTR, f"{s.pruner} pruner at trial step {pruned_at[0]} ({env_id}, seed {seed})"
                    )
                    raise optuna.TrialPruned(trial.user_attrs[PRUNED_ATTR])
                if result["status"] == "diverged":
                    reason = f"diverged: {env_id} seed {seed}: {result['error']}"
                    trial.set_user_attr(PRUNED_ATTR, reason)
                    trial.set_user_attr("diverged", True)
                    raise optuna.TrialPruned(reason)
                if result["status"] != "complete":
                    reason = f"run failed: {env_id} seed {seed}: {result['error']}"
                    trial.set_user_attr(COUNTED_FAIL_ATTR, reason)
                    raise TrialFailed(reason)
                returns[env_id].append(result["final_eval_return"])
                env_scores.append(self.score(env_id, result["final_eval_return"]))
                done_scores.append(env_scores[-1])
                trial.set_user_attr("final_eval_returns", returns)
                if r < last_run:
                    step = (r + 1) * self.stride
                    trial.report(_mean(done_scores), step)
                    if trial.should_prune():
                        reason = f"{s.pruner} pruner at trial step {step} (after {env_id}, seed {seed})"
                        trial.set_user_attr(PRUNED_ATTR, reason)
                        raise optuna.TrialPruned(reason)
            seed_scores.append(_mean(env_scores))
            trial.set_user_attr("seed_scores", seed_scores)
        return _mean(seed_scores)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


# --- workers --------------------------------------------------------------------------------------------


def work(settings: TuneSettings, worker_index: int = 0) -> None:
    """Run trials until the study has N counted ones; safe to run in several processes at once."""
    import optuna
    from optuna.trial import TrialState

    study = load_study(settings, worker_index=worker_index)
    objective = Objective(settings)
    mine: list = []
    while True:
        optuna.storages.fail_stale_trials(study)
        recover_dead_local_trials(study)
        counted, running, waiting = study_progress(study)
        if counted + running >= settings.trials and not waiting:
            return
        try:
            study.optimize(
                objective,
                n_trials=1,
                catch=(TrialFailed, SurplusTrial),
                callbacks=[lambda _study, trial: mine.append(trial), report_trial(settings)],
            )
        except KeyboardInterrupt:
            # optuna has failed the interrupted trial; this process owns it, so it re-enqueues it
            interrupted = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                if t.user_attrs.get(WORKER_ATTR, {}).get("pid") == os.getpid()
                and not counts(t)
                and SURPLUS_ATTR not in t.user_attrs
                and not _was_requeued(study, t)
            ]
            for trial in interrupted:
                requeue_trial(study, trial)
            raise
        if mine and SURPLUS_ATTR in mine[-1].user_attrs:
            return


def trial_line(settings: TuneSettings, study, trial) -> str | None:
    """What a finished trial gives a person watching: its outcome and value, its parameters, how
    long it took, and how far the study is with the time left at the pace so far. None for a
    trial that does not count (a surplus one, or one interrupted and enqueued again)."""
    from optuna.trial import TrialState

    from trbench.suites.progress import format_duration

    if SURPLUS_ATTR in trial.user_attrs or not counts(trial):
        return None
    if trial.state == TrialState.COMPLETE:
        outcome = f"complete, value {trial.value:.4g}"
    elif trial.state == TrialState.PRUNED:
        reported = trial.intermediate_values
        last = f", value {reported[max(reported)]:.4g} when pruned" if reported else ""
        outcome = f"pruned ({trial.user_attrs.get(PRUNED_ATTR, 'by the pruner')}){last}"
    else:
        outcome = f"failed ({trial.user_attrs[COUNTED_FAIL_ATTR]})"
    params = ", ".join(f"{name}={value:.4g}" for name, value in trial.params.items())
    took = format_duration(trial.duration.total_seconds()) if trial.duration else "?"
    finished = [t for t in study.get_trials(deepcopy=False) if counts(t) and t.duration is not None]
    counted = sum(counts(t) for t in study.get_trials(deepcopy=False))
    # the trials left, at the mean duration of the finished ones, shared by this machine's workers
    mean_s = sum(t.duration.total_seconds() for t in finished) / len(finished) if finished else None
    left = max(settings.trials - counted, 0)
    eta = format_duration(None if mean_s is None else left * mean_s / settings.workers)
    return f"trial {trial.number} {outcome}: {params}; took {took}; {counted}/{settings.trials} trials done, ETA {eta}"


def report_trial(settings: TuneSettings):
    """An Optuna callback that prints :func:`trial_line` for each trial this worker finishes."""

    def callback(study, trial) -> None:
        line = trial_line(settings, study, trial)
        if line is not None:
            print(line, flush=True)

    return callback


def _was_requeued(study, trial) -> bool:
    root = retry_root(trial)
    return any(
        t.number > trial.number and t.user_attrs.get(RETRY_ATTR) == root for t in study.get_trials(deepcopy=False)
    )


def _worker_process(data: dict[str, Any], worker_index: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    import torch

    from trbench.algos.library_warnings import silence_env_building_warnings

    torch.set_num_threads(1)
    silence_env_building_warnings()  # the command built every env once and showed their warnings
    with contextlib.suppress(KeyboardInterrupt):
        work(TuneSettings.from_worker(data), worker_index)


def run_workers(settings: TuneSettings) -> None:
    if settings.workers == 1:
        work(settings)
        return
    from trbench.suites.executors import SINGLE_THREAD_ENV, environment_set_to

    context = multiprocessing.get_context("spawn")
    with environment_set_to(SINGLE_THREAD_ENV):
        processes = [
            context.Process(
                target=_worker_process, args=(settings.to_worker(), index, os.getpid()), name=f"trbench-tune-{index}"
            )
            for index in range(settings.workers)
        ]
        for process in processes:
            process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=30)
        raise
    crashed = [p for p in processes if p.exitcode not in (0, None)]
    if crashed:
        print(
            f"trbench tune: {len(crashed)} worker(s) exited with an error (codes "
            f"{', '.join(str(p.exitcode) for p in crashed)}); rerun the command to finish the study",
            file=sys.stderr,
        )


# --- outputs ---------------------------------------------------------------------------------------------


def trial_rows(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if SURPLUS_ATTR in t.user_attrs:
            continue
        reason = t.user_attrs.get(PRUNED_ATTR) or t.user_attrs.get(COUNTED_FAIL_ATTR) or ""
        if t.state.name == "FAIL" and not counts(t):
            reason = "interrupted; enqueued again"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "counted": counts(t),
                "value": t.value,
                **{f"params_{k}": v for k, v in t.params.items()},
                "seed_scores": json.dumps(t.user_attrs.get("seed_scores", [])),
                "retry_of": t.user_attrs.get(RETRY_ATTR, ""),
                "reason": reason,
                "datetime_start": t.datetime_start.isoformat() if t.datetime_start else "",
                "duration_s": t.duration.total_seconds() if t.duration else "",
                "run_ids": " ".join(t.user_attrs.get("run_ids", [])),
            }
        )
    return rows


def write_trials_csv(study, path: Path) -> None:
    from trbench.base.files import atomic_write_text

    rows = trial_rows(study)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def ranked_trials(study) -> list:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-t.value, t.number))


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    import numpy as np

    from trbench.analysis.stats import bootstrap_mean_ci

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    low, high = bootstrap_mean_ci(np.asarray(values), np.random.default_rng(BOOTSTRAP_SEED))
    return mean, float(low), float(high)


def best_record(settings: TuneSettings, study) -> dict[str, Any] | None:
    ranked = ranked_trials(study)
    if not ranked:
        return None
    best = ranked[0]
    scores = best.user_attrs.get("seed_scores", [])
    _, low, high = mean_ci(scores) if scores else (None, None, None)
    counted, _, _ = study_progress(study)
    return {
        "study_name": settings.study_name,
        "storage": settings.storage,
        "algorithm": settings.algorithm,
        "envs": list(settings.envs),
        "steps": settings.steps,
        "objective": settings.objective_name(),
        "trial": best.number,
        "params": dict(best.params),
        "value": best.value,
        "ci": {
            "low": low,
            "high": high,
            "confidence": 0.95,
            "method": "bootstrap over trial seeds",
            "seeds": settings.trial_seeds,
        },
        "seed_scores": scores,
        "final_eval_returns": best.user_attrs.get("final_eval_returns", {}),
        "fixed_settings": _jsonable(settings.fixed),
        "trials_counted": counted,
        "note": "the CI is over the seeds the study selected on, so it is optimistic; --reevaluate scores the "
        "best configurations on fresh seeds",
    }


def write_figures(settings: TuneSettings, study, folder: Path) -> list[str]:
    """History, contour of the first two parameters, slices, importances (PDF and PNG each).
    Returns the notes of figures that could not be drawn (too few trials, one parameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in settings.space]
    target_name = "normalised score" if settings.normalised else "final eval return"
    figures = {
        "history": lambda: plots.plot_optimization_history(study, target_name=target_name),
        "slices": lambda: plots.plot_slice(study, params=names, target_name=target_name),
        "importances": lambda: plots.plot_param_importances(study, params=names),
    }
    if len(names) >= 2:
        figures[f"contour_{names[0]}_{names[1]}"] = lambda: plots.plot_contour(
            study, params=names[:2], target_name=target_name
        )
    notes = [] if len(names) >= 2 else ["contour: skipped, the space has one parameter"]
    for name, draw in figures.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            try:
                axes = draw()
            except Exception as exc:  # noqa: BLE001 - a figure Optuna cannot draw yet must not lose the others
                notes.append(f"{name}: skipped, {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 6.0), max(figure.get_size_inches()[1], 4.0))
        for suffix in ("pdf", "png"):
            tmp = folder / f".{name}.{suffix}.tmp"
            figure.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
            os.replace(tmp, folder / f"{name}.{suffix}")
        plt.close(figure)
    return notes


def suite_name(text: str) -> str:
    name = NAME_PATTERN.sub("-", text).strip("-.") or "tuned"
    return name if name[0].isalnum() else f"t{name}"


def tuned_suite_text(
    settings: TuneSettings, params: dict[str, Any], seeds: list[int], name: str, description: str, header: str
) -> str:
    import tomli_w

    data: dict[str, Any] = {
        "name": name,
        "description": description,
        "steps": settings.steps,
        "seeds": seeds,
        "envs": list(settings.envs),
        "algos": [settings.algorithm],
    }
    hparams = {**_jsonable(settings.fixed), **params}
    if hparams:
        data["hparams"] = {settings.algorithm: hparams}
    env_tables = {
        env: {"hparams": {settings.algorithm: _jsonable(values)}}
        for env, values in settings.env_fixed.items()
        if values
    }
    if env_tables:
        data["env"] = env_tables
    return header + tomli_w.dumps(data)


def write_outputs(settings: TuneSettings, study) -> dict[str, Any] | None:
    from trbench.base.files import atomic_write_json, atomic_write_text

    out = settings.out
    write_trials_csv(study, out / "trials.csv")
    best = best_record(settings, study)
    if best is None:
        return None
    notes = write_figures(settings, study, out / "figures")
    best["figures_skipped"] = notes
    if (out / "reevaluation.json").exists():
        previous = json.loads((out / "reevaluation.json").read_text())
        if previous.get("best_trial") == best["trial"]:
            best["reevaluation"] = previous["summary"]
    atomic_write_json(out / "best.json", best)
    seeds = [REEVALUATION_SEED_BASE + i for i in range(settings.reevaluate or TUNED_SUITE_SEEDS)]
    header = (
        f"# The best configuration of study {settings.study_name!r} (trial {best['trial']}, "
        f"{settings.objective_name()} {best['value']:.4g}).\n"
        f"# Seeds start at {REEVALUATION_SEED_BASE}: fresh seeds, disjoint from the ones the study tuned on.\n"
        f"# Run it with: trbench run {out / 'tuned.toml'}\n"
    )
    text = tuned_suite_text(
        settings,
        best["params"],
        seeds,
        suite_name(f"{settings.study_name}-tuned"),
        f"{settings.label} with the settings tuned by study {settings.study_name}",
        header,
    )
    atomic_write_text(out / "tuned.toml", text)
    return best


# --- re-evaluation ------------------------------------------------------------------------------------------


def reevaluate(settings: TuneSettings, study, stream) -> dict[str, Any] | None:
    """Re-run the top-k trials' configurations and the default one on K2 fresh seeds."""
    import numpy as np

    from trbench.analysis.stats import probability_of_improvement, welch_test
    from trbench.base.files import atomic_write_json, atomic_write_text
    from trbench.suites.grid import load_suite
    from trbench.suites.runner import run_suite

    ranked = ranked_trials(study)[: settings.top_k]
    if not ranked:
        return None
    folder = settings.out / "reevaluation"
    seeds = [REEVALUATION_SEED_BASE + i for i in range(settings.reevaluate)]
    arms = {f"tuned-{rank}": dict(t.params) for rank, t in enumerate(ranked, start=1)}
    arms["default"] = {}
    variants = {
        name: {
            "algo": settings.algorithm,
            "description": (f"trial {ranked[int(name[6:]) - 1].number}" if name != "default" else "default settings"),
            "hparams": {**_jsonable(settings.fixed), **params},
        }
        for name, params in arms.items()
    }
    for body in variants.values():
        if not body["hparams"]:
            del body["hparams"]
    import tomli_w

    data: dict[str, Any] = {
        "name": suite_name(f"{settings.study_name}-reevaluation"),
        "description": "top trials and the default configuration on fresh seeds",
        "steps": settings.steps,
        "seeds": seeds,
        "envs": list(settings.envs),
        "algos": list(arms),
        "variants": variants,
    }
    env_tables = {
        env: {"hparams": {name: _jsonable(values) for name in arms}}
        for env, values in settings.env_fixed.items()
        if values
    }
    if env_tables:
        data["env"] = env_tables
    suite_file = settings.out / "reevaluation.toml"
    atomic_write_text(
        suite_file,
        "# Written by trbench tune --reevaluate; rerunning it resumes the re-evaluation.\n" + tomli_w.dumps(data),
    )
    suite = load_suite(suite_file)
    run_suite(suite, folder, workers=settings.workers, executor="local", address=None, redo_failed=True, stream=stream)

    constants = load_normalization_for(settings.envs) if settings.normalised else {}
    per_arm: dict[str, dict[int, list[float]]] = {name: {} for name in arms}
    failures: dict[str, int] = {name: 0 for name in arms}
    for run in suite.runs:
        path = folder / "runs" / run.run_id / "result.json"
        result = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
        arm = run.spec.arm
        if result.get("status") != "complete":
            failures[arm] += 1
            continue
        value = result["final_eval_return"]
        if constants:
            value = float(constants[run.spec.env_id].normalize(value))
        per_arm[arm].setdefault(run.spec.seed, []).append(value)
    what = "normalised score, envs averaged per seed" if settings.normalised else "final eval return"
    summary: dict[str, Any] = {"seeds": seeds, "objective": f"mean {what} over fresh seeds", "arms": {}}
    samples = {}
    for name in arms:
        # a seed counts only when every env of it completed, so the envs weigh alike in each score
        scores = [_mean(v) for v in per_arm[name].values() if len(v) == len(settings.envs)]
        samples[name] = scores
        mean, low, high = mean_ci(scores) if scores else (None, None, None)
        summary["arms"][name] = {
            "params": arms[name],
            "trial": ranked[int(name[6:]) - 1].number if name != "default" else None,
            "study_value": ranked[int(name[6:]) - 1].value if name != "default" else None,
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "n": len(scores),
            "runs_not_complete": failures[name],
        }
    best, default = samples["tuned-1"], samples["default"]
    test = welch_test(best, default) if best and default else None
    pvalue = None if test is None or math.isnan(test.pvalue) else test.pvalue
    significant = bool(pvalue is not None and pvalue < SIGNIFICANCE_LEVEL and _mean(best) > _mean(default))
    if pvalue is None:
        verdict = "inconclusive: too few complete runs (or no spread) for a test"
    elif significant:
        verdict = (
            f"the best configuration beats the default significantly (Welch p = {pvalue:.3g} < {SIGNIFICANCE_LEVEL})"
        )
    else:
        verdict = (
            f"no significant difference between the best and the default configuration "
            f"(Welch p = {pvalue:.3g}, level {SIGNIFICANCE_LEVEL})"
        )
    summary.update(
        best_vs_default={
            "welch_t": None if test is None else test.statistic,
            "pvalue": pvalue,
            "level": SIGNIFICANCE_LEVEL,
            "significant": significant,
            "probability_of_improvement": float(probability_of_improvement(np.asarray(best), np.asarray(default)))
            if best and default
            else None,
            "verdict": verdict,
        }
    )
    atomic_write_json(settings.out / "reevaluation.json", {"best_trial": ranked[0].number, "summary": summary})
    return summary


# --- command line -------------------------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="tune an algorithm's settings with Optuna (default: TRPO's max_kl and damping)",
        description="Search an algorithm's settings with Optuna: each trial trains on K seeds (x every env) and is "
        "scored by the mean final evaluation return (normalised scores with several envs). Resumable "
        "(rerun the same command), parallel (--workers, or several machines on one --storage). "
        "See docs/tuning.md.",
    )
    p.add_argument("--algo", default=None, help="algorithm to tune: trpo (default), npg, vpg, ppo or module:Class")
    p.add_argument(
        "--env",
        dest="envs",
        action="append",
        default=[],
        metavar="ENV",
        help="gymnasium env id; repeat for a multi-env objective on normalised scores",
    )
    p.add_argument(
        "--trials", type=_positive_int("--trials"), default=None, help="trials in total, resumptions included"
    )
    p.add_argument(
        "--seeds",
        type=_positive_int("--seeds"),
        default=None,
        help=f"seeds per trial, {TRIAL_SEED_BASE}..K-1 (default 3)",
    )
    p.add_argument("--steps", type=_positive_int("--steps"), default=None, help="environment steps per run")
    p.add_argument(
        "--param",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH[:log]",
        help="a setting to search; repeatable (default: max_kl=1e-3:1e-1:log and damping=1e-4:1:log)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a setting for every trial (and for the default configuration); repeatable",
    )
    p.add_argument(
        "--suite",
        type=Path,
        default=None,
        help="suite file giving envs, steps and fixed settings, and a [tune] table (see docs/tuning.md)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: sqlite:///PATH, postgresql://..., mysql://... or journal:PATH (default: sqlite in --out)",
    )
    p.add_argument("--study-name", default=None, help="study name in the storage (default: ALGO-ENVS)")
    p.add_argument(
        "--workers",
        type=_positive_int("--workers"),
        default=1,
        help="worker processes sharing the study on this machine (default 1)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=_positive_int("--heartbeat-interval"),
        default=HEARTBEAT_INTERVAL_S,
        metavar="S",
        help=f"seconds between two heartbeats of a running trial (default {HEARTBEAT_INTERVAL_S})",
    )
    p.add_argument(
        "--heartbeat-grace",
        type=_positive_int("--heartbeat-grace"),
        default=HEARTBEAT_GRACE_S,
        metavar="S",
        help=f"seconds without a heartbeat after which a running trial's worker counts as dead "
        f"and the trial is retried (default {HEARTBEAT_GRACE_S})",
    )
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        default=DEFAULT_PRUNER,
        help=f"patient: median rule after {PRUNER_PATIENCE} reports without improvement (default); "
        "median; hyperband; none",
    )
    p.add_argument(
        "--pruner-startup-trials",
        type=_positive_int("--pruner-startup-trials", 0),
        default=PRUNER_STARTUP_TRIALS,
        help=f"trials that finish before the median rule applies (default {PRUNER_STARTUP_TRIALS})",
    )
    p.add_argument(
        "--pruner-warmup-steps",
        type=_positive_int("--pruner-warmup-steps", 0),
        default=None,
        help="trial steps before a trial can be pruned (default: one run, so never before a first result)",
    )
    p.add_argument(
        "--patience",
        type=_positive_int("--patience", 0),
        default=PRUNER_PATIENCE,
        help=f"reports without improvement before the patient pruner may prune (default {PRUNER_PATIENCE})",
    )
    p.add_argument(
        "--sampler", choices=SAMPLERS, default="tpe", help="tpe (default; multivariate with constant liar), random, gp"
    )
    p.add_argument(
        "--sampler-startup-trials",
        type=_positive_int("--sampler-startup-trials", 0),
        default=SAMPLER_STARTUP_TRIALS,
        help=f"random trials before TPE/GP model the objective (default {SAMPLER_STARTUP_TRIALS})",
    )
    p.add_argument(
        "--sampler-seed",
        type=_positive_int("--sampler-seed", 0),
        default=None,
        help="seed of the sampler (default: unseeded)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/tune-STUDY_NAME)")
    p.add_argument(
        "--reevaluate",
        type=_positive_int("--reevaluate", 0),
        default=0,
        metavar="K2",
        help=f"re-run the top-k and the default configuration on K2 fresh seeds "
        f"({REEVALUATION_SEED_BASE}..) and test best vs default",
    )
    p.add_argument(
        "--top-k",
        type=_positive_int("--top-k"),
        default=DEFAULT_TOP_K,
        help=f"configurations --reevaluate re-runs (default {DEFAULT_TOP_K})",
    )
    p.set_defaults(func=run_tune)


def _positive_int(option: str, minimum: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


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


TUNE_KEYS = ("algo", "trials", "seeds", "params")


def read_suite_input(path: Path, algo: str | None) -> _SuiteInput:
    """A suite file's envs, steps and the settings it gives one arm, plus its [tune] table."""
    from trbench.suites.grid import parse_suite

    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read suite file: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: malformed TOML: {str(exc).splitlines()[0]}") from None
    tune = data.pop("tune", {})
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
    suite = parse_suite(path, text, data)
    arm_names = [arm.name for arm in suite.arms]
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
    arm = next(a for a in suite.arms if a.name == wanted)
    result.algorithm, result.arm = arm.algorithm, arm.name
    result.envs = list(suite.envs)
    first_seed = suite.seeds[0]
    per_env: dict[str, dict[str, Any]] = {}
    for run in suite.runs:
        if run.spec.seed != first_seed or run.spec.arm.split("[")[0] != arm.name:
            continue
        if run.spec.env_id in per_env:
            raise UsageError(
                f"{path}: hparams for {arm.name}: a grid axis (a list value) cannot be tuned; "
                f"search it with tune.params instead"
            )
        per_env[run.spec.env_id] = {k: run.config.to_dict()[k] for k in run.spec.overrides}
        steps = run.spec.steps
        if result.steps not in (None, steps):
            raise UsageError(
                f"{path}: env.{run.spec.env_id}.steps: every env must have the same budget to be tuned together"
            )
        result.steps = steps
    shared = {
        k: v
        for k, v in next(iter(per_env.values())).items()
        if all(k in values and values[k] == v for values in per_env.values())
    }
    result.fixed = shared
    result.env_fixed = {env: {k: v for k, v in values.items() if k not in shared} for env, values in per_env.items()}
    return result


def build_settings(args) -> TuneSettings:
    """Validate everything before anything is written."""
    from trbench.algos.config import parse_set_arguments
    from trbench.algos.registry import resolve_algorithm
    from trbench.algos.rollout import make_vector_env
    from trbench.suites.run_spec import RunSpec, resolve

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
    seeds = args.seeds or suite.seeds or 3
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
    if not (storage.startswith("journal:") or "://" in storage):
        raise UsageError(
            f"--storage: {storage!r} is not a storage URL; use sqlite:///PATH, postgresql://..., "
            f"mysql://... or journal:PATH"
        )
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


def run_tune(args) -> int:
    from trbench.suites.run_spec import rounding_note

    settings = build_settings(args)
    if settings.normalised:
        load_normalization_for(settings.envs)
    if settings.storage != default_storage(settings.out):
        study = load_study(settings, create=True)  # a storage that cannot be opened leaves no folder behind
        settings.out.mkdir(parents=True, exist_ok=True)
    else:
        settings.out.mkdir(parents=True, exist_ok=True)
        study = load_study(settings, create=True)
    recover_dead_local_trials(study)
    counted, running, waiting = study_progress(study)
    space = ", ".join(p.text for p in settings.space)
    print(
        f"study {settings.study_name!r} in {settings.storage}: {counted}/{settings.trials} trials done; "
        f"{settings.objective_name()}; space {space}; {settings.workers} worker(s) -> {settings.out}",
        flush=True,
    )
    if note := rounding_note([settings.first_run()]):
        print(note, flush=True)
    run_workers(settings)
    study = load_study(settings)
    counted, running, _ = study_progress(study)
    best = write_outputs(settings, study)
    states = [t.state.name for t in study.get_trials(deepcopy=False) if counts(t)]
    print(
        f"{counted} trials counted: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
        f"{states.count('FAIL')} failed; {running} still running elsewhere",
        flush=True,
    )
    if best is None:
        print("trbench tune: no trial completed, so there is no best configuration; see trials.csv", file=sys.stderr)
        return 1
    ci = best["ci"]
    ci_text = f" (95% CI {ci['low']:.4g} to {ci['high']:.4g})" if ci["low"] is not None else ""
    print(
        f"best: trial {best['trial']}, {settings.objective_name()} {best['value']:.4g}{ci_text}, "
        f"{json.dumps(best['params'])}",
        flush=True,
    )
    if settings.reevaluate:
        summary = reevaluate(settings, study, sys.stdout)
        best = write_outputs(settings, study)
        for name, arm in summary["arms"].items():
            ci_text = f" [{arm['ci_low']:.4g}, {arm['ci_high']:.4g}]" if arm["ci_low"] is not None else ""
            mean = "n/a" if arm["mean"] is None else f"{arm['mean']:.4g}"
            print(f"  {name:>8}: mean {mean}{ci_text} over {arm['n']} fresh seed(s) {json.dumps(arm['params'])}")
        print(summary["best_vs_default"]["verdict"], flush=True)
    print(f"outputs: {settings.out}/trials.csv, best.json, figures/, tuned.toml", flush=True)
    return 0 if counted >= settings.trials else 1
