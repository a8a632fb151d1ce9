"""Rebuild docs/import-example/: Stable-Baselines3 PPO runs, imported with `trbench import sb3`,
in one report beside trbench's PPO and TRPO on the same env, budget and evaluation interval.

    .venv/bin/pip install -e '.[sb3]'
    .venv/bin/python examples/import_comparison/run.py --work /some/scratch/folder

Trains 3 SB3 runs and the 6 runs of suite.toml (a few minutes on 2 cores), imports, reports, and
copies the report's markdown, CSV tables and PNG figures to docs/import-example/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENV_ID, STEPS, EVAL_EVERY, SEEDS = "InvertedPendulum-v5", 20_480, 2048, (0, 1, 2)


def train_sb3(folder: Path, seed: int) -> None:
    """SB3 PPO at its defaults, logged the usual way: Monitor files, EvalCallback, the saved model."""
    env = make_vec_env(ENV_ID, n_envs=1, seed=seed, monitor_dir=str(folder))
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=10_000 + seed)
    evaluations = EvalCallback(
        eval_env, eval_freq=EVAL_EVERY, n_eval_episodes=10, log_path=str(folder), deterministic=True, verbose=0
    )
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    model.learn(STEPS, callback=evaluations)
    model.save(folder / "ppo")


def trbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "trbench.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the logs and results")
    work = parser.parse_args().work
    for seed in SEEDS:
        folder = work / "sb3" / f"ppo_{ENV_ID}_{seed}"
        if not (folder / "ppo.zip").exists():
            train_sb3(folder, seed)
    results = work / "results"
    trbench("run", str(HERE / "suite.toml"), "--out", str(results))
    trbench("import", "sb3", str(work / "sb3"), "--out", str(results), "--algo", "sb3-ppo")
    trbench("report", str(results))
    trbench("report", str(results), "--metric", "last100")
    target = ROOT / "docs" / "import-example"
    shutil.rmtree(target, ignore_errors=True)
    for report, name in ((results / "report", "final"), (results / "report-last100", "last100")):
        (target / name / "figures").mkdir(parents=True)
        for path in report.glob("*.md"):
            shutil.copy(path, target / name / path.name)
        for path in report.glob("*.csv"):
            shutil.copy(path, target / name / path.name)
        for path in (report / "figures").glob("*.png"):
            shutil.copy(path, target / name / "figures" / path.name)
    print(f"copied the reports' markdown, CSV and PNG files to {target}")


if __name__ == "__main__":
    main()
