"""Mid-run checkpoints: a run killed at any moment and resumed is bit-identical to the same run
uninterrupted (progress rows but their timing columns, final evaluation, final parameters), the
env state round-trips exactly, and `trbench train --out` resumes its own run and refuses
anything else."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from trbench.algos.env_state import EnvStateUnsupported, capture_env_state, restore_env_state
from trbench.algos.registry import resolve_algorithm
from trbench.algos.rollout import make_vector_env
from trbench.algos.trainer import Trainer
from trbench.base.errors import UsageError
from trbench.base.run_folder import CHECKPOINT_FILE
from trbench.cli import main
from trbench.suites import execute
from trbench.suites.execute import config_record, execute_run, read_checkpoint
from trbench.suites.run_spec import RunSpec, resolve

TIMING_COLUMNS = {"wall_time_s", "steps_per_second", "rollout_time_s", "update_time_s"}
ENV = "Hopper-v5"  # terminations and truncations both happen within a few thousand steps
# 16 iterations of 512 steps, a checkpoint every other iteration, so kills land both right after
# a checkpoint and between two
SMALL = {
    "num_envs": 4,
    "steps_per_iteration": 512,
    "checkpoint_interval_steps": 1024,
    "eval_interval_steps": 2048,
    "eval_episodes": 2,
    "critic_minibatch_size": 128,
}
STEPS = 16 * 512


def random_actions(env, count, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for _ in range(count)]


def step_all(env, actions):
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        finals = [np.asarray(o) for o in info.get("final_obs", [])] if info else []
        out.append((obs, reward, terminated, truncated, finals))
    return out


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5", "Pendulum-v1"])
def test_a_restored_env_steps_exactly_like_the_original(env_id):
    original = make_vector_env(env_id, 3)
    original.reset(seed=11)
    step_all(original, random_actions(original, 120, seed=1))  # mid-episode, after some resets
    state = capture_env_state(original)
    copy = make_vector_env(env_id, 3)
    copy.reset(seed=99)
    step_all(copy, random_actions(copy, 7, seed=2))  # a different state, to be overwritten
    restore_env_state(copy, state)
    actions = random_actions(original, 400, seed=3)
    for a, b in zip(step_all(original, actions), step_all(copy, actions)):
        for x, y in zip(a[:4], b[:4]):
            assert np.array_equal(x, y)
        assert len(a[4]) == len(b[4]) and all(np.array_equal(x, y) for x, y in zip(a[4], b[4]))
    # the reset stream goes on identically too (each env's np_random was restored)
    assert np.array_equal(original.reset()[0], copy.reset()[0])
    original.close()
    copy.close()


def test_an_env_without_a_readable_state_says_why():
    class Opaque(gym.vector.VectorWrapper):
        pass

    env = Opaque(make_vector_env("Pendulum-v1", 2))
    with pytest.raises(EnvStateUnsupported, match="Opaque"):
        capture_env_state(env)


def strip_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def parameters(algorithm):
    return [p.detach().clone() for p in [*algorithm.policy.parameters(), *algorithm.value_fn.parameters()]]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["trpo", "ppo"])
def test_resuming_from_any_checkpoint_continues_the_same_run(algo):
    cls = resolve_algorithm(algo)
    config = cls.Config.from_overrides({**SMALL, "checkpoint_interval_steps": 512})
    trainer = Trainer(cls, config, ENV, STEPS // 2, seed=3)
    rows, checkpoints = [], []
    for row in trainer.iterate():
        rows.append(row)
        if trainer.checkpoint_due:
            buffer = io.BytesIO()
            torch.save(trainer.checkpoint_state(), buffer)
            checkpoints.append((len(rows), buffer.getvalue()))
    assert [n for n, _ in checkpoints] == list(range(1, len(rows)))  # every iteration but the last
    reference = parameters(trainer.algorithm)
    for done, blob in checkpoints[::3]:
        resumed = Trainer(
            cls, config, ENV, STEPS // 2, seed=3, resume_from=torch.load(io.BytesIO(blob), weights_only=False)
        )
        tail = list(resumed.iterate())
        assert strip_timing(rows[:done] + tail) == strip_timing(rows)
        assert all(torch.equal(a, b) for a, b in zip(reference, parameters(resumed.algorithm)))
        assert np.array_equal(resumed.outcome.final_eval_returns, trainer.outcome.final_eval_returns)


def read_rows(path: Path):
    with open(path, newline="") as handle:
        return strip_timing(list(csv.DictReader(handle)))


def model_tensors(folder: Path):
    state = torch.load(folder / "model.pt", weights_only=False)["algorithm"]
    return {f"{net}.{name}": t for net, tensors in state.items() for name, t in tensors.items()}


def train_argv(algo, out: Path):
    sets = [item for key, value in SMALL.items() for item in ("--set", f"{key}={value}")]
    return [
        "train",
        "--algo",
        algo,
        "--env",
        ENV,
        "--steps",
        str(STEPS),
        "--seed",
        "5",
        *sets,
        "--out",
        str(out),
        "--quiet",
    ]


# Run in the child: the CLI, with the third checkpoint write stopped half-way (half of its bytes in
# the temporary file an atomic write uses), where the test kills it.
STOP_IN_THIRD_CHECKPOINT_WRITE = """
import sys, time
from pathlib import Path
import trbench.suites.execute as execute
from trbench.base.run_folder import CHECKPOINT_FILE
marker, real_write, writes = Path(sys.argv[1]), execute.atomic_write_bytes, []
def write(path, data):
    if path.name == CHECKPOINT_FILE:
        writes.append(path)
        if len(writes) == 3:
            (path.parent / f".{path.name}.interrupted.tmp").write_bytes(data[: len(data) // 2])
            marker.touch()
            while True:
                time.sleep(0.01)
    real_write(path, data)
execute.atomic_write_bytes = write
from trbench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def start_train(argv, marker: Path | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    if marker is None:
        command = [sys.executable, "-m", "trbench.cli", *argv]
    else:
        command = [sys.executable, "-c", STOP_IN_THIRD_CHECKPOINT_WRITE, str(marker), *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress_rows(folder: Path) -> int:
    try:
        return max(len((folder / "progress.csv.partial").read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def modified_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def wait_for(condition, process, what, timeout_s=300.0):
    """Poll until `condition()` holds; the process must still be running then."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["trpo", "ppo"])
def test_a_run_sigkilled_again_and_again_resumes_bit_identically(tmp_path, algo):
    reference = tmp_path / "reference"
    execute_run(resolve(RunSpec(algo, ENV, STEPS, 5, overrides=dict(SMALL))), reference)

    out = tmp_path / "killed"
    rng = np.random.default_rng(0 if algo == "trpo" else 1)
    # a kill during the third checkpoint write, then kills after randomly chosen rows
    marker = tmp_path / "in-checkpoint-write"
    process = start_train(train_argv(algo, out), marker)
    wait_for(marker.exists, process, "the third checkpoint write")
    kill(process)
    assert list(out.glob(f".{CHECKPOINT_FILE}.*.tmp"))  # the torn write is there ...
    before = torch.load(out / CHECKPOINT_FILE, weights_only=False)  # ... and the previous checkpoint intact
    assert before["step"] == 2 * SMALL["checkpoint_interval_steps"]
    resumed_from = [before["step"]]
    for target in sorted(rng.choice(np.arange(7, 13), size=2, replace=False)):
        left_by_the_last_attempt = modified_ns(out / "progress.csv.partial")
        process = start_train(train_argv(algo, out))
        # rows counted once this attempt has rewritten the file from its checkpoint, not the last one's
        # (the attempt removes the file before it writes it again: missing is not rewritten yet)
        wait_for(
            lambda left=left_by_the_last_attempt, target=target: (
                modified_ns(out / "progress.csv.partial") not in (None, left) and progress_rows(out) >= target
            ),
            process,
            f"progress row {target}",
        )
        kill(process)
        resumed_from.append(torch.load(out / CHECKPOINT_FILE, weights_only=False)["step"])
    process = start_train(train_argv(algo, out))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr

    assert read_rows(out / "progress.csv") == read_rows(reference / "progress.csv")
    result, expected = (json.loads((folder / "result.json").read_text()) for folder in (out, reference))
    assert result["final_eval_return"] == expected["final_eval_return"]
    assert result["final_eval_return_std"] == expected["final_eval_return_std"]
    # every resume that got as far as a new checkpoint is on record (a killed resume before its
    # first checkpoint leaves the same checkpoint to the next)
    assert result["resumed_at_steps"] == sorted(set(resumed_from)) and "resumed_at_steps" not in expected
    tensors, expected_tensors = model_tensors(out), model_tensors(reference)
    assert tensors.keys() == expected_tensors.keys()
    assert all(torch.equal(tensors[k], expected_tensors[k]) for k in tensors)
    # finished: the checkpoint and the torn write are gone
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt", "progress.csv", "result.json"]


@pytest.mark.slow
def test_the_checkpoint_stays_while_unfinished_and_goes_when_done_unless_kept(tmp_path):
    spec = RunSpec(
        "vpg", "InvertedPendulum-v5", 2048, 0, overrides={"steps_per_iteration": 512, "checkpoint_interval_steps": 512}
    )
    seen = []
    execute_run(resolve(spec), tmp_path / "a", on_checkpoint=lambda path: seen.append(path.stat().st_size))
    assert len(seen) == 3 and not (tmp_path / "a" / CHECKPOINT_FILE).exists()
    kept = RunSpec(**{**spec.__dict__, "overrides": {**spec.overrides, "keep_checkpoint": True}})
    execute_run(resolve(kept), tmp_path / "b")
    assert (tmp_path / "b" / CHECKPOINT_FILE).exists()
    # checkpoint settings only say how a run executes: they leave the run id alone
    assert (
        resolve(kept).run_id
        == resolve(spec).run_id
        == resolve(RunSpec("vpg", "InvertedPendulum-v5", 2048, 0, overrides={"steps_per_iteration": 512})).run_id
    )


def snapshot(folder: Path):
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def interrupted_run_folder(folder: Path, algo="trpo", **overrides):
    run = resolve(RunSpec(algo, "InvertedPendulum-v5", 1024, 0, overrides=overrides))
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config_record(run, "cpu")))
    (folder / "progress.csv.partial").write_text("iteration,step\n1,512\n")
    return run


BAD_FOLDERS = {
    "foreign files": (lambda f: (f.mkdir(), (f / "notes.txt").write_text("mine"))[0], "not a trbench run ('notes.txt'"),
    "a suite's results": (
        lambda f: (f.mkdir(), (f / "manifest.json").write_text("{}"), (f / "runs").mkdir())[0],
        "not a trbench run",
    ),
    "another run": (lambda f: interrupted_run_folder(f, "trpo", max_kl=0.02), "holds run 'trpo__InvertedPendulum-v5"),
    "a finished run": (
        lambda f: (interrupted_run_folder(f), (f / "result.json").write_text('{"status": "complete"}'))[0],
        "already holds this run, complete",
    ),
    "a failed run without a checkpoint": (
        lambda f: (interrupted_run_folder(f), (f / "result.json").write_text('{"status": "failed"}'))[0],
        "already holds this run, failed",
    ),
    "another tool's files": (
        lambda f: (
            f.mkdir(),
            (f / "progress.csv").write_text("step,return\n1,2\n"),
            (f / "model.pt").write_bytes(b"weights"),
        )[0],
        "but no config.json",
    ),
    "a torn checkpoint": (
        lambda f: (interrupted_run_folder(f), (f / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 torn"))[0],
        f"{CHECKPOINT_FILE}: unreadable checkpoint",
    ),
    "a file": (lambda f: f.write_text("x"), "exists and is not a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_train_out_refuses_what_is_not_an_interrupted_run_of_the_same_settings(tmp_path, capsys, case):
    make, expected = BAD_FOLDERS[case]
    out = tmp_path / "out"
    make(out)
    before = snapshot(tmp_path)
    assert (
        main(
            [
                "train",
                "--algo",
                "trpo",
                "--env",
                "InvertedPendulum-v5",
                "--steps",
                "1024",
                "--seed",
                "0",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert snapshot(tmp_path) == before


def test_an_interrupted_envpool_run_is_refused_with_one_line_and_writes_no_checkpoint(tmp_path, capsys):
    pytest.importorskip("envpool")
    out = tmp_path / "out"
    interrupted_run_folder(out, env_backend="envpool")
    before = snapshot(tmp_path)
    assert (
        main(
            [
                "train",
                "--algo",
                "trpo",
                "--env",
                "InvertedPendulum-v5",
                "--steps",
                "1024",
                "--seed",
                "0",
                "--env-backend",
                "envpool",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "envpool cannot save its simulator state" in err[0]
    assert snapshot(tmp_path) == before
    cls = resolve_algorithm("trpo")
    trainer = Trainer(cls, cls.Config.from_overrides({"env_backend": "envpool"}), "InvertedPendulum-v5", 1024, 0)
    assert "cannot save its simulator state" in trainer.checkpoint_unsupported_reason
    trainer.close()


@pytest.mark.slow
def test_a_failed_run_resumes_from_its_checkpoint_and_other_settings_are_refused_or_start_over(tmp_path, capsys):
    argv = [
        "train",
        "--algo",
        "trpo",
        "--env",
        "InvertedPendulum-v5",
        "--steps",
        "2048",
        "--seed",
        "1",
        "--set",
        "steps_per_iteration=512",
        "--set",
        "checkpoint_interval_steps=512",
    ]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference), "--quiet"]) == 0
    failed = tmp_path / "failed"
    assert main([*argv, "--set", "keep_checkpoint=true", "--out", str(failed), "--quiet"]) == 0
    # as a run left by a worker that died after its last checkpoint: failed, the checkpoint kept
    (failed / "result.json").write_text(json.dumps({"status": "failed", "error": "worker process killed by SIGKILL"}))
    (failed / "progress.csv").rename(failed / "progress.csv.partial")
    capsys.readouterr()

    # another execution setting: the pickled algorithm would keep the old one, so train refuses ...
    before = snapshot(tmp_path)
    assert main([*argv, "--set", "linesearch_mode=batched", "--out", str(failed), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "written with linesearch_mode='sequential', this run has linesearch_mode='batched'" in err[0]
    )
    assert snapshot(tmp_path) == before
    # ... and the same settings resume it, to the same result as the run never interrupted
    assert main([*argv, "--out", str(failed)]) == 0
    assert "resuming the interrupted run from its checkpoint at step 1536" in capsys.readouterr().out
    result, expected = (json.loads((f / "result.json").read_text()) for f in (failed, reference))
    assert result["status"] == "complete" and result["resumed_at_steps"] == [1536]
    assert result["final_eval_return"] == expected["final_eval_return"]
    assert read_rows(failed / "progress.csv") == read_rows(reference / "progress.csv")
    assert not (failed / CHECKPOINT_FILE).exists()

    # in a grid, a checkpoint of other settings is not resumed but started over, with the reason recorded
    kept = resolve(
        RunSpec(
            "trpo",
            "InvertedPendulum-v5",
            2048,
            1,
            overrides={"steps_per_iteration": 512, "checkpoint_interval_steps": 512, "keep_checkpoint": True},
        )
    )
    grid_folder = tmp_path / "grid-run"
    execute_run(kept, grid_folder)
    (grid_folder / "result.json").unlink()
    other = resolve(
        RunSpec(
            "trpo", "InvertedPendulum-v5", 2048, 1, overrides={"steps_per_iteration": 512, "linesearch_mode": "batched"}
        )
    )
    assert other.run_id == kept.run_id
    restarted = execute_run(other, grid_folder)
    assert restarted["status"] == "complete" and "resumed_at_steps" not in restarted
    assert "linesearch_mode" in restarted["discarded_checkpoint"]
    assert restarted["final_eval_return"] == expected["final_eval_return"]


def test_a_checkpoint_from_before_a_new_setting_resumes_and_one_of_other_settings_does_not(tmp_path):
    # a setting added later is at its default in an older checkpoint: the same computation
    run = resolve(RunSpec("trpo", "InvertedPendulum-v5", 1024, 0))
    written_with = dict(execute._checkpoint_settings(run))
    del written_with["normalizer_epsilon"]
    payload = {"run_id": run.run_id, "versions": execute._checkpoint_versions(), "settings": written_with, "step": 512}
    torch.save(payload, tmp_path / CHECKPOINT_FILE)
    assert read_checkpoint(tmp_path, run)["step"] == 512

    torch.save(payload | {"settings": written_with | {"normalizer_epsilon": 1e-6}}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(
        UsageError, match="written with normalizer_epsilon=1e-06, this run has normalizer_epsilon=1e-08"
    ):
        read_checkpoint(tmp_path, run)


def test_a_checkpoint_from_before_the_top10_column_resumes_without_it(tmp_path):
    # an older checkpoint holds neither the ten best returns nor their column: the run goes on
    # with the table it had (the column left out, not filled with a guess), the rest unchanged
    overrides = {**SMALL, "checkpoint_interval_steps": 512, "eval_interval_steps": 0, "keep_checkpoint": True}
    run = resolve(RunSpec("ppo", "InvertedPendulum-v5", 2048, 0, overrides=overrides))
    folder = tmp_path / "run"
    assert execute_run(run, folder)["status"] == "complete"
    fresh = read_rows(folder / "progress.csv")
    assert "train_return_top10" in fresh[0] and fresh[-1]["train_return_top10"] != ""
    payload = torch.load(folder / CHECKPOINT_FILE, weights_only=False)
    assert payload["step"] == 1536  # the last checkpoint, before the final iteration
    del payload["trainer"]["loop"]["top_train_returns"]
    rows = list(csv.DictReader(io.StringIO(payload["progress_csv"])))
    columns = [c for c in rows[0] if c != "train_return_top10"]
    old_table = io.StringIO()
    writer = csv.DictWriter(old_table, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    payload["progress_csv"] = old_table.getvalue()
    torch.save(payload, folder / CHECKPOINT_FILE)
    for name in ("result.json", "progress.csv", "model.pt"):
        (folder / name).unlink(missing_ok=True)
    (folder / "progress.csv.partial").write_text(payload["progress_csv"])

    assert execute_run(run, folder)["status"] == "complete"
    resumed = read_rows(folder / "progress.csv")
    assert "train_return_top10" not in resumed[0]
    without = [{k: v for k, v in row.items() if k != "train_return_top10"} for row in fresh]
    assert strip_timing(resumed) == strip_timing(without)
