"""`trbench train` from the outside: bad input is one line and exit 2 with nothing written;
a method defined outside the package trains through the same front door."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # every test here runs the CLI in a process of its own


def trbench(*args, cwd=None, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "trbench.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


BASE = ["train", "--env", "InvertedPendulum-v5", "--steps", "1024", "--seed", "0"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--algo", "nope"],
            "algo: unknown algorithm 'nope'; allowed: acktr, mdpo, npg, ppo, ppo_kl, spo, trpl, trpo, truly_ppo, vpg",
        ),
        (["--algo", "trpo", "--set", "max_kl=0"], "max_kl: must be > 0, got 0.0"),
        (["--algo", "trpo", "--set", "max_kl=-1"], "max_kl: must be > 0"),
        (["--algo", "trpo", "--set", "max_kl=big"], "max_kl: expected a number, got 'big'"),
        (["--algo", "trpo", "--set", "cg_iters=2.5"], "cg_iters: expected an integer"),
        (["--algo", "trpo", "--set", "normalize_obs=maybe"], "normalize_obs: expected true or false"),
        (["--algo", "trpo", "--set", "no_such_key=1"], "no_such_key: unknown setting for TRPOConfig; allowed:"),
        (["--algo", "ppo", "--set", "max_kl=0.01"], "max_kl: unknown setting for PPOConfig"),
        (["--algo", "trpo", "--set", "activation=sigmoid"], "activation: must be one of tanh, relu, elu"),
        (
            ["--algo", "trpo", "--set", "steps_per_iteration=1000", "--set", "num_envs=3"],
            "steps_per_iteration: must be a multiple of num_envs=3",
        ),
        (["--algo", "trpo", "--set", "damping"], "expected key=value"),
        (["--algo", "trpo", "--device", "tpu"], "device: must be one of cpu, cuda, cuda:N, auto"),
        (["--algo", "mypkg.missing:Algo"], "algo: cannot import 'mypkg.missing'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, expected):
    out = tmp_path / "run"
    proc = trbench(*BASE, *args, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert expected in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "env_id,expected",
    [
        ("NoSuchEnv-v0", "env: unknown gymnasium env id 'NoSuchEnv-v0'"),
        ("CartPole-v1", "Discrete action space; only Box is supported"),
    ],
)
def test_bad_env_is_one_line_exit_2(tmp_path, env_id, expected):
    out = tmp_path / "run"
    proc = trbench("train", "--algo", "trpo", "--env", env_id, "--steps", "1000", "--out", str(out))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    assert not out.exists()


def test_bad_steps_and_seed_are_refused(tmp_path):
    for args in (["--steps", "0"], ["--steps", "ten"], ["--steps", "10", "--seed", "-1"], ["--torch-threads", "0"]):
        proc = trbench("train", "--algo", "trpo", "--env", "InvertedPendulum-v5", *args, "--out", str(tmp_path / "r"))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_refuses_to_overwrite_a_finished_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"status": "complete"}')
    proc = trbench("train", "--algo", "trpo", "--env", "InvertedPendulum-v5", "--steps", "512", "--out", str(out))
    assert proc.returncode == 2 and "already holds this run, complete (result.json)" in proc.stderr
    assert json.loads((out / "result.json").read_text()) == {"status": "complete"}


@pytest.mark.slow
def test_an_algorithm_from_outside_the_package_trains_by_import_path(tmp_path):
    out = tmp_path / "klpen"
    proc = trbench(
        "train",
        "--algo",
        "kl_penalty:AdaptiveKLPenalty",
        "--env",
        "InvertedPendulum-v5",
        "--steps",
        "2048",
        "--set",
        "steps_per_iteration=1024",
        "--set",
        "eval_interval_steps=0",
        "--set",
        "kl_target=0.02",
        "--out",
        str(out),
        "--quiet",
        env_extra={"PYTHONPATH": str(REPO / "examples")},
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "kl_penalty:AdaptiveKLPenalty" and config["config"]["kl_target"] == 0.02
    assert "kl_penalty_beta" in (out / "progress.csv").read_text().splitlines()[0]
    assert json.loads((out / "result.json").read_text())["status"] == "complete"


def test_register_makes_a_name_available():
    from trbench.algos.config import VPGConfig
    from trbench.algos.registry import available_algorithms, register, resolve_algorithm
    from trbench.algos.vpg import VPG

    @register("vpg-copy-for-test")
    class Copy(VPG):
        Config = VPGConfig

    assert resolve_algorithm("vpg-copy-for-test") is Copy
    assert "vpg-copy-for-test" in available_algorithms()


def test_train_prints_its_learning_curve(tmp_path):
    proc = trbench(
        "train",
        "--algo",
        "trpo",
        "--env",
        "InvertedPendulum-v5",
        "--steps",
        "1024",
        "--set",
        "steps_per_iteration=512",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split()[:3] == ["step", "train_return", "eval_return"]
    assert lines[2].split()[0] == "512" and lines[3].split()[0] == "1024"
    assert lines[-1].startswith("final_eval_return")


TIMING_COLUMNS = {"wall_time_s", "steps_per_second", "rollout_time_s", "update_time_s"}


def progress_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def test_train_gives_the_bits_of_the_same_run_in_a_suite(tmp_path):
    # the suite worker trains with one torch thread; `trbench train` does too by default, whatever
    # the machine's core count (torch's own default sums some reductions in another order)
    settings = ["--algo", "ppo", "--env", "InvertedPendulum-v5", "--steps", "2048", "--seed", "1"]
    alone = trbench("train", *settings, "--set", "eval_interval_steps=0", "--quiet", "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    (tmp_path / "one.toml").write_text(
        'name = "one"\nsteps = 2048\nseeds = [1]\nenvs = ["InvertedPendulum-v5"]\nalgos = ["ppo"]\n'
        "[hparams.all]\neval_interval_steps = 0\n"
    )
    suite = trbench("run", str(tmp_path / "one.toml"), "--workers", "1", "--out", str(tmp_path / "suite"))
    assert suite.returncode == 0, suite.stderr
    (in_suite,) = (tmp_path / "suite" / "runs").iterdir()
    assert progress_rows(in_suite / "progress.csv") == progress_rows(tmp_path / "alone" / "progress.csv")
    result_alone = json.loads((tmp_path / "alone" / "result.json").read_text())
    result_in_suite = json.loads((in_suite / "result.json").read_text())
    assert result_alone["final_eval_return"] == result_in_suite["final_eval_return"]


def test_config_command_lists_fields_with_sources():
    proc = trbench("config", "trpo")
    assert proc.returncode == 0
    assert any(line.startswith("damping = 0.1") and "source:" in line for line in proc.stdout.splitlines())
