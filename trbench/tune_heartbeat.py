"""Optuna's trial heartbeat on a journal storage, which records none of its own.

Optuna fails a RUNNING trial whose heartbeat has gone stale (its worker died) and hands it to the
storage's stale-trial callback, with which `trbench tune` enqueues the configuration again; but
of Optuna's storages only the RDB storage records heartbeats. This journal storage implements the
same heartbeat interface, so the heartbeat thread of ``Study.optimize`` and
``optuna.storages.fail_stale_trials`` work on it unchanged.

A beat is a trial system attribute holding the beating machine's clock (``time.time()``), and a
worker judges staleness by its own clock: the machines sharing a journal file need clocks that
agree to well within the grace period, as NTP keeps them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError

# the interface Optuna's RDB storage implements; its module is private, and optuna is pinned
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "trbench:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage whose running trials beat every `heartbeat_interval` seconds; a trial
    silent for `grace_period` seconds is stale."""

    def __init__(
        self,
        backend: BaseJournalBackend,
        heartbeat_interval: int,
        grace_period: int,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # a worker paused past the grace period finds its trial failed by another: it beats no more
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        # as on an RDB storage, a trial that never beat (its worker died at once) is never stale
        return [
            trial._trial_id
            for trial in running
            if now - trial.system_attrs.get(HEARTBEAT_ATTR, now) > self.grace_period
        ]

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback
