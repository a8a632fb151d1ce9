"""The `trbench tune` subcommand: its options, and the study from start to outputs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from trbench.suites.run_spec import rounding_note

from .objective import load_normalization_for
from .outputs import write_outputs
from .reevaluate import reevaluate
from .settings import (
    DEFAULT_PRUNER,
    DEFAULT_TOP_K,
    DEFAULT_TRIAL_SEEDS,
    PRUNER_PATIENCE,
    PRUNER_STARTUP_TRIALS,
    PRUNERS,
    REEVALUATION_SEED_BASE,
    SAMPLER_STARTUP_TRIALS,
    SAMPLERS,
    TRIAL_SEED_BASE,
    build_settings,
)
from .storage import HEARTBEAT_GRACE_S, HEARTBEAT_INTERVAL_S, default_storage
from .study import load_study
from .trials import counts, recover_dead_local_trials, study_progress
from .workers import run_workers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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
        help=f"seeds per trial, {TRIAL_SEED_BASE}..K-1 (default {DEFAULT_TRIAL_SEEDS})",
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


def _positive_int(option: str, minimum: int = 1) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def run_tune(args: argparse.Namespace) -> int:
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
        assert summary is not None  # there is a best trial to re-evaluate
        best = write_outputs(settings, study)
        for name, arm in summary["arms"].items():
            ci_text = f" [{arm['ci_low']:.4g}, {arm['ci_high']:.4g}]" if arm["ci_low"] is not None else ""
            mean = "n/a" if arm["mean"] is None else f"{arm['mean']:.4g}"
            print(f"  {name:>8}: mean {mean}{ci_text} over {arm['n']} fresh seed(s) {json.dumps(arm['params'])}")
        print(summary["best_vs_default"]["verdict"], flush=True)
    print(f"outputs: {settings.out}/trials.csv, best.json, figures/, tuned.toml", flush=True)
    return 0 if counted >= settings.trials else 1
