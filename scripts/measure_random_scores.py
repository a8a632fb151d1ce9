"""Measure the return of a uniform-random policy on the MuJoCo tasks and record it as data.

The random-policy return is the lower anchor of score normalisation (see
``analysis/normalization.py``). It is measured here rather than copied from a paper because the
published random scores were obtained on older env versions (rllab, gym v1-v3) whose rewards
differ from gymnasium's v4/v5 tasks.

Protocol: actions are drawn i.i.d. uniformly from the env's action box with
``numpy.random.default_rng(seed)``; the env is reset with ``reset(seed=seed)`` once and then
without a seed, so the episode sequence is fixed by ``seed``; the episode's undiscounted return
is summed over its steps until termination or the time limit. The mean, standard deviation and
count of episode returns are written into the ``random_*`` columns of
``analysis/data/normalization.csv`` (the reference columns are kept as they are).

It steps the MuJoCo envs, so it is a script of its own rather than part of ``analysis/``, which
only reads results and this data file.

Run: ``python scripts/measure_random_scores.py [--episodes N] [--seed S] [ENV_ID ...]``
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

NORMALIZATION_CSV = Path(__file__).resolve().parent.parent / "analysis" / "data" / "normalization.csv"

TASKS = (
    "Hopper",
    "HalfCheetah",
    "Walker2d",
    "Swimmer",
    "Ant",
    "InvertedPendulum",
    "InvertedDoublePendulum",
    "Reacher",
    "Humanoid",
)
VERSIONS = ("v4", "v5")
DEFAULT_ENV_IDS = tuple(f"{task}-{version}" for task in TASKS for version in VERSIONS)

CSV_COLUMNS = (
    "env_id",
    "random_return",
    "random_return_std",
    "random_episodes",
    "random_seed",
    "random_source",
    "reference_return",
    "reference_source",
)


@dataclass(frozen=True)
class RandomScore:
    env_id: str
    mean_return: float
    std_return: float
    episodes: int
    seed: int
    gymnasium_version: str
    mujoco_version: str


def measure_random_score(env_id: str, episodes: int, seed: int) -> RandomScore:
    """Mean and std of the undiscounted return of ``episodes`` uniform-random episodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id)
    action_rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    returns = np.empty(episodes)
    env.reset(seed=seed)
    for episode in range(episodes):
        if episode > 0:
            env.reset()
        total, done = 0.0, False
        while not done:
            action = action_rng.uniform(low, high).astype(env.action_space.dtype)
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns[episode] = total
    env.close()
    return RandomScore(
        env_id=env_id,
        mean_return=float(returns.mean()),
        std_return=float(returns.std(ddof=1)) if episodes > 1 else 0.0,
        episodes=episodes,
        seed=seed,
        gymnasium_version=gym.__version__,
        mujoco_version=mujoco.__version__,
    )


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {row["env_id"]: row for row in csv.DictReader(handle)}


def write_rows(path: Path, rows: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for env_id in sorted(rows):
            writer.writerow({column: rows[env_id].get(column, "") for column in CSV_COLUMNS})
    temporary.replace(path)


def merge_random_score(row: dict[str, str], score: RandomScore) -> dict[str, str]:
    merged = dict(row)
    merged.update(
        env_id=score.env_id,
        random_return=f"{score.mean_return:.4f}",
        random_return_std=f"{score.std_return:.4f}",
        random_episodes=str(score.episodes),
        random_seed=str(score.seed),
        random_source=(
            "measured by scripts/measure_random_scores.py: uniform-random actions, "
            f"gymnasium {score.gymnasium_version}, mujoco {score.mujoco_version}"
        ),
    )
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_ids", nargs="*", default=list(DEFAULT_ENV_IDS))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=NORMALIZATION_CSV)
    args = parser.parse_args(argv)
    rows = read_rows(args.csv)
    for env_id in args.env_ids:
        score = measure_random_score(env_id, args.episodes, args.seed)
        rows[env_id] = merge_random_score(rows.get(env_id, {"env_id": env_id}), score)
        write_rows(args.csv, rows)  # after each env, so an interrupted run keeps what it measured
        print(f"{env_id}: {score.mean_return:.2f} ± {score.std_return:.2f} ({score.episodes} episodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
