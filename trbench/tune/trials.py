"""Trial bookkeeping, the part that makes resumption exact.

- a trial *counts* towards N once it is COMPLETE, PRUNED, or FAIL with a ``fail_reason`` user
  attribute (a configuration that cannot train is a finished, informative trial);
- a trial that was interrupted (Ctrl-C, a killed worker, a machine that stopped sending
  heartbeats) does not count: it is failed without a reason and its parameters are enqueued
  again, once, so the retry trains the same configuration on the same seeds and reuses the runs
  the interrupted attempt completed (run ids are stable);
- before sampling, a worker stops when the counted and in-flight trials reach N; two workers
  racing past that check are caught inside the trial, where the later one gives way (its trial
  is failed with a ``surplus`` attribute, runs nothing and does not count);
- a waiting (enqueued) trial goes to one worker of a machine only: see :func:`serialize_trial_pops`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

try:
    import fcntl
except ImportError:  # no advisory locks on this platform (Windows): pops stay as Optuna makes them
    fcntl = None  # type: ignore[assignment]

COUNTED_FAIL_ATTR = "fail_reason"
PRUNED_ATTR = "pruned_reason"
SURPLUS_ATTR = "surplus"
RETRY_ATTR = "retry_of"
WORKER_ATTR = "worker"


def counts(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and COUNTED_FAIL_ATTR in trial.user_attrs


def holds_slot(trial: FrozenTrial) -> bool:
    return counts(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


def retry_root(trial: FrozenTrial | optuna.Trial) -> int:
    return int(trial.user_attrs.get(RETRY_ATTR, trial.number))


def requeue_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue an interrupted trial's configuration again (called by whoever failed it, once)."""
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: retry_root(trial)})


def was_requeued(study: optuna.Study, trial: FrozenTrial) -> bool:
    root = retry_root(trial)
    return any(
        t.number > trial.number and t.user_attrs.get(RETRY_ATTR) == root for t in study.get_trials(deepcopy=False)
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_local_trials(study: optuna.Study) -> int:
    """Fail and re-enqueue RUNNING trials whose worker process on this machine is gone."""
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


def study_progress(study: optuna.Study) -> tuple[int, int, int]:
    """(counted trials, running trials, waiting trials)."""
    trials = study.get_trials(deepcopy=False)
    return (
        sum(counts(t) for t in trials),
        sum(t.state == TrialState.RUNNING for t in trials),
        sum(t.state == TrialState.WAITING for t in trials),
    )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `lock_path` for the block; released with the process, too."""
    with open(lock_path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def serialize_trial_pops(study: optuna.Study, lock_path: Path) -> None:
    """Make taking a waiting trial one step for every worker of this machine.

    Optuna takes an enqueued trial by reading the WAITING trials and then marking one RUNNING.
    Over SQLite the read takes no lock, so two processes can both read the same trial before
    either marks it, and both train it: seen in CI, where two workers trained a re-enqueued trial
    into the same run folders and each failed the other's attempt. A file lock in the tune
    folder around that step closes the window for the workers that share the folder.
    """
    take_waiting_trial: Callable[[], int | None] = study._pop_waiting_trial_id

    def take_one_at_a_time() -> int | None:
        with _exclusive(lock_path):
            return take_waiting_trial()

    # Optuna 5.0 (pinned) asks for the next trial through this method of the study
    study._pop_waiting_trial_id = take_one_at_a_time  # type: ignore[method-assign]
