"""A tidy CSV, for runs of any other library: one row per training episode or evaluation.

Columns ``run, algo, env, seed, step, return`` and optionally ``eval_return``: ``run`` names the
run the row belongs to (a file may hold many), ``return`` is the return of one training episode
that ended at ``step`` (empty on a row that only carries an evaluation), and ``eval_return`` the
mean return of a deterministic evaluation at ``step`` (empty when none ran there). ``algo`` is the
arm's label in reports; the algo, env and seed of a run are the same on all its rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trbench.importers.source import Claim, SourceRun, empty_evaluations, episodes_by_step, refuse

FORMAT = "csv"
LIBRARY = "unknown"
REQUIRED = ("run", "algo", "env", "seed", "step", "return")
OPTIONAL = ("eval_return",)
EXPECTED = f"a tidy CSV with the columns {', '.join(REQUIRED)}[, {', '.join(OPTIONAL)}]"


def read(path: Path) -> list[SourceRun]:
    if path.is_dir():
        raise refuse(path, f"is a folder; the csv format reads one file, {EXPECTED}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise refuse(path, f"unreadable CSV ({str(exc).splitlines()[0]}); expected {EXPECTED}") from None
    columns = [column.strip() for column in table.columns]
    table.columns = columns
    missing = [column for column in REQUIRED if column not in columns]
    if missing:
        raise refuse(path, f"missing column(s) {', '.join(missing)}; expected {EXPECTED}")
    unknown = [column for column in columns if column not in REQUIRED + OPTIONAL]
    if unknown:
        raise refuse(path, f"unknown column {unknown[0]!r}; allowed: {', '.join(REQUIRED + OPTIONAL)}")
    numbers = {
        column: _numbers(path, table, column, required=column == "step")
        for column in ("step", "return", "eval_return")
        if column in columns
    }
    runs = []
    for run_name, rows in table.groupby("run", sort=True):
        index = rows.index
        steps = numbers["step"][index]
        returns = numbers["return"][index]
        training = episodes_by_step(steps[np.isfinite(returns)], returns[np.isfinite(returns)])
        evaluations = empty_evaluations()
        if "eval_return" in numbers and np.isfinite(numbers["eval_return"][index]).any():
            evals = pd.DataFrame({"step": steps, "eval_return": numbers["eval_return"][index]}).dropna()
            evaluations = evals.groupby("step", sort=True)["eval_return"].mean().reset_index()
            evaluations["eval_return_std"] = np.nan
            evaluations["eval_episodes"] = np.nan
        runs.append(
            SourceRun(
                format=FORMAT,
                library=LIBRARY,
                path=path,
                files=[path.name],
                training=training,
                evaluations=evaluations,
                scalars=pd.DataFrame({"step": np.unique(steps)}),
                meaning={
                    "train_return": "the CSV's return column: the return of each training episode, at the step it ended",
                    "eval_return": (
                        "the CSV's eval_return column"
                        if len(evaluations)
                        else "none: the CSV has no eval_return for this run"
                    ),
                    "final_eval_return": (
                        "the CSV's last eval_return of the run"
                        if len(evaluations)
                        else "none: the CSV has no eval_return for this run"
                    ),
                },
                env_id=_claims(rows, "env", run_name),
                seed=_seed_claims(path, rows, run_name),
                algorithm=_claims(rows, "algo", run_name),
                config={"run": run_name},
                unknown=[
                    "version and configuration: a tidy CSV records neither",
                    "eval_return_std and the number of evaluation episodes",
                ],
            )
        )
    if not runs:
        raise refuse(path, f"has no rows; expected {EXPECTED}")
    return runs


def _numbers(path: Path, table: pd.DataFrame, column: str, required: bool) -> np.ndarray:
    """A numeric column; an empty cell is NaN, unless ``required``; anything else is refused."""
    text = table[column].str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero((text != "").to_numpy() & ~np.isfinite(values))
    if required:
        bad = np.union1d(bad, np.flatnonzero((text == "").to_numpy()))
    if bad.size:
        line = int(bad[0]) + 2  # the header is line 1
        raise refuse(path, f"line {line}: {column}: expected a number, got {table[column].iloc[bad[0]]!r}")
    return values


def _claims(rows: pd.DataFrame, column: str, run_name: str) -> list[Claim]:
    """One claim per distinct value: several mean the run mixes them, which the writer refuses."""
    return [
        Claim(value, f"{column} column of run {run_name!r}") for value in sorted(set(rows[column].str.strip())) if value
    ]


def _seed_claims(path: Path, rows: pd.DataFrame, run_name: str) -> list[Claim]:
    claims = []
    for value in sorted(set(rows["seed"].str.strip())):
        if not value:
            continue
        if not value.isdigit():
            raise refuse(path, f"run {run_name!r}: seed: expected a whole number >= 0, got {value!r}")
        claims.append(Claim(int(value), f"seed column of run {run_name!r}"))
    return claims
