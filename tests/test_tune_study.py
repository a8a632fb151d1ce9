"""`trbench tune` end to end on tiny budgets: trials, resumption, workers, pruning, divergence."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from trbench.analysis.load import load_results
from trbench.cli import main
from trbench.suites.grid import load_suite
from trbench.tune.settings import REEVALUATION_SEED_BASE
from trbench.tune.storage import default_storage, open_storage
from trbench.tune.trials import COUNTED_FAIL_ATTR, PRUNED_ATTR, RETRY_ATTR, WORKER_ATTR, counts

pytestmark = pytest.mark.slow  # every test here runs a study, which trains

ENV = "InvertedPendulum-v5"
STEPS = 1024  # two iterations of 512 steps: one run takes a couple of seconds on one core
# Runs of the tests that kill a worker mid-run: once a run has logged its first iteration, three
# more and an evaluation are left, so polling catches it unfinished even on a much faster machine.
KILLED_STEPS = 4 * 512
TINY = [
    "--set",
    "steps_per_iteration=512",
    "--set",
    "num_envs=4",
    "--set",
    "eval_interval_steps=0",
    "--set",
    "save_model=false",
    "--set",
    "critic_epochs=2",
]
STUDY = "tiny"


def tune_argv(out, trials, *extra, seeds=1, steps=STEPS):
    return [
        "tune",
        "--env",
        ENV,
        "--steps",
        str(steps),
        "--trials",
        str(trials),
        "--seeds",
        str(seeds),
        "--study-name",
        STUDY,
        "--sampler-seed",
        "0",
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


def study_of(out, storage=None):
    """The study, through its URL on SQLite (a storage with heartbeats would warn at the tests'
    own study.ask) or through trbench's journal storage, which optuna cannot open from a URL."""
    url = storage or default_storage(Path(out))
    return optuna.load_study(study_name=STUDY, storage=open_storage(url) if url.startswith("journal:") else url)


def counted(out):
    return [t for t in study_of(out).get_trials() if counts(t)]


def test_tiny_study_completes_n_trials_and_writes_every_output(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 3, "--pruner", "none", seeds=2)) == 0
    trials = counted(out)
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert 1e-3 <= t.params["max_kl"] <= 1e-1 and 1e-4 <= t.params["damping"] <= 1.0
        assert t.value == pytest.approx(sum(t.user_attrs["seed_scores"]) / 2)
        assert t.user_attrs["seed_scores"] == t.user_attrs["final_eval_returns"][ENV]  # one env: raw returns

    # every run of every trial is an ordinary complete run folder that the report layer reads
    loaded = load_results(out)
    assert len(loaded.runs) == 6 and set(loaded.runs.seed) == {0, 1} and loaded.excluded.empty
    assert sorted(loaded.runs.algo.unique()) == ["trpo[trial=0]", "trpo[trial=1]", "trpo[trial=2]"]

    best = json.loads((out / "best.json").read_text())
    top = max(trials, key=lambda t: t.value)
    assert best["trial"] == top.number and best["params"] == top.params and best["value"] == top.value
    assert best["ci"]["low"] <= best["value"] <= best["ci"]["high"]
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("number,state,counted,value,params_max_kl,params_damping")
    for name in ("history", "slices", "importances", "contour_max_kl_damping"):
        for suffix in ("pdf", "png"):
            assert (out / "figures" / f"{name}.{suffix}").stat().st_size > 0

    suite = load_suite(out / "tuned.toml")  # a valid suite file with the best configuration
    assert suite.envs == (ENV,) and min(suite.seeds) >= REEVALUATION_SEED_BASE
    assert {k: suite.runs[0].config.to_dict()[k] for k in top.params} == top.params
    assert suite.runs[0].config.steps_per_iteration == 512
    assert "best: trial" in capsys.readouterr().out


def test_resume_continues_to_n_in_total_and_retries_an_interrupted_trial(tmp_path):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 1)) == 0
    # a trial whose worker died mid-way (SIGKILL leaves it RUNNING): same machine, dead pid
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = study_of(out)
    interrupted = study.ask(
        {"max_kl": FloatDistribution(1e-3, 1e-1, log=True), "damping": FloatDistribution(1e-4, 1.0, log=True)}
    )
    interrupted.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": dead.pid})

    assert main(tune_argv(out, 3)) == 0
    trials = study_of(out).get_trials()
    assert len([t for t in trials if counts(t)]) == 3
    assert trials[interrupted.number].state == TrialState.FAIL and not counts(trials[interrupted.number])
    retry = [t for t in trials if t.user_attrs.get(RETRY_ATTR) == interrupted.number]
    assert len(retry) == 1 and counts(retry[0]) and retry[0].params == interrupted.params


@pytest.mark.slow
def test_rerunning_a_finished_study_adds_nothing_and_a_larger_n_adds_the_difference(tmp_path):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 2)) == 0
    assert main(tune_argv(out, 2)) == 0
    assert len(counted(out)) == 2 and len(study_of(out).get_trials()) == 2
    assert main(tune_argv(out, 3)) == 0
    assert len(counted(out)) == 3 and len(study_of(out).get_trials()) == 3


def test_resume_refuses_a_study_created_with_other_settings(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 1)) == 0
    capsys.readouterr()
    assert main(tune_argv(out, 1, "--param", "max_kl=1e-3:1e-1:log")) == 2
    err = capsys.readouterr().err
    assert "was created with different settings (space" in err and err.count("\n") == 1


def _fabricate_good_trials(out, steps_to_value, count):
    """Finished trials that scored far above anything a 1024-step run reaches, so a real trial
    falls below their median at every reported step."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study_of(out)
    distributions = {
        "max_kl": FloatDistribution(1e-3, 1e-1, log=True),
        "damping": FloatDistribution(1e-4, 1.0, log=True),
    }
    for i in range(count):
        study.add_trial(
            optuna.trial.create_trial(
                params={"max_kl": 0.01 + i * 1e-3, "damping": 0.1},
                distributions=distributions,
                value=1000.0,
                intermediate_values=dict(steps_to_value),
            )
        )


def test_median_pruner_prunes_a_bad_trial_after_its_first_seed(tmp_path):
    out = tmp_path / "tune"
    argv = tune_argv(out, 3, "--pruner", "median", "--pruner-startup-trials", "2", seeds=3)
    # create the study with one tiny trial-free call: trials=0 is not allowed, so build it through optuna
    out.mkdir()
    optuna.create_study(study_name=STUDY, storage=default_storage(out), direction="maximize")
    _fabricate_good_trials(out, {STEPS: 1000.0, 2 * STEPS: 1000.0}, 2)
    main(argv)
    trials = study_of(out).get_trials()
    pruned = trials[2]
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs[PRUNED_ATTR].startswith(f"median pruner at trial step {STEPS} (after {ENV}, seed 0)")
    assert list(pruned.intermediate_values) == [STEPS]
    assert len(pruned.user_attrs["run_ids"]) == 1  # seeds 1 and 2 never ran


def test_pruner_stops_a_run_at_an_evaluation_point(tmp_path):
    out = tmp_path / "tune"
    argv = tune_argv(
        out,
        3,
        "--pruner",
        "median",
        "--pruner-startup-trials",
        "2",
        "--pruner-warmup-steps",
        "0",
        "--set",
        "eval_interval_steps=512",
    )
    out.mkdir()
    optuna.create_study(study_name=STUDY, storage=default_storage(out), direction="maximize")
    _fabricate_good_trials(out, {512: 1000.0}, 2)
    main(argv)
    pruned = study_of(out).get_trials()[2]
    assert pruned.state == TrialState.PRUNED and "at trial step 512" in pruned.user_attrs[PRUNED_ATTR]
    result = json.loads((out / "runs" / pruned.user_attrs["run_ids"][0] / "result.json").read_text())
    assert result["status"] == "pruned" and result["error"].startswith("pruned by the tuner") and result["steps"] == 512
    from trbench.analysis.load import load_results

    excluded = load_results(out).excluded.set_index("run_id")
    assert excluded.loc[pruned.user_attrs["run_ids"][0], "status"] == "pruned"


def test_a_diverging_configuration_prunes_its_trial_with_the_reason(tmp_path, capsys):
    out = tmp_path / "tune"
    code = main(tune_argv(out, 2, "--algo", "plugins.broken:NaNPolicy", "--param", "policy_lr=1e-4:1e-3:log"))
    assert code == 1  # no trial completed, so there is no best configuration
    assert "no trial completed" in capsys.readouterr().err
    trials = counted(out)
    assert len(trials) == 2
    for t in trials:
        assert t.state == TrialState.PRUNED and t.user_attrs["diverged"] is True
        assert t.user_attrs[PRUNED_ATTR].startswith(f"diverged: {ENV} seed 0: non-finite")
    assert "diverged: " in (out / "trials.csv").read_text()
    assert not (out / "best.json").exists()


def test_a_configuration_that_errors_fails_its_trial_and_still_counts(tmp_path):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 2, "--algo", "plugins.broken:RaisingUpdate", "--param", "policy_lr=1e-4:1e-3:log")) == 1
    trials = counted(out)
    assert len(trials) == 2 and all(t.state == TrialState.FAIL for t in trials)
    assert "update exploded on purpose" in trials[0].user_attrs[COUNTED_FAIL_ATTR]


def _tune_process(out, trials, *extra, seeds=1, steps=STEPS):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = tune_argv(out, trials, *extra, seeds=seeds, steps=steps)
    return subprocess.Popen(
        [sys.executable, "-m", "trbench.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_workers_on_one_storage_finish_exactly_n_trials(tmp_path):
    out = tmp_path / "tune"
    process = _tune_process(out, 4, "--workers", "2")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    trials = study_of(out).get_trials()
    good = [t for t in trials if counts(t)]
    assert len(good) == 4
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in good}) == 2  # both workers ran trials
    assert len(load_results(out).runs) == 4


def _logged_rows(folder: Path) -> int:
    """Iterations an unfinished run has logged (0 once it has finished: its .partial is renamed)."""
    try:
        return max(len((folder / "progress.csv.partial").read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def _trial_in_its_first_run(out: Path, study):
    """A RUNNING trial whose first run (of two seeds) has logged an iteration and is still training.

    Killing then leaves at least the rest of that run and the whole second run undone: several
    iterations and two final evaluations, which no machine gets through between the last check
    here and the kill that follows it."""
    started = [folder for folder in (out / "runs").glob("*") if _logged_rows(folder) > 0]
    if not started:
        return None  # cheap file checks first; the storage is read only once there is a candidate
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_ids = trial.user_attrs.get("run_ids", [])
        if len(run_ids) == 1 and _logged_rows(out / "runs" / run_ids[0]) > 0:
            return trial
    return None


def _kill_mid_trial(process: subprocess.Popen, out: Path, storage: str | None = None):
    """SIGKILL the tune process (and its workers) once a trial is mid-run (its runs need
    KILLED_STEPS); returns that trial."""
    deadline = time.monotonic() + 240
    study = victim = None
    while victim is None:
        assert process.poll() is None, f"tune ended before a trial was mid-run:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, "no trial started training within 240 s"
        if study is None and (out / "runs").is_dir():  # made once the study exists
            study = study_of(out, storage)
        if study is not None:
            victim = _trial_in_its_first_run(out, study)
        if victim is None:
            time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return victim


@pytest.mark.slow
def test_killed_tune_resumes_to_n_with_none_lost_or_duplicated(tmp_path):
    out = tmp_path / "tune"
    process = _tune_process(out, 3, "--workers", "2", seeds=2, steps=KILLED_STEPS)
    victim = _kill_mid_trial(process, out)
    after_kill = study_of(out).get_trials()
    assert after_kill[victim.number].state == TrialState.RUNNING and not counts(after_kill[victim.number])
    assert len([t for t in after_kill if counts(t)]) < 3

    process = _tune_process(out, 3, "--workers", "2", seeds=2, steps=KILLED_STEPS)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    trials = study_of(out).get_trials()
    assert len([t for t in trials if counts(t)]) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL and not counts(t)]
    for t in interrupted:
        if t.params:  # killed before sampling leaves nothing to retry
            assert len([r for r in trials if r.user_attrs.get(RETRY_ATTR) == t.number]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_a_dead_remote_workers_trial_goes_stale_and_the_next_worker_retries_it(tmp_path, backend):
    out = tmp_path / "tune"
    storage = default_storage(out) if backend == "sqlite" else f"journal:{tmp_path / 'journal.log'}"
    heartbeat = ("--storage", storage, "--heartbeat-interval", "1", "--heartbeat-grace", "3")
    victim = _kill_mid_trial(_tune_process(out, 1, *heartbeat, seeds=2, steps=KILLED_STEPS), out, storage)

    # seen from another machine: the dead worker's pid says nothing there, only its silent heartbeat does
    watcher = open_storage(storage, heartbeat_interval_s=1, heartbeat_grace_s=3)
    watcher.set_trial_user_attr(victim._trial_id, WORKER_ATTR, {"host": "another-machine", "pid": 1})
    study_id = watcher.get_study_id_from_name(STUDY)
    deadline = time.monotonic() + 60
    while victim._trial_id not in watcher._get_stale_trial_ids(study_id):  # the storage's own staleness test
        assert time.monotonic() < deadline, "the killed worker's trial never went stale"
        time.sleep(0.2)

    process = _tune_process(out, 1, *heartbeat, seeds=2, steps=KILLED_STEPS)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    trials = study_of(out, storage).get_trials()
    assert trials[victim.number].state == TrialState.FAIL and not counts(trials[victim.number])
    retries = [t for t in trials if t.user_attrs.get(RETRY_ATTR) == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert [t.number for t in trials if counts(t)] == [retries[0].number]


@pytest.mark.slow
def test_reevaluate_scores_the_best_and_the_default_on_fresh_seeds(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(tune_argv(out, 2, "--reevaluate", "2", "--top-k", "1")) == 0
    report = json.loads((out / "reevaluation.json").read_text())["summary"]
    assert report["seeds"] == [REEVALUATION_SEED_BASE, REEVALUATION_SEED_BASE + 1]
    assert set(report["arms"]) == {"tuned-1", "default"}
    assert report["arms"]["default"]["params"] == {} and report["arms"]["tuned-1"]["n"] == 2
    assert report["best_vs_default"]["verdict"]
    best = json.loads((out / "best.json").read_text())
    assert best["reevaluation"] == report
    reloaded = load_results(out / "reevaluation")
    assert set(reloaded.runs.seed) == {REEVALUATION_SEED_BASE, REEVALUATION_SEED_BASE + 1}
    assert "default" in capsys.readouterr().out


@pytest.mark.slow
def test_two_env_objective_is_the_mean_normalised_score(tmp_path):
    from trbench.analysis.normalization import load_normalization

    out = tmp_path / "tune"
    argv = tune_argv(out, 1, "--pruner", "none")
    argv[argv.index("--env") + 1 : argv.index("--env") + 1] = [ENV, "--env"]
    argv[argv.index(ENV, argv.index(ENV) + 1)] = "InvertedDoublePendulum-v5"
    assert main(argv) == 0
    (trial,) = counted(out)
    constants = load_normalization()
    returns = trial.user_attrs["final_eval_returns"]
    expected = sum(float(constants[env].normalize(values[0])) for env, values in returns.items()) / 2
    assert set(returns) == {ENV, "InvertedDoublePendulum-v5"} and trial.value == pytest.approx(expected)
