"""`trbench import`: other libraries' logs, written by those libraries (Stable-Baselines3 and the RL
Zoo, trained here; CleanRL's and Tianshou's tags through torch's SummaryWriter, which both use;
Spinning Up's logger format), become run folders that status and report read like trbench's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trbench.analysis import load, reference
from trbench.analysis.report import ReportOptions, build_report
from trbench.base.run_folder import is_imported_run
from trbench.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def only_run(results: Path) -> Path:
    (folder,) = sorted((results / "runs").iterdir())
    return folder


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


# --- Stable-Baselines3 and the RL Zoo --------------------------------------------------------


def train_sb3_ppo(folder: Path, seed: int, steps: int = 2048, n_envs: int = 2) -> None:
    """A tiny SB3 PPO run logged the usual way: Monitor files, EvalCallback, the saved model."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("Pendulum-v1", n_envs=n_envs, seed=seed, monitor_dir=str(folder))
    callback = EvalCallback(
        make_vec_env("Pendulum-v1", n_envs=1, seed=100 + seed),
        eval_freq=256,
        n_eval_episodes=2,
        log_path=str(folder),
        verbose=0,
    )
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=256, n_epochs=1, seed=seed, device="cpu", verbose=0)
    model.learn(steps, callback=callback)
    model.save(folder / "ppo")


def monitor_episodes(folder: Path) -> pd.DataFrame:
    """Every training episode of an SB3 folder at its global step, read straight from the Monitor files."""
    files = sorted(folder.glob("*.monitor.csv"))
    frames = [pd.read_csv(path, skiprows=1).assign(step=lambda t: t["l"].cumsum() * len(files)) for path in files]
    return pd.concat(frames).sort_values("step", kind="stable")


@pytest.mark.slow
def test_an_rl_zoo_log_imports_with_its_config_and_versions(tmp_path, capsys):
    pytest.importorskip("rl_zoo3")
    logs = tmp_path / "logs"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.train",
            "--algo",
            "ppo",
            "--env",
            "Pendulum-v1",
            "-n",
            "2048",
            "--eval-freq",
            "512",
            "--eval-episodes",
            "2",
            "--n-eval-envs",
            "1",
            "--seed",
            "5",
            "-f",
            str(logs),
            "--device",
            "cpu",
            "--vec-env",
            "dummy",
            "--hyperparams",
            "n_steps:128",
            "n_epochs:1",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    zoo_run = logs / "ppo" / "Pendulum-v1_1"

    code, out, err = run_cli(capsys, "import", "sb3", logs, "--out", tmp_path / "results")

    assert (code, err) == (0, ""), err
    folder = only_run(tmp_path / "results")
    config = read_config(folder)
    assert (config["algo"], config["algorithm"], config["env_id"], config["seed"]) == (
        "sb3-ppo",
        "ppo",
        "Pendulum-v1",
        5,
    )
    assert config["steps"] == 2048  # args.yml's n_timesteps
    assert config["versions"]["stable-baselines3"] == "2.9.2"
    source = config["source"]
    assert source["config"]["rl_zoo3 config.yml"]["n_envs"] == 4
    assert source["config"]["rl_zoo3 args.yml"]["algo"] == "ppo"
    assert source["iteration_steps"] == 128 * 4
    evaluations = np.load(zoo_run / "evaluations.npz")
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "complete"
    assert result["final_eval_return"] == pytest.approx(evaluations["results"][-1].mean())
    assert result["final_eval_episodes"] == 2
    progress = pd.read_csv(folder / "progress.csv")
    episodes = monitor_episodes(zoo_run)
    assert progress["train_episodes"].sum() == len(episodes)
    assert set(episodes["step"]) <= set(progress["step"])
    assert list(progress.dropna(subset=["eval_return"])["step"]) == list(evaluations["timesteps"])
    assert is_imported_run(folder) and f"{folder.name}" in out


@pytest.mark.slow
def test_sb3_runs_in_one_report_beside_trbench_runs_with_the_source_numbers(tmp_path, capsys):
    from trbench.suites.execute import execute_run
    from trbench.suites.run_spec import RunSpec, resolve

    results = tmp_path / "results"
    for seed in (0, 1):
        run = resolve(RunSpec("ppo", "Pendulum-v1", 2048, seed, {"eval_interval_steps": 1024, "eval_episodes": 2}))
        execute_run(run, results / "runs" / run.run_id)
        train_sb3_ppo(tmp_path / "sb3" / f"run{seed}", seed=seed)

    code, out, err = run_cli(capsys, "import", "sb3", tmp_path / "sb3", "--out", results, "--algo", "sb3-ppo")
    assert (code, err) == (0, ""), err

    summary = pd.read_csv(build_report(results, options=ReportOptions(n_resamples=200)) / "summary.csv").set_index(
        "algo"
    )
    finals = [np.load(tmp_path / "sb3" / f"run{seed}" / "evaluations.npz")["results"][-1].mean() for seed in (0, 1)]
    assert summary.loc["sb3-ppo", "n_runs"] == 2 and summary.loc["ppo", "n_runs"] == 2
    assert summary.loc["sb3-ppo", "mean"] == pytest.approx(np.mean(finals))
    last100 = [monitor_episodes(tmp_path / "sb3" / f"run{seed}")["r"].tail(100).mean() for seed in (0, 1)]
    by_last100 = pd.read_csv(
        build_report(results, options=ReportOptions(metric="last100", n_resamples=200)) / "summary.csv"
    ).set_index("algo")
    assert by_last100.loc["sb3-ppo", "mean"] == pytest.approx(np.mean(last100))
    assert by_last100.loc["ppo", "n_runs"] == 2
    pairwise = pd.read_csv(results / "report" / "pairwise.csv")
    assert {tuple(sorted(pair)) for pair in zip(pairwise["algo_a"], pairwise["algo_b"])} == {("ppo", "sb3-ppo")}
    report = (results / "report" / "report.md").read_text()
    assert "## Imported runs" in report and "EvalCallback" in report

    code, out, _ = run_cli(capsys, "status", results)
    assert code == 0 and "sb3-ppo" in out and "Pendulum-v1" in out


# --- CleanRL ---------------------------------------------------------------------------------


def write_cleanrl_run(
    runs: Path,
    env_id: str,
    seed: int,
    returns: list[float],
    num_envs: int = 2,
    num_steps: int = 64,
    total_timesteps: int = 512,
    budget: int | None = None,
) -> Path:
    """A run directory as CleanRL's ppo_continuous_action.py writes it (its run name, its
    hyperparameters table, its tags), through torch's SummaryWriter as CleanRL does; ``budget``
    is the total_timesteps it records, when the run stopped before it."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    arguments = {
        "exp_name": "ppo_continuous_action",
        "seed": seed,
        "torch_deterministic": True,
        "env_id": env_id,
        "total_timesteps": budget or total_timesteps,
        "learning_rate": 0.0003,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "gamma": 0.99,
        "target_kl": None,
    }
    folder = runs / f"{env_id}__ppo_continuous_action__{seed}__{1700000000 + seed}"
    writer = SummaryWriter(str(folder))
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in arguments.items()),
    )
    batch = num_envs * num_steps
    per_iteration = len(returns) // (total_timesteps // batch)
    episodes = iter(returns)
    for iteration in range(1, total_timesteps // batch + 1):
        for k in range(per_iteration):
            global_step = (iteration - 1) * batch + (k + 1) * (batch // (per_iteration + 1))
            writer.add_scalar("charts/episodic_return", next(episodes), global_step)
            writer.add_scalar("charts/episodic_length", 50, global_step)
        global_step = iteration * batch
        writer.add_scalar("charts/learning_rate", 0.0003, global_step)
        writer.add_scalar("losses/approx_kl", 0.01 * iteration, global_step)
        writer.add_scalar("charts/SPS", 1000 + iteration, global_step)
    writer.close()
    return folder


def test_a_cleanrl_run_imports_and_is_compared_on_its_last_100_training_episodes(tmp_path, capsys):
    returns = [float(value) for value in range(12)]
    run_dir = write_cleanrl_run(tmp_path / "runs", "Hopper-v4", 3, returns)
    results = tmp_path / "results"

    code, out, err = run_cli(capsys, "import", "cleanrl", tmp_path / "runs", "--out", results)

    assert (code, err) == (0, ""), err
    folder = only_run(results)
    config = read_config(folder)
    assert (config["algo"], config["algorithm"], config["env_id"], config["seed"]) == (
        "cleanrl-ppo",
        "ppo",
        "Hopper-v4",
        3,
    )
    assert config["source"]["config"]["exp_name"] == "ppo_continuous_action"
    assert config["source"]["iteration_steps"] == 128 and config["steps"] == 512
    assert config["source"]["path"] == str(run_dir.resolve())
    progress = pd.read_csv(folder / "progress.csv")
    assert progress["train_episodes"].sum() == len(returns)
    assert progress["step"].max() == 512
    assert progress["cleanrl/losses/approx_kl"].dropna().tolist() == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert json.loads((folder / "result.json").read_text())["final_eval_return"] is None
    assert "--metric last100" in out

    loaded = load.load_results(results)
    scored, excluded = load.scored_runs(loaded, "final")
    assert scored.empty and "CleanRL runs no deterministic evaluation" in excluded.loc[0, "reason"]
    scored, _ = load.scored_runs(loaded, "last100")
    assert scored.loc[0, "score"] == pytest.approx(np.mean(returns))


# --- Tianshou --------------------------------------------------------------------------------


TIANSHOU_TAGS = {  # release: (train return, train count, test return, test std, test count)
    "0.5": ("train/reward", "train/episode", "test/reward", "test/reward_std", None),
    "1.x": (
        "train/returns_stat/mean",
        "train/n_collected_episodes",
        "test/returns_stat/mean",
        "test/returns_stat/std",
        "test/n_collected_episodes",
    ),
    "2.x": (
        "training/returns_stat/mean",
        "training/n_collected_episodes",
        "test/returns_stat/mean",
        "test/returns_stat/std",
        "test/n_collected_episodes",
    ),
}


@pytest.mark.parametrize("release", sorted(TIANSHOU_TAGS))
def test_a_tianshou_log_imports_with_each_releases_tags(tmp_path, capsys, release):
    """The MuJoCo examples' layout log/{task}/{algo}/{seed}/{time}, TensorboardLogger's tags."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    log_dir = tmp_path / "log" / "Hopper-v3" / "trpo" / "2" / "240101-120000"
    writer = SummaryWriter(str(log_dir))
    if release == "0.5":
        writer.add_text(
            "args",
            "Namespace(task='Hopper-v3', seed=2, epoch=3, step_per_epoch=1000, "
            "step_per_collect=500, test_num=4, hidden_sizes=[64, 64], device='cpu')",
        )
    else:
        writer.add_text("args", str({"log_dir": str(log_dir), "logger_type": "tensorboard", "wandb_project": None}))
    train_return, train_count, test_return, test_std, test_count = TIANSHOU_TAGS[release]
    train = [(500, 10.0, 2), (1000, 20.0, 3), (1500, 30.0, 1), (2000, 40.0, 2), (2500, 50.0, 2), (3000, 60.0, 1)]
    for step, value, count in train:
        writer.add_scalar(train_return, value, step)
        writer.add_scalar(train_count, count, step)
    for step, value in ((0, 1.0), (1000, 25.0), (2000, 45.0), (3000, 70.0)):
        writer.add_scalar(test_return, value, step)
        writer.add_scalar(test_std, 2.0, step)
        if test_count:
            writer.add_scalar(test_count, 4, step)
    writer.add_scalar("update/loss/actor", 0.5, 7)  # against gradient steps: not kept
    writer.close()

    code, _, err = run_cli(capsys, "import", "tianshou", tmp_path / "log", "--out", tmp_path / "results")

    assert (code, err) == (0, ""), err
    folder = only_run(tmp_path / "results")
    config = read_config(folder)
    assert (config["algo"], config["env_id"], config["seed"]) == ("tianshou-trpo", "Hopper-v3", 2)
    result = json.loads((folder / "result.json").read_text())
    assert (result["final_eval_return"], result["final_eval_return_std"], result["final_eval_episodes"]) == (
        70.0,
        2.0,
        4,
    )
    assert result["steps"] == 3000 and result["status"] == "complete"
    progress = pd.read_csv(folder / "progress.csv")
    assert progress["train_episodes"].sum() == sum(count for _, _, count in train)
    assert progress.dropna(subset=["eval_return"])["step"].tolist() == [0, 1000, 2000, 3000]
    assert not any(column.startswith("tianshou/update") for column in progress.columns)
    if release == "0.5":
        assert config["steps"] == 3000 and config["source"]["config"]["hidden_sizes"] == [64, 64]
    weighted = sum(value * count for _, value, count in train) / sum(count for _, _, count in train)
    assert load.load_results(tmp_path / "results").runs.loc[0, "last100"] == pytest.approx(weighted)


# --- Spinning Up -----------------------------------------------------------------------------


def write_spinningup_run(folder: Path, algorithm: str, rows: list[dict], config: dict) -> None:
    """progress.txt and config.json as Spinning Up's EpochLogger writes them."""
    folder.mkdir(parents=True)
    header = list(rows[0])
    lines = ["\t".join(header)] + ["\t".join(str(row[key]) for key in header) for row in rows]
    (folder / "progress.txt").write_text("\n".join(lines) + "\n")
    saved = {
        **config,
        "env_fn": "<function call_experiment.<locals>.thunk_plus.<locals>.<lambda> at 0x7f>",
        "exp_name": algorithm,
        "logger_kwargs": {"exp_name": algorithm, "output_dir": str(folder)},
    }
    (folder / "config.json").write_text(json.dumps(saved, separators=(",", ":\t"), indent=4, sort_keys=True))


def test_spinning_up_runs_import_on_policy_without_and_off_policy_with_test_episodes(tmp_path, capsys):
    ppo_rows = [
        {
            "Epoch": epoch,
            "AverageEpRet": 10.0 * (epoch + 1),
            "StdEpRet": 1.0,
            "MaxEpRet": 12.0,
            "MinEpRet": 8.0,
            "EpLen": 400.0,
            "AverageVVals": 0.5,
            "StdVVals": 0.1,
            "MaxVVals": 1.0,
            "MinVVals": 0.0,
            "TotalEnvInteracts": 4000 * (epoch + 1),
            "LossPi": -0.01,
            "LossV": 3.0,
            "DeltaLossPi": 0.0,
            "DeltaLossV": 0.0,
            "Entropy": 0.9,
            "KL": 0.01,
            "ClipFrac": 0.1,
            "StopIter": 79,
            "Time": 5.0 * (epoch + 1),
        }
        for epoch in range(3)
    ]
    write_spinningup_run(
        tmp_path / "data" / "ppo" / "ppo_s4",
        "ppo",
        ppo_rows,
        {"seed": 4, "steps_per_epoch": 4000, "epochs": 3, "clip_ratio": 0.2, "gamma": 0.99},
    )
    sac_rows = [
        {
            "Epoch": epoch,
            "AverageEpRet": 5.0,
            "StdEpRet": 1.0,
            "MaxEpRet": 6.0,
            "MinEpRet": 4.0,
            "AverageTestEpRet": 7.0 + epoch,
            "StdTestEpRet": 0.5,
            "MaxTestEpRet": 8.0,
            "MinTestEpRet": 6.0,
            "EpLen": 1000.0,
            "TestEpLen": 1000.0,
            "TotalEnvInteracts": 4000 * (epoch + 1),
            "LossPi": 1.0,
            "LossQ": 2.0,
            "Time": 9.0 * (epoch + 1),
        }
        for epoch in range(2)
    ]
    write_spinningup_run(
        tmp_path / "data" / "sac" / "sac_s1",
        "sac",
        sac_rows,
        {"seed": 1, "steps_per_epoch": 4000, "epochs": 2, "alpha": 0.2, "num_test_episodes": 10},
    )
    results = tmp_path / "results"

    code, _, err = run_cli(capsys, "import", "spinningup", tmp_path / "data", "--out", results)
    assert code == 2 and "does not name the env id; give --env ID" in err and not results.exists()

    code, _, err = run_cli(capsys, "import", "spinningup", tmp_path / "data", "--out", results, "--env", "Hopper-v2")

    assert (code, err) == (0, ""), err
    runs = {read_config(folder)["algo"]: folder for folder in (results / "runs").iterdir()}
    assert set(runs) == {"spinningup-ppo", "spinningup-sac"}
    ppo = pd.read_csv(runs["spinningup-ppo"] / "progress.csv")
    assert ppo["train_episodes"].tolist() == [10, 10, 10]  # 4000 steps / EpLen 400
    assert ppo["wall_time_s"].tolist() == [5.0, 10.0, 15.0] and ppo["spinningup/KL"].tolist() == [0.01] * 3
    assert json.loads((runs["spinningup-ppo"] / "result.json").read_text())["final_eval_return"] is None
    sac = json.loads((runs["spinningup-sac"] / "result.json").read_text())
    assert (sac["final_eval_return"], sac["final_eval_episodes"], sac["steps"]) == (8.0, 10, 8000)
    config = read_config(runs["spinningup-sac"])
    assert config["seed"] == 1 and config["source"]["given"] == {"env_id": "--env"}


# --- tidy CSV, and the reference comparison ------------------------------------------------


def test_tidy_csv_runs_compare_with_published_numbers_on_their_own_metric(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows, last_100 = [], []
    for seed in range(5):
        returns = 2000 + 100 * seed + rng.normal(0, 50, 1000)
        last_100.append(returns[-100:].mean())
        rows += [
            {
                "run": f"mine-{seed}",
                "algo": "ppo",
                "env": "Hopper-v5",
                "seed": seed,
                "step": 1000 * (k + 1),
                "return": value,
                "eval_return": value + 10 if (k + 1) % 100 == 0 else "",
            }
            for k, value in enumerate(returns)
        ]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    results = tmp_path / "results"

    code, _, err = run_cli(capsys, "import", "csv", tmp_path / "runs.csv", "--out", results)

    assert (code, err) == (0, ""), err
    assert len(list((results / "runs").iterdir())) == 5
    table = reference.reproduction_table(results, "algos-v5", np.random.default_rng(0), n_resamples=200).table
    cleanrl = table[(table["source"] == "cleanrl") & (table["env_id"] == "Hopper-v5")].iloc[0]
    assert cleanrl["ours"] == pytest.approx(np.mean(last_100)) and cleanrl["n_seeds"] == 5
    report = build_report(results, options=ReportOptions(reference="algos-v5", n_resamples=200))
    assert "Reproduction of published results" in (report / "report.md").read_text()


# --- idempotence, collisions, bad input -----------------------------------------------------


def write_csv(path: Path, rows: list[tuple]) -> Path:
    lines = ["run,algo,env,seed,step,return"] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_importing_again_changes_nothing_and_a_second_run_with_the_same_seed_is_refused(tmp_path, capsys):
    first = write_csv(
        tmp_path / "a.csv", [("r", "mine", "Hopper-v5", 0, 100, 1.5), ("r", "mine", "Hopper-v5", 0, 200, 2.5)]
    )
    results = tmp_path / "results"
    assert run_cli(capsys, "import", "csv", first, "--out", results)[0] == 0
    written = {path: path.read_bytes() for path in results.rglob("*") if path.is_file()}

    code, out, _ = run_cli(capsys, "import", "csv", first, "--out", results)
    assert code == 0 and "already imported" in out
    assert {path: path.read_bytes() for path in results.rglob("*") if path.is_file()} == written

    other = write_csv(tmp_path / "b.csv", [("s", "mine", "Hopper-v5", 0, 100, 9.0)])
    code, _, err = run_cli(capsys, "import", "csv", other, "--out", results)
    assert code == 2 and "with seed 0 is already in the results" in err and len(err.splitlines()) == 1
    assert {path: path.read_bytes() for path in results.rglob("*") if path.is_file()} == written


def test_a_log_that_stops_short_of_its_budget_is_recorded_as_failed(tmp_path, capsys):
    folder = write_cleanrl_run(
        tmp_path / "runs", "Hopper-v4", 0, [1.0, 2.0, 3.0, 4.0], total_timesteps=512, budget=1024
    )

    code, out, err = run_cli(capsys, "import", "cleanrl", folder, "--out", tmp_path / "results")

    assert (code, err) == (0, "")
    result = json.loads((only_run(tmp_path / "results") / "result.json").read_text())
    assert result["status"] == "failed" and "ends at step 512 of its 1,024-step budget" in result["error"]


def sb3_folder_with_mixed_envs(root: Path) -> Path:
    folder = root / "mixed"
    folder.mkdir(parents=True)
    for rank, env_id in enumerate(("Hopper-v5", "Walker2d-v5")):
        (folder / f"{rank}.monitor.csv").write_text(
            f'#{{"t_start": {time.time()}, "env_id": "{env_id}"}}\nr,l,t\n10.0,100,1.0\n'
        )
    return folder


BAD_INPUT = [
    (
        "sb3 on a folder with no SB3 log",
        lambda root: ("sb3", _folder(root / "empty")),
        "no sb3 run found; expected a Stable-Baselines3",
    ),
    ("a path that does not exist", lambda root: ("sb3", root / "nowhere"), "no such file or folder"),
    ("an SB3 folder without returns", lambda root: ("sb3", _monitor_without_episodes(root)), "holds no returns"),
    ("a damaged Monitor file", lambda root: ("sb3", _damaged_monitor(root)), "not a Stable-Baselines3 Monitor file"),
    (
        "Monitor files of two envs",
        lambda root: ("sb3", sb3_folder_with_mixed_envs(root)),
        "names more than one env id: Hopper-v5 (0.monitor.csv), Walker2d-v5 (1.monitor.csv); give --env ID",
    ),
    (
        "a CSV run with two envs",
        lambda root: (
            "csv",
            write_csv(root / "m.csv", [("r", "a", "Hopper-v5", 0, 1, 1.0), ("r", "a", "Ant-v5", 0, 2, 1.0)]),
        ),
        "names more than one env id",
    ),
    (
        "a CSV without a step column",
        lambda root: ("csv", _csv_text(root, "run,algo,env,seed,return\nr,a,E-v1,0,1\n")),
        "missing column(s) step",
    ),
    (
        "a CSV with a column it does not know",
        lambda root: ("csv", _csv_text(root, "run,algo,env,seed,step,return,x\n")),
        "unknown column 'x'",
    ),
    (
        "a CSV step that is not a number",
        lambda root: ("csv", write_csv(root / "n.csv", [("r", "a", "E-v1", 0, "ten", 1.0)])),
        "line 2: step: expected a number, got 'ten'",
    ),
    (
        "a progress.txt without returns",
        lambda root: ("spinningup", _progress_text(root, "Epoch\tTotalEnvInteracts\n0\t4000\n")),
        "lacks the column(s) AverageEpRet",
    ),
    (
        "TensorBoard events without CleanRL's tags",
        lambda root: ("cleanrl", _foreign_events(root)),
        "hold no 'charts/episodic_return'",
    ),
]


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _monitor_without_episodes(root: Path) -> Path:
    (root / "quiet").mkdir()
    (root / "quiet" / "0.monitor.csv").write_text('#{"t_start": 1.0, "env_id": "Hopper-v5"}\nr,l,t\n')
    return root / "quiet"


def _damaged_monitor(root: Path) -> Path:
    (root / "damaged").mkdir()
    (root / "damaged" / "0.monitor.csv").write_text("r,l,t\n1,2,3\n")
    return root / "damaged"


def _csv_text(root: Path, text: str) -> Path:
    (root / "t.csv").write_text(text)
    return root / "t.csv"


def _progress_text(root: Path, text: str) -> Path:
    (root / "spin").mkdir()
    (root / "spin" / "progress.txt").write_text(text)
    return root / "spin"


def _foreign_events(root: Path) -> Path:
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(root / "other"))
    writer.add_scalar("loss", 1.0, 1)
    writer.close()
    return root / "other"


@pytest.mark.parametrize("case,make,expected", BAD_INPUT, ids=[case for case, _, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case, make, expected):
    source_format, path = make(_folder(tmp_path / "logs"))
    results = tmp_path / "results"

    code, out, err = run_cli(capsys, "import", source_format, path, "--out", results)

    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not results.exists()


def test_a_folder_that_is_not_a_results_folder_is_refused(tmp_path, capsys):
    csv = write_csv(tmp_path / "a.csv", [("r", "a", "Hopper-v5", 0, 100, 1.5)])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")

    code, _, err = run_cli(capsys, "import", "csv", csv, "--out", tmp_path / "elsewhere")

    assert code == 2 and "is not a results folder" in err
    assert [path.name for path in (tmp_path / "elsewhere").iterdir()] == ["notes.txt"]


def test_a_suite_run_into_the_folder_keeps_the_imported_runs(tmp_path, capsys):
    from trbench.suites.grid import load_suite
    from trbench.suites.runner import check_out_dir, sort_run_folders

    results = tmp_path / "results"
    assert (
        run_cli(
            capsys,
            "import",
            "csv",
            write_csv(tmp_path / "a.csv", [("r", "a", "Hopper-v5", 0, 100, 1.5)]),
            "--out",
            results,
        )[0]
        == 0
    )
    suite_file = tmp_path / "s.toml"
    suite_file.write_text('name = "s"\nsteps = 2048\nseeds = 1\nenvs = ["Pendulum-v1"]\nalgos = ["ppo"]\n')
    suite = load_suite(suite_file)

    check_out_dir(results, suite)  # a folder of imported runs alone takes a suite
    assert sort_run_folders(results, suite) == (0, 0)
    assert len(list((results / "runs").iterdir())) == 1

    code, out, _ = run_cli(capsys, "status", results)
    assert code == 0 and "1 imported run(s)" in out
