"""What an importer reads from another library's log: one source run, before it becomes a run folder.

Each format's reader (sb3, cleanrl, spinningup, tianshou, tidy_csv) turns a log into
:class:`SourceRun` objects; :mod:`trbench.importers.writer` turns those into run folders. A reader
states what the log says and nothing more: where the log names the env, seed or algorithm it says
so in a claim (value and where it was read), and where it is silent the field stays empty, for the
writer to take from the command line or refuse.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trbench.base.errors import UsageError

TRAINING_COLUMNS = ["step", "train_return", "train_episodes"]
EVALUATION_COLUMNS = ["step", "eval_return", "eval_return_std", "eval_episodes"]
# the keys of SourceRun.meaning: what each of these is in the source's terms, or why it is absent
MEANING_KEYS = ("train_return", "eval_return", "final_eval_return")


@dataclass(frozen=True)
class Claim:
    """A value the log states, and where: ``Claim("Hopper-v4", "run name")``."""

    value: Any
    where: str


@dataclass
class SourceRun:
    """One run of another library, as its log records it.

    ``training``: one row per step at which training episodes ended (TRAINING_COLUMNS: their
    mean return and their count); ``evaluations``: one row per evaluation (EVALUATION_COLUMNS);
    ``scalars``: ``step`` plus any further per-step columns (``wall_time_s``, and the source's own
    scalars named ``<format>/<its name>``). ``meaning`` says, for each of MEANING_KEYS, what the
    source's number is, or why it has none. ``unknown`` lists what the log does not tell.
    """

    format: str
    library: str
    path: Path
    files: list[str]
    training: pd.DataFrame
    evaluations: pd.DataFrame
    scalars: pd.DataFrame
    meaning: dict[str, str]
    env_id: list[Claim] = field(default_factory=list)
    seed: list[Claim] = field(default_factory=list)
    algorithm: list[Claim] = field(default_factory=list)
    version: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # other versions the log tells (torch, python, ...)
    config: dict[str, Any] = field(default_factory=dict)  # the source's configuration, as its log records it
    unknown: list[str] = field(default_factory=list)
    budget: int | None = None  # the step budget the source was given, when its log says
    steps_taken: int | None = None  # where training ended, when the log says more than its last row
    iteration_steps: int | None = None  # env steps per rollout/epoch, when the log tells it
    wall_time_s: float | None = None
    started_at: str | None = None  # ISO time the source run started, when the log tells
    label_prefix: str = ""  # the arm's default label is this prefix + the algorithm ("sb3-ppo")

    def has_returns(self) -> bool:
        return bool(len(self.training)) or bool(len(self.evaluations))


def empty_training() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=float) for column in TRAINING_COLUMNS})


def empty_evaluations() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=float) for column in EVALUATION_COLUMNS})


def empty_scalars() -> pd.DataFrame:
    return pd.DataFrame({"step": pd.Series(dtype=float)})


def episodes_by_step(steps: Iterable[float], returns: Iterable[float]) -> pd.DataFrame:
    """Single training episodes (the step each ended at, its return) as TRAINING_COLUMNS rows:
    episodes that ended at the same step share a row, with their mean return and their count."""
    frame = pd.DataFrame(
        {"step": np.asarray(list(steps), dtype=float), "train_return": np.asarray(list(returns), dtype=float)}
    )
    frame = frame[np.isfinite(frame["step"]) & np.isfinite(frame["train_return"])]
    if frame.empty:
        return empty_training()
    grouped = frame.groupby("step", sort=True)["train_return"].agg(["mean", "size"]).reset_index()
    return pd.DataFrame({"step": grouped["step"], "train_return": grouped["mean"], "train_episodes": grouped["size"]})


def find_run_folders(path: Path, is_run_folder: Callable[[Path], bool]) -> list[Path]:
    """``path`` itself when it is a run folder of the format, else every run folder below it, sorted."""
    if is_run_folder(path):
        return [path]
    found = []
    for root, folders, _ in os.walk(path):
        folders.sort()
        if is_run_folder(Path(root)):
            found.append(Path(root))
    return sorted(found)


def as_int(value: Any) -> int | None:
    """A whole number from a config value (``1000000.0``, ``"1_000_000"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return as_int(float(value.replace("_", "")))
        except ValueError:
            return None
    return None


def median_spacing(steps: Iterable[float]) -> int | None:
    """The typical distance between consecutive logged steps (one rollout or epoch), or None."""
    distinct = np.unique(np.asarray(list(steps), dtype=float))
    if distinct.size < 2:
        return None
    return int(np.median(np.diff(distinct)))


def refuse(path: Path, problem: str) -> UsageError:
    """The one-line error for a log that cannot be imported: names the file, says what is expected."""
    return UsageError(f"{path}: {problem}")
