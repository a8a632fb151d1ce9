"""The Optuna storage a study lives in: its URL, and trial heartbeats on every kind of storage.

Optuna fails a RUNNING trial whose heartbeat has gone stale (its worker died) and hands it to the
storage's stale-trial callback, with which `trbench tune` enqueues the configuration again; but
of Optuna's storages only the RDB storage records heartbeats. :class:`HeartbeatJournalStorage`
implements the same heartbeat interface on a journal file, so the heartbeat thread of
``Study.optimize`` and ``optuna.storages.fail_stale_trials`` work on it unchanged.

A journal beat is a trial system attribute holding the beating machine's clock (``time.time()``),
and a worker judges staleness by its own clock: the machines sharing a journal file need clocks
that agree to well within the grace period, as NTP keeps them.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError

# the interface Optuna's RDB storage implements; its module is private, and optuna is pinned
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from trbench.base.errors import UsageError

from .trials import requeue_trial

JOURNAL_PREFIX = "journal:"
# SQLite locks the whole file per write; workers wait this long for it instead of failing.
SQLITE_BUSY_TIMEOUT_S = 60
# Running trials record a heartbeat every HEARTBEAT_INTERVAL_S (Optuna's on RDB storages, the
# same interface in HeartbeatJournalStorage on journal storages); one silent for HEARTBEAT_GRACE_S
# (a worker on another machine that died) is failed by the next worker that looks and its
# configuration enqueued again. The grace is four beats, so a worker held up by a busy storage
# for a while is not declared dead. A trial's process on this machine is checked directly (is
# its pid alive?), with no wait. Both are --heartbeat-interval / --heartbeat-grace.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
HEARTBEAT_ATTR = "trbench:heartbeat"


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def check_storage_url(url: str) -> None:
    """Refuse what is neither an RDB URL nor journal:PATH, before anything is written."""
    if not (url.startswith(JOURNAL_PREFIX) or "://" in url):
        raise UsageError(
            f"--storage: {url!r} is not a storage URL; use sqlite:///PATH, postgresql://..., "
            f"mysql://... or journal:PATH"
        )


def open_storage(
    url: str, heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S, heartbeat_grace_s: int = HEARTBEAT_GRACE_S
) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql://) or ``journal:PATH`` for a journal file,
    either way with trial heartbeats whose stale trials are enqueued again (requeue_trial)."""
    check_storage_url(url)
    if url.startswith(JOURNAL_PREFIX):
        path = url.removeprefix(JOURNAL_PREFIX)
        if not path:
            raise UsageError("--storage: journal:PATH needs a file path, e.g. journal:results/tune/journal.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(
            JournalFileBackend(path),
            heartbeat_interval=heartbeat_interval_s,
            grace_period=heartbeat_grace_s,
            heartbeat_stale_trial_callback=requeue_trial,
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
