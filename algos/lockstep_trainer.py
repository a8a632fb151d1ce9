"""Training S runs that differ only by seed in one process, their updates as one batched
computation (:mod:`.lockstep`), each run's numbers bit-identical on the CPU to training it alone.

Every member is a full :class:`~.trainer.Trainer`, with its own envs, evaluation envs,
normalisers, random-number generator, loop state and checkpoints; :class:`LockstepTrainer` runs
the phases of :meth:`Trainer.iterate` for each member around one stacked update. So a member's
rollouts, evaluations, records and checkpoints are those of the lone code, and only the update is
shared.

Isolation: a member that diverges, or whose rollout, evaluation or record callback raises, ends
there with that exception as its outcome; the others go on, restacked without it (the stack is
written back to its members first, so nothing is lost). An exception inside the batched update
itself cannot be told apart by member and ends every member in that update. An interrupt
(KeyboardInterrupt, SystemExit) is not caught.

Members resumed from checkpoints taken at different iterations advance in turn, lowest iteration
first, and join one stack once they are level.

Fallback: an algorithm without a twin, or whose networks the twin cannot stack (it raises
ValueError when built), gives each member its own update, one after another: the same numbers,
at the speed of training the seeds one by one.

Timing: a record's ``rollout_time_s`` is the member's own rollout, its ``update_time_s`` its
share (1/S) of the batched update, and ``steps_per_second`` follows from the two, so the column
sums over a pack to what the worker did; ``wall_time_s`` is the time since the pack started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .base import OnPolicyAlgorithm
from .lockstep import LockstepAlgorithm, lockstep_class, stack_batches
from .rollout import to_batch
from .trainer import CollectedIteration, Trainer, TrainingOutcome


class LockstepTrainer:
    """Drives member trainers (same algorithm, settings, env and budget; any seeds) in lockstep."""

    def __init__(self, trainers: list[Trainer]):
        if not trainers:
            raise ValueError("a lockstep pack needs at least one member")
        first = trainers[0]
        for t in trainers[1:]:
            same = (t.algorithm_cls, t.config, t.env_id, t.total_steps) == (
                first.algorithm_cls,
                first.config,
                first.env_id,
                first.total_steps,
            )
            if not same:
                raise ValueError("lockstep members must differ by seed only (algorithm, settings, env and budget)")
        # without a twin (or with networks it cannot stack, found when it is built) each member
        # takes its own update, in turn: a pack is then as fast as its runs one after another
        self.twin = lockstep_class(first.algorithm_cls)
        self.trainers = trainers
        self.outcomes: dict[int, TrainingOutcome | BaseException] = {}
        self._on_end: Callable[[int, TrainingOutcome | BaseException], None] | None = None

    def run(
        self,
        on_record: Callable[[int, dict[str, Any]], None],
        on_end: Callable[[int, TrainingOutcome | BaseException], None] | None = None,
    ) -> list[TrainingOutcome | BaseException]:
        """Train every member to its end; `on_record(k, record)` takes member k's records as a
        lone run's callback would (a checkpoint written there sees the member's full state), and
        `on_end(k, outcome)` hears the moment member k ends, with its outcome or the exception
        that ended it. Returns each member's outcome or exception."""
        self._on_end = on_end
        live: list[int] = []
        for k, trainer in enumerate(self.trainers):
            try:
                trainer.begin()
                live.append(k)
            except Exception as exc:  # noqa: BLE001 - this member's failure, the others go on
                self.outcomes[k] = exc
        stack: LockstepAlgorithm | None = None
        stacked: list[int] = []
        while live:
            lowest = min(self.trainers[k].loop.iteration for k in live)
            group = [k for k in live if self.trainers[k].loop.iteration == lowest]
            collected: dict[int, CollectedIteration] = {}
            for k in group:
                try:
                    collected[k] = self.trainers[k].collect()
                except Exception as exc:  # noqa: BLE001
                    self._end(k, exc, live)
            group = [k for k in group if k in collected]
            if not group:
                continue
            if group != stacked and self.twin is not None:
                if stack is not None:
                    stack.store_state()
                try:
                    stack = self.twin([self._algorithm(k) for k in group])
                    stacked = group
                except ValueError:  # networks the stack cannot hold: every member on its own
                    self.twin, stack, stacked = None, None, []
            update_started = time.perf_counter()
            try:
                diagnostics, failed = self._update(stack, group, collected)
            except Exception as exc:  # noqa: BLE001 - the update is shared: every member in it ends
                for k in group:
                    self._end(k, exc, live)
                stack, stacked = None, []
                continue
            share = (time.perf_counter() - update_started) / len(group)
            state_stored = stack is None
            for i, (k, member_diagnostics) in enumerate(zip(group, diagnostics)):
                if i in failed:  # its own part of the update raised: it ends as it would alone
                    self._end(k, failed[i], live)
                    continue
                trainer = self.trainers[k]
                try:
                    trainer.sync_actor()
                    mine = collected[k]
                    record = trainer.complete_iteration(mine, member_diagnostics, mine.collected_at + share)
                    if trainer.checkpoint_due and not state_stored:
                        assert stack is not None
                        stack.store_state()  # the checkpoint pickles the member's optimiser state too
                        state_stored = True
                    on_record(k, record)
                    trainer.checkpoint_due = False
                    if trainer.finished:
                        trainer.conclude()
                        assert trainer.outcome is not None
                        self._end(k, trainer.outcome, live)
                except Exception as exc:  # noqa: BLE001
                    trainer.checkpoint_due = False
                    self._end(k, exc, live)
        return [self.outcomes[k] for k in range(len(self.trainers))]

    def _update(
        self, stack: LockstepAlgorithm | None, group: list[int], collected: dict[int, CollectedIteration]
    ) -> tuple[list[dict[str, float]], dict[int, Exception]]:
        """One update of every member in `group`: batched when stacked, else each on its own.
        Returns each member's diagnostics and, by place in `group`, the members whose own update
        raised (each on its own, or a twin's member-by-member part); the others' are valid."""
        first = self.trainers[group[0]]
        batches = [to_batch(collected[k].arrays, first.device, torch.float32) for k in group]
        if stack is None:
            diagnostics: list[dict[str, float]] = []
            failed: dict[int, Exception] = {}
            for i, (k, batch) in enumerate(zip(group, batches)):
                try:
                    diagnostics.append(self._algorithm(k).update(batch, progress=first.progress))
                except Exception as exc:  # noqa: BLE001 - this member's update alone
                    diagnostics.append({})
                    failed[i] = exc
            return diagnostics, failed
        diagnostics = stack.update(stack_batches(batches), progress=first.progress)
        stack.store_networks()
        return diagnostics, dict(stack.failed)

    def _algorithm(self, k: int) -> OnPolicyAlgorithm:
        algorithm = self.trainers[k].algorithm
        assert algorithm is not None  # built by begin()
        return algorithm

    def _end(self, k: int, outcome: TrainingOutcome | BaseException, live: list[int]) -> None:
        self.outcomes[k] = outcome
        if k in live:
            live.remove(k)
        if self._on_end is not None:
            self._on_end(k, outcome)

    def close(self) -> None:
        for trainer in self.trainers:
            trainer.close()
