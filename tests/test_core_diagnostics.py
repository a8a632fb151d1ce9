"""The progress columns each algorithm writes are the ones algos/diagnostics.py documents, and the
update's phase hook measures nothing unless a recorder is installed."""

from __future__ import annotations

import pickle
import time

import pytest
import torch

from trbench.algos import diagnostics
from trbench.algos.config import TRPOConfig
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.algos.rollout import Batch
from trbench.algos.timing import PhaseRecorder, recording_phases, untimed
from trbench.algos.trainer import Trainer
from trbench.algos.trpo import TRPO

ONE_ITERATION = {
    "num_envs": 2,
    "steps_per_iteration": 64,
    "policy_hidden": (8, 8),
    "value_hidden": (8, 8),
    "critic_minibatch_size": 32,
    "eval_interval_steps": 0,
    "final_eval_episodes": 10,
}


def first_record(algo: str, **overrides) -> tuple[dict, Trainer]:
    cls = resolve_algorithm(algo)
    settings = ONE_ITERATION | ({"minibatch_size": 32} if algo == "ppo" else {}) | overrides
    trainer = Trainer(cls, cls.Config.from_overrides(settings), "InvertedPendulum-v5", 64, 0)
    records = list(trainer.iterate())
    trainer.close()
    assert len(records) == 1
    return records[0], trainer


def test_the_documented_list_covers_every_builtin_algorithm():
    assert set(diagnostics.COLUMNS) == set(BUILTIN)
    for columns in diagnostics.COLUMNS.values():
        assert set(columns) <= set(diagnostics.ALL) and all(columns.values())


@pytest.mark.parametrize("algo", sorted(BUILTIN))
def test_an_iteration_writes_exactly_the_documented_columns(algo):
    record, _ = first_record(algo)
    assert set(record) == set(diagnostics.COLUMNS[algo])


def test_the_batched_line_search_writes_the_same_columns():
    record, _ = first_record("trpo", linesearch_mode="batched")
    assert set(record) == set(diagnostics.COLUMNS["trpo"])


def test_the_default_hook_is_one_shared_empty_context():
    assert untimed("cg") is untimed("fvp")
    _, trainer = first_record("trpo")
    # nothing was installed on the instance, so a checkpoint pickles no timer
    assert "phase" not in vars(trainer.algorithm)
    assert pickle.loads(pickle.dumps(trainer.algorithm)).phase is untimed


def test_the_default_hook_reads_no_clock_and_allocates_nothing(monkeypatch):
    # what makes it free whatever the machine: one shared empty context, and no clock read
    # (about a microsecond per phase was measured on the loaded 2-core machine, against TRPO
    # updates of hundreds of milliseconds)
    def no_clock():
        raise AssertionError("the default hook read the clock")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    contexts = [untimed(name) for name in ("policy", "cg", "fvp", "linesearch", "critic")]
    assert all(context is contexts[0] for context in contexts)  # nothing made per phase
    for context in contexts:
        with context as entered:
            assert entered is None


def test_the_recorder_keeps_each_phase_time_without_its_nested_phases():
    now = [0.0]  # a clock the test moves: each product takes 2.5 ms, the solve around them none
    recorder = PhaseRecorder(clock=lambda: now[0])
    with recorder("cg"):
        for _ in range(3):
            with recorder("fvp"):
                now[0] += 0.0025
    assert recorder.entries == {"cg": 1, "fvp": 3}
    assert recorder.seconds["fvp"] >= 0.006 and 0 <= recorder.seconds["cg"] < recorder.seconds["fvp"]
    assert recorder.total() == pytest.approx(recorder.seconds["cg"] + recorder.seconds["fvp"])


def trpo_and_batch(mode: str):
    """A fresh TRPO (Fisher-vector products on half the batch) and a random batch, from seed 0."""
    config = TRPOConfig.from_overrides(
        {"steps_per_iteration": 256, "num_envs": 1, "critic_minibatch_size": 64, "policy_hidden": (8, 8)}
        | {"value_hidden": (8, 8), "linesearch_mode": mode, "fvp_subsample": 0.5}
    )
    torch.manual_seed(0)  # the networks' initialisation draws from the global stream
    generator = torch.Generator().manual_seed(0)
    algorithm = TRPO(config, 3, 2, torch.device("cpu"), generator)
    obs = torch.randn(256, 3, generator=generator)
    with torch.no_grad():
        actions, log_probs = algorithm.policy.act(obs, generator)
    values, advantages = torch.randn(256, generator=generator), torch.randn(256, generator=generator)
    return algorithm, Batch(obs, actions, log_probs, advantages, values + advantages, values)


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_a_recorded_trpo_update_names_its_phases_and_computes_the_same_step(mode):
    plain_algorithm, batch = trpo_and_batch(mode)
    plain = plain_algorithm.update(batch, progress=0.0)
    timed_algorithm, batch = trpo_and_batch(mode)
    with recording_phases(timed_algorithm) as recorder:
        timed = timed_algorithm.update(batch, progress=0.0)
    assert timed == plain
    for a, b in zip(plain_algorithm.state_dict().values(), timed_algorithm.state_dict().values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(recorder.entries) == {"policy", "fvp", "cg", "linesearch", "critic"}
    cg_iters = timed_algorithm.config.cg_iters
    assert recorder.entries["fvp"] == cg_iters + 1  # the CG's products and the one for s^T F s
    assert "phase" not in vars(timed_algorithm)  # the class's default shows through again
