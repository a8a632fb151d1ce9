"""Workers: processes that run trials until the study has its N, and what they print per trial."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from trbench.algos.library_warnings import silence_env_building_warnings
from trbench.base.processes import die_with_parent
from trbench.suites.executors import SINGLE_THREAD_ENV, environment_set_to
from trbench.suites.progress import format_duration

from .objective import Objective, SurplusTrial, TrialFailed
from .settings import TuneSettings
from .study import load_study
from .trials import (
    COUNTED_FAIL_ATTR,
    PRUNED_ATTR,
    SURPLUS_ATTR,
    WORKER_ATTR,
    counts,
    recover_dead_local_trials,
    requeue_trial,
    serialize_trial_pops,
    study_progress,
    was_requeued,
)

# the lock file, in the tune folder, that hands each waiting trial to one worker (trials.py)
TRIAL_POP_LOCK = ".trial-pop.lock"


def work(settings: TuneSettings, worker_index: int = 0) -> None:
    """Run trials until the study has N counted ones; safe to run in several processes at once."""
    study = load_study(settings, worker_index=worker_index)
    settings.out.mkdir(parents=True, exist_ok=True)
    serialize_trial_pops(study, settings.out / TRIAL_POP_LOCK)
    objective = Objective(settings)
    mine: list[FrozenTrial] = []
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
                and not was_requeued(study, t)
            ]
            for trial in interrupted:
                requeue_trial(study, trial)
            raise
        if mine and SURPLUS_ATTR in mine[-1].user_attrs:
            return


def trial_line(settings: TuneSettings, study: optuna.Study, trial: FrozenTrial) -> str | None:
    """What a finished trial gives a person watching: its outcome and value, its parameters, how
    long it took, and how far the study is with the time left at the pace so far. None for a
    trial that does not count (a surplus one, or one interrupted and enqueued again)."""
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
    durations = [
        t.duration.total_seconds() for t in study.get_trials(deepcopy=False) if counts(t) and t.duration is not None
    ]
    counted = sum(counts(t) for t in study.get_trials(deepcopy=False))
    # the trials left, at the mean duration of the finished ones, shared by this machine's workers
    mean_s = sum(durations) / len(durations) if durations else None
    left = max(settings.trials - counted, 0)
    eta = format_duration(None if mean_s is None else left * mean_s / settings.workers)
    return f"trial {trial.number} {outcome}: {params}; took {took}; {counted}/{settings.trials} trials done, ETA {eta}"


def report_trial(settings: TuneSettings) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback that prints :func:`trial_line` for each trial this worker finishes."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        line = trial_line(settings, study, trial)
        if line is not None:
            print(line, flush=True)

    return callback


def _worker_process(data: dict[str, Any], worker_index: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    torch.set_num_threads(1)
    silence_env_building_warnings()  # the command built every env once and showed their warnings
    with contextlib.suppress(KeyboardInterrupt):
        work(TuneSettings.from_worker(data), worker_index)


def run_workers(settings: TuneSettings) -> None:
    if settings.workers == 1:
        work(settings)
        return
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
