"""Execute a lockstep pack: runs that differ only by seed, trained as one batched computation
(algos/lockstep_trainer.py), each into its own folder through the same :class:`RunExecution`
steps as a lone run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trbench.algos.lockstep_trainer import LockstepTrainer
from trbench.algos.trainer import Trainer, TrainingOutcome

from .execute import RunExecution
from .run_spec import ResolvedRun


def execute_pack(
    runs: list[ResolvedRun],
    folders: list[Path],
    on_iteration: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any] | Exception]:
    """Execute runs that differ only by seed as one lockstep pack (algos/lockstep_trainer.py),
    each into its own folder, exactly as :func:`execute_run` would execute it alone: the same
    files and, on the CPU, the same numbers. Returns each run's result record, or the exception
    that kept it from recording one (a UsageError, such as an unusable folder); one run's end
    never ends another's."""
    executions: list[RunExecution | None] = []
    ends: dict[int, dict[str, Any] | Exception] = {}
    for k, (run, folder) in enumerate(zip(runs, folders)):
        callback = None if on_iteration is None else functools.partial(on_iteration, k)
        try:
            executions.append(RunExecution(run, folder, callback))
        except Exception as exc:  # noqa: BLE001 - this run's failure alone
            executions.append(None)
            ends[k] = exc
    members: list[int] = []
    trainers: list[Trainer] = []
    for k, execution in enumerate(executions):
        if execution is None:
            continue
        try:
            trainers.append(execution.start())
            members.append(k)
        except Exception as exc:  # noqa: BLE001
            ends[k] = _ended(execution, exc)
    try:
        if trainers:
            outcomes = LockstepTrainer(trainers).run(lambda i, row: executions[members[i]].record(row))  # type: ignore[union-attr]
            for k, outcome in zip(members, outcomes):
                ends[k] = _ended(executions[k], outcome)  # type: ignore[arg-type]
    finally:
        for execution in executions:
            if execution is not None:
                execution.close()
    return [ends[k] for k in range(len(runs))]


def _ended(execution: RunExecution, outcome: TrainingOutcome | BaseException) -> dict[str, Any] | Exception:
    try:
        execution.ended(outcome)
    except Exception as exc:  # noqa: BLE001 - a UsageError: no result.json, the caller reports it
        return exc
    return execution.finish()
