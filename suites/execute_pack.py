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
    on_end: Callable[[int, dict[str, Any] | Exception], None] | None = None,
    on_checkpoint: Callable[[int, Path], None] | None = None,
) -> list[dict[str, Any] | Exception]:
    """Execute runs that differ only by seed as one lockstep pack (algos/lockstep_trainer.py),
    each into its own folder, exactly as :func:`execute_run` would execute it alone: the same
    files and, on the CPU, the same numbers. Returns each run's result record, or the exception
    that kept it from recording one (a UsageError, such as an unusable folder); one run's end
    never ends another's. A run's result.json is written as soon as it ends (a diverged seed's
    while the others go on), and `on_end(k, end)` hears of it then; `on_checkpoint(k, path)` hears
    of each checkpoint run k has written, once it is complete."""
    executions: list[RunExecution | None] = []
    ends: dict[int, dict[str, Any] | Exception] = {}

    def end(k: int, value: dict[str, Any] | Exception) -> None:
        ends[k] = value
        if on_end is not None:
            on_end(k, value)

    for k, (run, folder) in enumerate(zip(runs, folders)):
        callback = None if on_iteration is None else functools.partial(on_iteration, k)
        saved = None if on_checkpoint is None else functools.partial(on_checkpoint, k)
        try:
            executions.append(RunExecution(run, folder, callback, saved))
        except Exception as exc:  # noqa: BLE001 - this run's failure alone
            executions.append(None)
            end(k, exc)
    members: list[int] = []
    trainers: list[Trainer] = []
    for k, execution in enumerate(executions):
        if execution is None:
            continue
        try:
            trainers.append(execution.start())
            members.append(k)
        except Exception as exc:  # noqa: BLE001
            end(k, _ended(execution, exc))

    def member_ended(i: int, outcome: TrainingOutcome | BaseException) -> None:
        k = members[i]
        execution = executions[k]
        assert execution is not None  # members have executions
        end(k, _ended(execution, outcome))

    try:
        if trainers:
            LockstepTrainer(trainers).run(
                lambda i, row: executions[members[i]].record(row),  # type: ignore[union-attr]
                on_end=member_ended,
            )
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
