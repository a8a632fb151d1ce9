"""Faults on a Ray cluster started apart, as a user starts one (`ray start --head` in a
subprocess, with token authentication): a worker SIGKILLed mid-run has its run submitted again,
resuming from the last checkpoint that reached the runner; a run that fails by its own error is
not retried; a run that kills its worker every time ends as failed after the bounded retries;
a client without the cluster's token is told what to set."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from run_comparison import assert_same_run

from trbench.cli import main
from trbench.suites.grid import load_suite
from trbench.suites.ray_executor import SYSTEM_FAILURE_RETRIES, is_system_failure

FAILING = "plugins_for_tests.failing"
# TRPO that halts from half its budget on until its gate file exists: a kill lands mid-run however
# fast the machine trains
GATED = "plugins_for_tests.gated:GatedTRPO"
ON_LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker process through /proc")
CLUSTER_START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
T = TypeVar("T")


# --- a cluster started apart ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    address: str
    token_path: Path

    def client_env(self, **changes: str | None) -> dict[str, str]:
        """The environment of a runner on the head node that holds the cluster's token; a change
        to None removes that variable."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _poll(condition: Callable[[], T | None], timeout_s: float, what: str, alive: subprocess.Popen | None = None) -> T:
    """Wait for `condition` to return something, while `alive` (if given) still runs."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if alive is not None and alive.poll() is not None:
            output, errors = alive.communicate()
            pytest.fail(f"{what}: the process ended first (exit {alive.returncode}):\n{output}{errors[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A one-node cluster (2 CPUs) with token authentication, in its own temp folder and on free
    ports so it meets no other Ray instance on this machine; stopped by signalling its own
    process group, never by `ray stop`, which would stop every cluster of the user."""
    root = Path(tempfile.mkdtemp(prefix="trb-ray-"))  # short: Ray's socket paths must stay short
    token_path = root / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    log_path = root / "ray-start.log"
    port = _free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        # the workers import the test plugins, as a user's workers import their algorithms
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--num-cpus",
        "2",
        "--object-store-memory",
        str(200 * 1024 * 1024),
        "--include-dashboard",
        "false",
        "--disable-usage-stats",
        "--temp-dir",
        str(root / "ray"),
        "--ray-client-server-port",
        str(_free_port()),
        "--dashboard-agent-listen-port",
        str(_free_port()),
    ]
    with open(log_path, "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, f"ray start failed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ray start did not finish:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", token_path)
    finally:
        _stop_process_group(head)
        shutil.rmtree(root, ignore_errors=True)


def _stop_process_group(head: subprocess.Popen) -> None:
    """SIGINT has `ray start --block` stop what it started; SIGKILL ends any straggler."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            continue


# --- suites and the runner ----------------------------------------------------------------------------


def write_suite(
    folder: Path,
    name: str,
    algos: list[str],
    steps: int,
    checkpoint_interval_steps: int,
    seeds: int = 1,
    save_model: bool = False,
    gate: Path | None = None,
) -> Path:
    path = folder / f"{name}.toml"
    gate_line = f"gate_file = {json.dumps(str(gate))}" if gate is not None else ""
    path.write_text(
        textwrap.dedent(f"""
        name = "{name}"
        steps = {steps}
        seeds = {seeds}
        envs = ["InvertedPendulum-v5"]
        algos = {json.dumps(algos)}
        [hparams.all]
        steps_per_iteration = 256
        eval_interval_steps = 0
        critic_minibatch_size = 64
        save_model = {json.dumps(save_model)}
        checkpoint_interval_steps = {checkpoint_interval_steps}
        {gate_line}
    """)
    )
    return path


def start_runner(cluster: Cluster, suite: Path, out: Path, *flags: str, **env_changes: str | None) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "trbench.cli",
        "run",
        str(suite),
        "--executor",
        "ray",
        "--address",
        cluster.address,
        "--out",
        str(out),
        *flags,
    ]
    return subprocess.Popen(
        command, env=cluster.client_env(**env_changes), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop_if_running(runner: subprocess.Popen) -> None:
    if runner.poll() is None:
        runner.kill()
        runner.communicate()


def worker_training(run_id: str) -> int | None:
    """The pid of the Ray worker process that trains `run_id` now: the one holding the run's
    progress file open in its temporary folder."""
    return workers_training([run_id]).get(run_id)


def workers_training(run_ids: list[str]) -> dict[str, int]:
    """The pid of the Ray worker process that trains each of `run_ids` now (those found)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for run_id in run_ids:
            if any(target.endswith(f"/{run_id}/progress.csv.partial") for target in targets):
                found[run_id] = int(entry.name)
    return found


def progress_steps(folder: Path) -> list[int]:
    lines = (folder / "progress.csv").read_text().splitlines()
    column = lines[0].split(",").index("step")
    return [int(line.split(",")[column]) for line in lines[1:]]


# --- tests --------------------------------------------------------------------------------------------


@pytest.mark.ray
def test_a_lost_worker_or_node_is_a_system_failure_and_the_runs_own_error_is_not():
    from ray import exceptions

    assert is_system_failure(exceptions.WorkerCrashedError())
    assert is_system_failure(exceptions.NodeDiedError("node 1 died"))
    assert is_system_failure(exceptions.OwnerDiedError("ab" * 14, None, ""))
    assert not is_system_failure(exceptions.RayTaskError("_ray_task", "Traceback ...", RuntimeError("in training")))


@pytest.mark.slow
@pytest.mark.ray
@ON_LINUX
def test_a_worker_killed_mid_run_is_resubmitted_and_resumes_from_its_last_checkpoint(cluster, tmp_path):
    # the run halts at its gate from iteration 5 of 8 on, so it is still training when it is killed
    iterations = 8
    gate = tmp_path / "gate"
    suite = write_suite(
        tmp_path, "killed-worker", [GATED], steps=iterations * 256, checkpoint_interval_steps=256, gate=gate
    )
    (run,) = load_suite(suite).runs
    out = tmp_path / "out"
    folder = out / "runs" / run.run_id
    runner = start_runner(cluster, suite, out)
    try:
        # the runner has written a checkpoint the task sent back, and the task is still training
        worker = _poll(
            lambda: (folder / "checkpoint.pt").is_file() and worker_training(run.run_id),
            RUN_TIMEOUT_S,
            "a checkpoint in the results folder while the run trains",
            alive=runner,
        )
        os.kill(worker, signal.SIGKILL)
        gate.touch()  # the resubmitted run trains through
        output, errors = runner.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop_if_running(runner)
    assert runner.returncode == 0, output + errors
    retries = [line for line in output.splitlines() if line.startswith("[retry]")]
    assert len(retries) == 1 and "WorkerCrashedError" in retries[0]
    assert f"retry 1 of {SYSTEM_FAILURE_RETRIES}, from its last checkpoint" in retries[0]
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "complete" and result["steps"] == iterations * 256
    (resumed_at,) = result["resumed_at_steps"]
    assert 0 < resumed_at < iterations * 256
    # one row per iteration, none lost or repeated across the resume
    assert progress_steps(folder) == [256 * (i + 1) for i in range(iterations)]
    assert not (folder / "checkpoint.pt").exists()  # a finished run keeps none (keep_checkpoint = false)


@pytest.mark.slow
@pytest.mark.ray
@ON_LINUX
def test_seeds_packed_into_one_task_resume_after_a_killed_worker_to_the_bits_of_each_seed_trained_alone(
    cluster, tmp_path
):
    # a pack of three seeds in one Ray task (one worker process holds all three runs); after the
    # first checkpoints reached the runner, the worker is killed; the pack is submitted again and
    # each seed resumes from its own checkpoint; the end is what one seed per local worker gives
    # the pack halts at its gate from iteration 5 of 8 on, so it is still training when it is killed
    iterations = 8
    gate = tmp_path / "gate"
    suite = write_suite(
        tmp_path,
        "killed-pack",
        [GATED],
        steps=iterations * 256,
        checkpoint_interval_steps=256,
        seeds=3,
        save_model=True,
        gate=gate,
    )
    run_ids = [run.run_id for run in load_suite(suite).runs]
    out = tmp_path / "out"
    folders = [out / "runs" / run_id for run_id in run_ids]
    # one task at a time: the cluster's two CPUs would otherwise have the three seeds packed 2 + 1
    runner = start_runner(cluster, suite, out, "--seeds-per-worker", "3", "--workers", "1")

    def one_worker_holding_all_with_their_checkpoints_in():
        holders = workers_training(run_ids)
        if len(holders) == 3 and all((folder / "checkpoint.pt").is_file() for folder in folders):
            return holders
        return None

    try:
        holders = _poll(
            one_worker_holding_all_with_their_checkpoints_in,
            RUN_TIMEOUT_S,
            "three checkpoints in the results folder while one worker trains the three seeds",
            alive=runner,
        )
        assert len(set(holders.values())) == 1, holders
        os.kill(next(iter(holders.values())), signal.SIGKILL)
        gate.touch()
        output, errors = runner.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop_if_running(runner)
    assert runner.returncode == 0, output + errors
    assert "up to 3 seeds of one cell per task in lockstep" in output
    retries = [line for line in output.splitlines() if line.startswith("[retry]")]
    assert len(retries) == 3 and all("WorkerCrashedError" in line for line in retries), retries
    assert all(f"retry 1 of {SYSTEM_FAILURE_RETRIES}, from its last checkpoint" in line for line in retries)
    for folder in folders:
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "complete" and len(result["resumed_at_steps"]) == 1
        assert progress_steps(folder) == [256 * (i + 1) for i in range(iterations)]

    alone = tmp_path / "alone"
    assert main(["run", str(suite), "--out", str(alone), "--workers", "1", "--seeds-per-worker", "1"]) == 0
    for run_id, folder in zip(run_ids, folders):
        assert_same_run(alone / "runs" / run_id, folder)
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (alone / "runs" / run_id).iterdir())


@pytest.mark.slow
@pytest.mark.ray
def test_a_run_that_raises_is_not_retried_and_one_that_always_kills_its_worker_ends_failed(cluster, tmp_path):
    # no checkpoints: every attempt of SelfKillingVPG starts over and kills its worker again
    suite = write_suite(
        tmp_path,
        "own-errors",
        [f"{FAILING}:RaisingVPG", f"{FAILING}:SelfKillingVPG"],
        steps=3 * 256,
        checkpoint_interval_steps=0,
    )
    runs = {run.spec.arm.rsplit(":", 1)[-1]: run for run in load_suite(suite).runs}
    out = tmp_path / "out"
    runner = start_runner(cluster, suite, out)
    try:
        output, errors = runner.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop_if_running(runner)
    assert runner.returncode == 1, output + errors
    results = {name: json.loads((out / "runs" / run.run_id / "result.json").read_text()) for name, run in runs.items()}

    assert results["RaisingVPG"]["status"] == "failed"
    assert results["RaisingVPG"]["error"] == "RuntimeError: deliberate failure in update_policy"
    retries = [line for line in output.splitlines() if line.startswith("[retry]")]
    assert not [line for line in retries if "RaisingVPG" in line]

    killer = [line for line in retries if "SelfKillingVPG" in line]
    assert [f"retry {n} of {SYSTEM_FAILURE_RETRIES}, from step 0" in line for n, line in enumerate(killer, 1)] == [
        True
    ] * SYSTEM_FAILURE_RETRIES
    assert results["SelfKillingVPG"]["status"] == "failed"
    assert results["SelfKillingVPG"]["error"].startswith("WorkerCrashedError: ")
    assert results["SelfKillingVPG"]["error"].endswith(
        f"(lost to the system {SYSTEM_FAILURE_RETRIES + 1} times; not retried again)"
    )


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("client", ["no RAY_AUTH_MODE", "another token"])
def test_a_client_refused_for_its_token_is_told_what_to_set_and_nothing_is_written(cluster, tmp_path, client):
    suite = write_suite(tmp_path, "refused", ["vpg"], steps=256, checkpoint_interval_steps=0)
    out = tmp_path / "out"
    if client == "no RAY_AUTH_MODE":
        changes: dict[str, str | None] = {"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN_PATH": None}
    else:
        changes = {"RAY_AUTH_TOKEN_PATH": None, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # Ray retries a refused connection for RAY_gcs_server_port_wait_time_s (about 20 s by default)
    runner = start_runner(cluster, suite, out, RAY_gcs_server_port_wait_time_s="2", **changes)
    try:
        output, errors = runner.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop_if_running(runner)
    assert runner.returncode == 2, output + errors
    last = errors.strip().splitlines()[-1]
    assert last.startswith(f"trbench: error: --address: cannot connect to Ray at {cluster.address}: ")
    assert "token authentication" in last and "set RAY_AUTH_MODE=token" in last
    assert "Traceback" not in errors
    assert not out.exists()
