"""A waiting trial goes to one worker only (trbench.tune.trials.serialize_trial_pops)."""

from __future__ import annotations

import fcntl
import threading

import optuna
from optuna.trial import TrialState

from trbench.tune.trials import serialize_trial_pops


def _study(storage: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name="s", load_if_exists=True)


def test_taking_a_waiting_trial_waits_for_the_lock_and_hands_it_out_once(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    lock = tmp_path / ".trial-pop.lock"
    first, second = _study(storage), _study(storage)
    first.enqueue_trial({"x": 1.0})
    for study in (first, second):
        serialize_trial_pops(study, lock)

    taken: list[int] = []
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another worker is taking a trial
        asking = threading.Thread(target=lambda: taken.append(first.ask().number))
        asking.start()
        asking.join(timeout=1.0)
        assert asking.is_alive() and not taken  # it waits for the lock, however fast the machine
    asking.join(timeout=60)
    assert taken == [0]
    # the enqueued trial is RUNNING now: the other worker's study gets a new trial, not the same one
    assert second.ask().number == 1
    states = {t.number: t.state for t in first.get_trials(deepcopy=False)}
    assert states == {0: TrialState.RUNNING, 1: TrialState.RUNNING}
