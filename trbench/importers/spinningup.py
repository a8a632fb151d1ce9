"""Spinning Up output directories: ``progress.txt`` and ``config.json`` from its EpochLogger.

``progress.txt`` is tab-separated, one row per epoch: ``Epoch``, ``TotalEnvInteracts``, the
epoch's training-episode returns as ``AverageEpRet``/``StdEpRet``/``MaxEpRet``/``MinEpRet``, their
mean length ``EpLen``, ``Time`` (seconds since the start), the losses, and for the off-policy
algorithms (DDPG, TD3, SAC) the deterministic test episodes after the epoch as ``AverageTestEpRet``
and ``StdTestEpRet``. ``config.json`` is the training function's arguments (``seed``,
``steps_per_epoch``, ``epochs``, ...); it does not name the env, whose maker it records as a lambda.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trbench.importers.source import Claim, SourceRun, as_int, empty_evaluations, find_run_folders, refuse

FORMAT = "spinningup"
LIBRARY = "spinningup"
EXPECTED = "a Spinning Up output directory (progress.txt, and config.json)"
PROGRESS_FILE, CONFIG_FILE = "progress.txt", "config.json"
MAPPED = ("TotalEnvInteracts", "AverageEpRet", "AverageTestEpRet", "StdTestEpRet", "Time")
# which argument only one training function has: how config.json tells the algorithm
ALGORITHM_ARGUMENTS = (
    ("clip_ratio", "ppo"),
    ("alpha", "sac"),
    ("policy_delay", "td3"),
    ("act_noise", "ddpg"),
    ("delta", "trpo"),
    ("train_v_iters", "vpg"),
)


def is_run_folder(folder: Path) -> bool:
    return (folder / PROGRESS_FILE).is_file()


def read(path: Path) -> list[SourceRun]:
    return [read_run(folder) for folder in find_run_folders(path, is_run_folder)]


def read_progress(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise refuse(path, f"not a Spinning Up progress.txt ({str(exc).splitlines()[0]})") from None
    missing = [column for column in ("TotalEnvInteracts", "AverageEpRet") if column not in table.columns]
    if missing:
        raise refuse(
            path,
            f"lacks the column(s) {', '.join(missing)}; a Spinning Up progress.txt has "
            "TotalEnvInteracts and the epoch's training returns as AverageEpRet",
        )
    table = table.apply(pd.to_numeric, errors="coerce")
    if table["TotalEnvInteracts"].isna().any():
        raise refuse(path, "a row's TotalEnvInteracts is not a number")
    return table


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise refuse(path, f"unreadable Spinning Up config.json ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise refuse(path, "not a Spinning Up config.json (expected an object of the training function's arguments)")
    return config


def algorithm_of(config: dict[str, Any]) -> str | None:
    """TRPO and NPG record their name (``algo``); the others have one argument of their own."""
    if isinstance(config.get("algo"), str):
        return config["algo"]
    return next((name for argument, name in ALGORITHM_ARGUMENTS if argument in config), None)


def read_run(folder: Path) -> SourceRun:
    progress = read_progress(folder / PROGRESS_FILE)
    config = read_config(folder / CONFIG_FILE)
    steps = progress["TotalEnvInteracts"].to_numpy(dtype=float)
    epoch_steps = np.diff(np.concatenate([[0.0], steps]))
    # Spinning Up logs each epoch's mean return, not how many episodes it averages: estimated
    # from the steps of the epoch and their mean episode length
    lengths = progress["EpLen"].to_numpy(dtype=float) if "EpLen" in progress.columns else np.full(steps.size, np.nan)
    usable = np.isfinite(lengths) & (lengths > 0)
    counts = np.ones_like(steps)
    counts[usable] = np.maximum(np.floor(epoch_steps[usable] / lengths[usable]), 1.0)
    returns = progress["AverageEpRet"].to_numpy(dtype=float)
    has_return = np.isfinite(returns)
    training = pd.DataFrame(
        {"step": steps[has_return], "train_return": returns[has_return], "train_episodes": counts[has_return]}
    )

    test_episodes = as_int(config.get("num_test_episodes"))
    if "AverageTestEpRet" in progress.columns:
        evaluations = pd.DataFrame(
            {
                "step": steps,
                "eval_return": progress["AverageTestEpRet"].to_numpy(dtype=float),
                "eval_return_std": progress["StdTestEpRet"].to_numpy(dtype=float)
                if "StdTestEpRet" in progress
                else math.nan,
                "eval_episodes": test_episodes if test_episodes is not None else math.nan,
            }
        ).dropna(subset=["eval_return"])
        eval_meaning = "AverageTestEpRet: the mean return of the deterministic test episodes after each epoch" + (
            f" ({test_episodes} of them)" if test_episodes else ""
        )
        final_meaning = "the last epoch's AverageTestEpRet"
    else:
        evaluations = empty_evaluations()
        eval_meaning = final_meaning = (
            "none: Spinning Up's on-policy algorithms (VPG, TRPO, PPO) log no test "
            "episodes; compare these runs with `trbench report --metric last100`"
        )
    scalars = pd.DataFrame({"step": steps})
    if "Time" in progress.columns:
        scalars["wall_time_s"] = progress["Time"].to_numpy(dtype=float)
    for column in progress.columns:
        if column not in MAPPED:
            scalars[f"{FORMAT}/{column}"] = progress[column].to_numpy(dtype=float)

    algorithm = algorithm_of(config)
    epochs, per_epoch = as_int(config.get("epochs")), as_int(config.get("steps_per_epoch"))
    unknown = [
        "version: Spinning Up logs none",
        "env_id: config.json records the env's maker, not its id",
        "train_episodes: estimated as the epoch's steps / EpLen (Spinning Up logs each epoch's mean "
        "return, not its episode count)",
    ]
    if not config:
        unknown.append("configuration: no config.json")
    return SourceRun(
        format=FORMAT,
        library=LIBRARY,
        path=folder,
        label_prefix="spinningup-",
        files=[PROGRESS_FILE] + ([CONFIG_FILE] if config else []),
        training=training,
        evaluations=evaluations,
        scalars=scalars,
        meaning={
            "train_return": "AverageEpRet: the mean return of the training episodes that ended in each epoch",
            "eval_return": eval_meaning,
            "final_eval_return": final_meaning,
        },
        env_id=[
            Claim(str(config[key]), "config.json")
            for key in ("env_name", "env_id", "env")
            if isinstance(config.get(key), str)
        ],
        seed=[Claim(int(config["seed"]), "config.json")] if as_int(config.get("seed")) is not None else [],
        algorithm=[Claim(algorithm, "config.json arguments")] if algorithm else [],
        config=config,
        unknown=unknown,
        budget=epochs * per_epoch if epochs and per_epoch else None,
        steps_taken=int(steps.max()) if steps.size else None,
        iteration_steps=per_epoch,
        wall_time_s=float(progress["Time"].max())
        if "Time" in progress.columns and progress["Time"].notna().any()
        else None,
    )
