"""`trbench run` and `trbench status` on real (tiny) grids: failures recorded while the grid goes
on, resume after the runner is SIGKILLed, dry runs, status tables, and the Ray executor."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trbench.base.errors import UsageError
from trbench.base.files import atomic_write_json
from trbench.base.results_folder import runner_holds
from trbench.cli import main
from trbench.suites.executors import record_failure
from trbench.suites.grid import load_suite
from trbench.suites.progress import Progress
from trbench.suites.runner import exclusive, remove_finished_checkpoints, run_suite, sort_run_folders

TINY_HPARAMS = """
[hparams.all]
steps_per_iteration = 256
eval_interval_steps = 0
final_eval_episodes = 10
critic_minibatch_size = 64
save_model = false
checkpoint_interval_steps = 512
"""
FAILING = "plugins_for_tests.failing"


def write_suite(folder: Path, body: str, name: str = "grid.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body) + TINY_HPARAMS)
    return path


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def check_intact(run_folder: Path, expected_steps: int) -> dict:
    """A finished run folder: config, result and a progress.csv whose rows parse and add up."""
    result = json.loads((run_folder / "result.json").read_text())
    config = json.loads((run_folder / "config.json").read_text())
    assert config["run_id"] == run_folder.name
    with open(run_folder / "progress.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if result["status"] == "complete":
        assert result["steps"] == expected_steps
        assert [int(row["iteration"]) for row in rows] == list(range(1, len(rows) + 1))
        assert int(rows[-1]["step"]) == expected_steps
        assert float(rows[-1]["eval_return"]) == pytest.approx(result["final_eval_return"])
    return result


# --- fast: dry run, status, bookkeeping ---------------------------------------------------------------


def fabricate_results(tmp_path: Path, states: list[str | None]) -> tuple[Path, list]:
    """A results folder for a 2-arm x 2-seed grid whose run i ended in states[i] (None: no result;
    "started": no result, a streamed progress table with 2 whole rows and a torn one, and a
    checkpoint)."""
    suite = load_suite(
        write_suite(
            tmp_path,
            """
        name = "fab"
        steps = 512
        seeds = 2
        envs = ["InvertedPendulum-v5"]
        algos = ["trpo", "vpg"]
    """,
        )
    )
    out = tmp_path / "results" / "fab"
    atomic_write_json(out / "manifest.json", suite.manifest())
    for run, state in zip(suite.runs, states):
        folder = out / "runs" / run.run_id
        folder.mkdir(parents=True)
        if state == "started":
            # half the 512-step budget logged in whole rows, then a row torn by the interruption
            (folder / "progress.csv.partial").write_text("iteration,step,kl\n1,128,0.1\n2,256,0.1\n3,7")
            (folder / "checkpoint.pt").write_bytes(b"not read by status")
        elif state is not None:
            atomic_write_json(
                folder / "result.json", {"status": state, "error": None if state == "complete" else "boom"}
            )
    return out, list(suite.runs)


@pytest.mark.parametrize(
    "states", [["complete", "diverged", "complete", None], ["started", "complete", None, "failed"]]
)
def test_status_counts_complete_failed_started_missing_by_algorithm_and_env(tmp_path, capsys, states):
    out, runs = fabricate_results(tmp_path, states)
    assert main(["status", str(out)]) == 1
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[1].split() == ["algo", "env", "complete", "failed", "started", "missing"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line.split()}
    seen_by_arm: dict[str, list] = {run.spec.arm: [] for run in runs}
    for run, state in zip(runs, states):
        seen_by_arm[run.spec.arm].append(state)
    for arm, seen in seen_by_arm.items():
        expected = [
            str(seen.count("complete")),
            str(sum(s in ("failed", "diverged") for s in seen)),
            str(seen.count("started")),
            str(seen.count(None)),
        ]
        assert rows[arm] == ["InvertedPendulum-v5", *expected]
    ended = sum(s not in (None, "started") for s in states)
    assert rows["total"] == [
        str(states.count("complete")),
        str(ended - states.count("complete")),
        str(states.count("started")),
        str(states.count(None)),
    ]
    # ended runs count their whole budget (512 each), a started one its last whole logged row
    trained = 512 * ended + 256 * states.count("started")
    started_note = "; 1 started, 1 of them with a checkpoint to resume from" if "started" in states else ""
    assert f"trained: {trained:,} of the grid's 2,048 steps ({trained / 2048:.1%}){started_note}" in lines
    assert "no runner is working on this folder" in lines
    failed = [(run, state) for run, state in zip(runs, states) if state in ("failed", "diverged")]
    for run, state in failed:
        assert f"{state}: {run.run_id}: boom" in text


def test_status_exit_code_is_0_when_everything_is_complete(tmp_path, capsys):
    out, _ = fabricate_results(tmp_path, ["complete"] * 4)
    assert main(["status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].split() == ["total", "4", "0", "0", "0"]
    assert lines[-2:] == ["trained: 2,048 of the grid's 2,048 steps (100.0%)", "no runner is working on this folder"]


def test_status_says_when_a_runner_holds_the_folder_and_the_runner_waits_out_a_status_probe(tmp_path, capsys):
    out, _ = fabricate_results(tmp_path, ["complete", None, None, None])
    with exclusive(out):  # what a runner holds while it writes into the folder
        assert main(["status", str(out)]) == 1
        assert "a runner is working on this folder now" in capsys.readouterr().out.splitlines()
        with pytest.raises(UsageError, match="in use by another trbench run"):
            with exclusive(out):
                pass
    assert main(["status", str(out)]) == 1
    assert "no runner is working on this folder" in capsys.readouterr().out.splitlines()
    # a probe that holds the lock (as status does, for microseconds) only delays a runner
    import fcntl

    with open(out / ".runner.lock") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        threading.Timer(0.2, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with exclusive(out):
            assert runner_holds(out)
    assert runner_holds(out) is False


def test_status_of_a_folder_without_manifest_is_a_usage_error(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no manifest.json" in err


def test_dry_run_lists_runs_and_total_steps_and_writes_nothing(tmp_path, monkeypatch, capsys):
    write_suite(
        tmp_path,
        """
        name = "dry"
        steps = 1000
        seeds = 3
        envs = ["InvertedPendulum-v5"]
        algos = ["trpo", "ppo"]
        [env.InvertedPendulum-v5.hparams.trpo]
        max_kl = [0.01, 0.02]
    """,
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    suite = load_suite(tmp_path / "grid.toml")
    lines = out.splitlines()
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("suite "))]
    listed = dict(line.split()[:2] for line in table)
    assert listed == {run.run_id: "missing" for run in suite.runs}
    # whole iterations of 256 steps: the counts are the steps the runs will take, the rounding said once
    assert all(line.split()[2] == "1,024" for line in table)
    assert "9 runs" in out and "9,216 steps in all" in out and "9 to run (9,216 steps)" in out
    # three cells (trpo at two max_kl, ppo) of three seeds: three lockstep packs
    assert "in 3 worker tasks (up to 4 seeds of one cell in lockstep" in out
    assert out.count("the budget of 1,000 becomes 1,024 steps (9 of 9 runs)") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


def test_dry_run_shows_what_a_resume_would_skip(tmp_path, monkeypatch, capsys):
    out, runs = fabricate_results(tmp_path, ["complete", "failed", None, None])
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    listed = dict(line.split()[:2] for line in text.splitlines()[1:-1])
    assert listed == dict(zip([run.run_id for run in runs], ["complete", "failed", "missing", "missing"]))
    assert "1 complete, 1 failed, 3 to run (1,536 steps)" in text
    assert main(["run", "grid.toml", "--dry-run", "--out", str(out), "--skip-failed"]) == 0
    assert "2 to run (1,024 steps)" in capsys.readouterr().out


def test_record_failure_keeps_whole_progress_rows_and_removes_temporaries(tmp_path):
    suite = load_suite(
        write_suite(
            tmp_path,
            """
        steps = 512
        seeds = [0]
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg"]
    """,
        )
    )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "progress.csv.partial").write_text("iteration,step\n1,256\n2,5")  # torn last row
    (folder / ".result.json.abc.tmp").write_text("{")
    result = record_failure(suite.runs[0], folder, "worker process killed by SIGKILL", 2.0)
    assert result["status"] == "failed" and result["steps"] == 256
    assert json.loads((folder / "result.json").read_text()) == result
    assert (folder / "progress.csv").read_text() == "iteration,step\n1,256\n"
    assert json.loads((folder / "config.json").read_text())["run_id"] == suite.runs[0].run_id
    assert leftovers(folder) == []


def test_runs_dropped_from_the_suite_move_aside_and_come_back(tmp_path):
    body = """
        name = "moving"
        steps = 512
        seeds = {seeds}
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg"]
    """
    three = load_suite(write_suite(tmp_path, body.format(seeds=3), "three.toml"))
    two = load_suite(write_suite(tmp_path, body.format(seeds=2), "two.toml"))
    out = tmp_path / "out"
    for run in three.runs:
        (out / "runs" / run.run_id).mkdir(parents=True)
    assert sort_run_folders(out, two) == (1, 0)
    assert {p.name for p in (out / "runs").iterdir()} == {run.run_id for run in two.runs}
    assert sort_run_folders(out, three) == (0, 1)
    assert {p.name for p in (out / "runs").iterdir()} == {run.run_id for run in three.runs}
    assert list((out / "superseded").iterdir()) == []


def two_runs(tmp_path: Path) -> list:
    return list(
        load_suite(
            write_suite(
                tmp_path,
                """
        steps = 1000
        seeds = 2
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg"]
    """,
            )
        ).runs
    )


def test_progress_in_a_log_is_plain_lines_with_counts_rate_and_eta(tmp_path):
    first, second = two_runs(tmp_path)
    stream = io.StringIO()
    progress = Progress([first, second], stream, live=False, already_done=1, log_interval_s=0.0)
    progress.started(first)
    progress.started(second)
    progress.stepped(first, 512)
    progress.finished(first, {"status": "complete", "final_eval_return": 12.5, "steps": 1024, "wall_time_s": 3.0})
    progress.finished(second, {"status": "diverged", "error": "non-finite kl", "steps": 256, "wall_time_s": 1.0})
    progress.close()
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert f"[2/3] vpg on InvertedPendulum-v5 seed {first.spec.seed}: final return 12.5 in 3s ({first.run_id})" in lines
    assert (
        f"[3/3] vpg on InvertedPendulum-v5 seed {second.spec.seed}: DIVERGED: non-finite kl in 1s ({second.run_id})"
        in lines
    )
    summaries = [line for line in lines if line.startswith("progress: ")]
    assert summaries and "2 running" in summaries[1] and "steps/s" in summaries[1] and "ETA " in summaries[1]
    assert progress.summary().startswith("3/3 done, 0 running, 1 failed, ")


def test_progress_on_a_terminal_redraws_one_status_line(tmp_path):
    first, second = two_runs(tmp_path)
    stream = io.StringIO()
    progress = Progress([first, second], stream, live=True)
    progress.started(first)
    progress.finished(first, {"status": "complete", "final_eval_return": 1.0, "steps": 1024, "wall_time_s": 2.0})
    progress.close()
    text = stream.getvalue()
    assert text.count("\r\x1b[K") >= 3  # status drawn, cleared for the finished run's line, redrawn, cleared
    assert "[1/2] vpg on InvertedPendulum-v5" in text and "1/2 done, 0 running, 0 failed" in text
    assert text.endswith("\r\x1b[K")


# --- slow: real runs ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_failed_runs_are_recorded_and_the_grid_goes_on(tmp_path):
    path = write_suite(
        tmp_path,
        f"""
        name = "failing"
        steps = 768
        seeds = [0]
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg", "{FAILING}:RaisingVPG", "{FAILING}:DivergingVPG", "{FAILING}:SelfKillingVPG", "npg"]
    """,
    )
    suite = load_suite(path)
    out = tmp_path / "out"
    log = io.StringIO()
    assert run_suite(suite, out, workers=2, executor="local", address=None, redo_failed=True, stream=log) == 1
    results = {
        run.spec.arm.rsplit(":", 1)[-1]: check_intact(out / "runs" / run.run_id, run.steps_taken) for run in suite.runs
    }
    assert results["vpg"]["status"] == "complete" and results["npg"]["status"] == "complete"
    assert results["RaisingVPG"]["status"] == "failed"
    assert results["RaisingVPG"]["error"] == "RuntimeError: deliberate failure in update_policy"
    assert results["DivergingVPG"]["status"] == "diverged"
    assert results["SelfKillingVPG"]["status"] == "failed"
    assert results["SelfKillingVPG"]["error"] == "worker process killed by SIGKILL"
    assert results["SelfKillingVPG"]["steps"] == 256  # the row logged before the worker died
    assert leftovers(out) == []
    assert "2/5 runs complete, 3 failed, 0 missing" in log.getvalue()
    assert "\x1b" not in log.getvalue()  # not a terminal: plain lines only

    complete_ids = [run.run_id for run in suite.runs if run.spec.arm in ("vpg", "npg")]
    stamps = {run_id: (out / "runs" / run_id / "result.json").stat().st_mtime_ns for run_id in complete_ids}
    log = io.StringIO()
    assert run_suite(suite, out, workers=2, executor="local", address=None, redo_failed=False, stream=log) == 1
    assert "0 to run" in log.getvalue()
    log = io.StringIO()
    assert run_suite(suite, out, workers=2, executor="local", address=None, redo_failed=True, stream=log) == 1
    assert "3 to run" in log.getvalue()
    assert {run_id: (out / "runs" / run_id / "result.json").stat().st_mtime_ns for run_id in complete_ids} == stamps


def runner_command(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "trbench.cli", "run", str(suite), "--out", str(out), *extra]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first, then the parent pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields is not None and int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def process_gone(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")  # exited (a zombie runs nothing)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the runner's workers through /proc")
def test_resume_after_sigkill_finishes_every_run_exactly_once_and_intact(tmp_path):
    path = write_suite(
        tmp_path,
        """
        name = "killed"
        steps = 6144
        seeds = 2
        envs = ["InvertedPendulum-v5"]
        algos = ["trpo", "vpg", "npg"]
    """,
    )
    suite = load_suite(path)
    out = tmp_path / "out"
    runner = subprocess.Popen(
        runner_command(path, out, "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and runner.poll() is None:
            finished = list(out.glob("runs/*/result.json"))
            in_progress = list(out.glob("runs/*/progress.csv.partial"))
            checkpointed = [p for p in out.glob("runs/*/checkpoint.pt") if not (p.parent / "result.json").exists()]
            if finished and in_progress and checkpointed:
                break
            time.sleep(0.05)
        assert runner.poll() is None, "the grid ended before it could be interrupted; make the runs longer"
        workers = child_pids(runner.pid)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
    # the workers die with the runner (PR_SET_PDEATHSIG): wait until every one is gone, after
    # which nothing can move in the run folders any more
    assert workers
    deadline = time.monotonic() + 60
    while not all(process_gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the runner"
        time.sleep(0.02)
    interrupted = {p.name for p in out.glob("runs/*") if not (p / "result.json").exists()}
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert interrupted and done_before and len(done_before) < len(suite.runs)
    checkpointed = {name for name in interrupted if (out / "runs" / name / "checkpoint.pt").exists()}
    assert checkpointed
    assert {p.parent.name for p in out.glob("runs/*/result.json")} == set(done_before)

    resumed = subprocess.run(runner_command(path, out, "--workers", "2"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done_before)} already done" in resumed.stdout
    assert f"{len(checkpointed)} resume from a checkpoint" in resumed.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["run_id"] for entry in manifest["runs"]] == [run.run_id for run in suite.runs]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(run.run_id for run in suite.runs)
    for run in suite.runs:
        assert check_intact(out / "runs" / run.run_id, run.steps_taken)["status"] == "complete"
    assert leftovers(out) == []
    assert not (out / "superseded").exists()
    # the runs interrupted after a checkpoint went on from it; finished, none keeps its checkpoint
    for run_id in checkpointed:
        assert json.loads((out / "runs" / run_id / "result.json").read_text())["resumed_at_steps"]
    assert not list(out.glob("runs/*/checkpoint.pt"))
    # runs finished before the kill were kept, not redone
    assert {run_id: (out / "runs" / run_id / "result.json").stat().st_mtime_ns for run_id in done_before} == done_before
    assert (out / "suite.toml").read_text() == path.read_text()

    status = subprocess.run([sys.executable, "-m", "trbench.cli", "status", str(out)], capture_output=True, text=True)
    assert status.returncode == 0
    total = next(line for line in status.stdout.splitlines() if line.startswith("total"))
    assert total.split() == ["total", str(len(suite.runs)), "0", "0", "0"]
    assert status.stdout.splitlines()[-1] == "no runner is working on this folder"


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    path = write_suite(
        tmp_path,
        f"""
        name = "on-ray"
        steps = 512
        seeds = 2
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg", "{FAILING}:RaisingVPG", "{FAILING}:SelfKillingVPG"]
        [hparams.vpg]
        save_model = true
    """,
    )
    suite = load_suite(path)
    out = tmp_path / "out"
    log = io.StringIO()
    assert run_suite(suite, out, workers=2, executor="ray", address=None, redo_failed=True, stream=log) == 1
    for run in suite.runs:
        folder = out / "runs" / run.run_id
        result = check_intact(folder, run.steps_taken)
        if run.spec.arm == "vpg":
            assert result["status"] == "complete"
            assert (folder / "model.pt").stat().st_size > 0
        elif run.spec.arm.endswith("RaisingVPG"):
            assert result == {
                **result,
                "status": "failed",
                "error": "RuntimeError: deliberate failure in update_policy",
            }
        else:
            assert result["status"] == "failed" and result["error"]
    assert leftovers(out) == []
    assert "2/6 runs complete, 4 failed" in log.getvalue()


def starts_column(text: str) -> dict[str, str]:
    """run_id -> the dry run's start position ('-' for runs that will not start)."""
    return {line.split()[0]: line.split()[3] for line in text.splitlines()[1:-1]}


def test_order_cells_finishes_each_cell_before_the_next_and_env_selects(tmp_path, monkeypatch, capsys):
    write_suite(
        tmp_path,
        """
        name = "order"
        steps = 512
        seeds = 3
        envs = ["InvertedPendulum-v5", "Pendulum-v1"]
        algos = ["trpo", "vpg"]
    """,
    )
    monkeypatch.chdir(tmp_path)
    suite = load_suite(tmp_path / "grid.toml")
    ids = {(run.spec.arm, run.spec.env_id, run.spec.seed): run.run_id for run in suite.runs}
    seeds = sorted({seed for _, _, seed in ids})

    assert main(["run", "grid.toml", "--dry-run"]) == 0
    default = starts_column(capsys.readouterr().out)
    # seeds outermost by default: every cell's first seed starts before any second seed
    first_seed = [int(default[ids[arm, env, seeds[0]]]) for arm in ("trpo", "vpg") for env in suite.envs]
    later_seeds = [int(default[ids[arm, env, s]]) for arm in ("trpo", "vpg") for env in suite.envs for s in seeds[1:]]
    assert max(first_seed) < min(later_seeds)

    assert (
        main(
            [
                "run",
                "grid.toml",
                "--dry-run",
                "--order",
                "cells",
                "--env",
                "Pendulum-v1",
                "--env",
                "InvertedPendulum-v5",
            ]
        )
        == 0
    )
    cells = starts_column(capsys.readouterr().out)
    expected = [
        ids[arm, env, seed]
        for env in ("Pendulum-v1", "InvertedPendulum-v5")
        for arm in ("trpo", "vpg")
        for seed in seeds
    ]
    assert [run_id for run_id, _ in sorted(cells.items(), key=lambda item: int(item[1]))] == expected

    assert main(["run", "grid.toml", "--dry-run", "--env", "Pendulum-v1"]) == 0
    text = capsys.readouterr().out
    selected = starts_column(text)
    assert {run_id for run_id, start in selected.items() if start != "-"} == {
        run_id for (_, env, _), run_id in ids.items() if env == "Pendulum-v1"
    }
    assert "6 to run (3,072 steps)" in text


def test_env_outside_the_suite_is_a_one_line_usage_error(tmp_path, monkeypatch, capsys):
    write_suite(
        tmp_path,
        """
        name = "order"
        steps = 512
        seeds = 1
        envs = ["InvertedPendulum-v5"]
        algos = ["trpo"]
    """,
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--env", "Hopper-v5"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "grid.toml" in err and "'Hopper-v5'" in err and "allowed: InvertedPendulum-v5" in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml"]


@pytest.mark.slow
def test_running_one_env_runs_only_it_and_leaves_the_rest_of_the_grid_alone(tmp_path):
    suite = load_suite(
        write_suite(
            tmp_path,
            """
        name = "select"
        steps = 512
        seeds = 1
        envs = ["InvertedPendulum-v5", "Pendulum-v1"]
        algos = ["vpg"]
    """,
        )
    )
    out = tmp_path / "results"
    first, second = suite.runs
    assert (first.spec.env_id, second.spec.env_id) == ("InvertedPendulum-v5", "Pendulum-v1")
    log = io.StringIO()
    assert (
        run_suite(
            suite,
            out,
            workers=1,
            executor="local",
            address=None,
            redo_failed=True,
            stream=log,
            order="cells",
            only_envs=("Pendulum-v1",),
        )
        == 1
    )
    assert check_intact(out / "runs" / second.run_id, 512)["status"] == "complete"
    assert not (out / "runs" / first.run_id).exists()
    text = log.getvalue()
    assert "2 runs, 1 of them on Pendulum-v1, 0 already done, 1 to run (512 steps)" in text
    assert "[1/1] " in text and "1/2 runs complete" in text
    # the rest of the grid then resumes as usual
    assert run_suite(suite, out, workers=1, executor="local", address=None, redo_failed=True, stream=log) == 0
    assert check_intact(out / "runs" / first.run_id, 512)["status"] == "complete"


def test_a_complete_run_left_with_its_checkpoint_loses_it_unless_it_keeps_checkpoints(tmp_path):
    path = write_suite(
        tmp_path,
        """
        name = "leftover"
        steps = 512
        seeds = 1
        envs = ["InvertedPendulum-v5"]
        algos = ["trpo", "vpg"]
        [hparams.vpg]
        keep_checkpoint = true
    """,
    )
    suite = load_suite(path)
    runs_dir = tmp_path / "runs"
    for run in suite.runs:  # killed between writing result.json and removing the checkpoint
        folder = runs_dir / run.run_id
        folder.mkdir(parents=True)
        atomic_write_json(folder / "result.json", {"status": "complete"})
        (folder / "checkpoint.pt").write_bytes(b"state")
    unfinished = runs_dir / "not-in-the-grid"
    unfinished.mkdir()
    (unfinished / "checkpoint.pt").write_bytes(b"state")
    remove_finished_checkpoints(runs_dir, suite)
    left = {p.parent.name.split("__")[0] for p in runs_dir.glob("*/checkpoint.pt")}
    assert left == {"vpg", "not-in-the-grid"}
