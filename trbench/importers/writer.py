"""Turning a source run into an ordinary run folder (results/README.md, "Imported runs").

Everything is checked before anything is written: the identity of every run (from the log, or the
command line where the log is silent or contradicts itself), and that no run would take the place
of another in the results folder. Each folder is written in a staging folder and renamed into
``runs/``, so a folder under ``runs/`` is always whole.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import trbench
from trbench.base.errors import UsageError, check_output_folder
from trbench.base.files import json_text
from trbench.base.results_folder import RUNS_DIR, run_folders
from trbench.base.run_folder import (
    CONFIG_FILE,
    PROGRESS_FILE,
    PROGRESS_FIXED_COLUMNS,
    RESULT_FILE,
    SOURCE_KEY,
    RunFolderError,
    read_config,
    store_run_files,
)
from trbench.importers.source import Claim, SourceRun

MAX_ENV_ID = 100


@dataclass(frozen=True)
class Identity:
    """What the command line gives: each replaces what the log says (and is recorded as given)."""

    algo: str | None = None
    env_id: str | None = None
    seed: int | None = None


@dataclass
class PreparedRun:
    source: SourceRun
    run_id: str
    label: str
    env_id: str
    seed: int
    progress: pd.DataFrame
    result: dict[str, Any]
    config: dict[str, Any]


def check_destination(out: Path) -> None:
    """A results folder to add runs to: new, empty, or one with runs/ (a suite's, or an earlier import's)."""
    check_output_folder(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "runs").is_dir():
        raise UsageError(
            f"--out: {out} holds files but no runs/ folder, so it is not a results folder; give a "
            "suite's results folder, an earlier import's, or a new folder"
        )


def _pick(source: SourceRun, claims: list[Claim], given: Any, option: str, what: str) -> tuple[Any, list[Claim]]:
    """The value of one identity field and the claims the command line overrode."""
    distinct = list(dict.fromkeys(claim.value for claim in claims))
    if given is not None:
        return given, [claim for claim in claims if claim.value != given]
    if not distinct:
        raise UsageError(f"{source.path}: the log does not name the {what}; give {option}")
    if len(distinct) > 1:
        said = ", ".join(f"{claim.value} ({claim.where})" for claim in claims)
        raise UsageError(f"{source.path}: the log names more than one {what}: {said}; give {option}")
    return distinct[0], []


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def progress_table(source: SourceRun) -> pd.DataFrame:
    """progress.csv of the imported run: a row at every step at which the log recorded something,
    and one at the step where training ended when the log says it ended later."""
    steps = set(source.training["step"]) | set(source.evaluations["step"]) | set(source.scalars["step"])
    if source.steps_taken is not None:
        steps.add(float(source.steps_taken))
    values = np.array(sorted(steps), dtype=float)
    if values.size and (values.min() < 0 or not np.all(np.equal(np.mod(values, 1), 0))):
        raise UsageError(
            f"{source.path}: steps must be whole numbers >= 0, got {values[(values < 0) | (np.mod(values, 1) != 0)][0]:g}"
        )
    frame = pd.DataFrame({"step": values.astype(np.int64)})
    for part in (source.training, source.evaluations.drop(columns="eval_episodes"), source.scalars):
        frame = frame.merge(part.assign(step=part["step"].astype(np.int64)), on="step", how="left")
    frame["train_episodes"] = frame["train_episodes"].fillna(0).astype(np.int64)
    frame.insert(0, "iteration", np.arange(1, len(frame) + 1))
    if "wall_time_s" not in frame:
        frame["wall_time_s"] = np.nan
    rest = [column for column in frame.columns if column not in PROGRESS_FIXED_COLUMNS]
    return frame[PROGRESS_FIXED_COLUMNS + rest]


def _number(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def result_record(source: SourceRun, progress: pd.DataFrame) -> dict[str, Any]:
    steps = int(progress["step"].max()) if len(progress) else 0
    evaluations = source.evaluations.sort_values("step", kind="stable")
    final = evaluations.iloc[-1] if len(evaluations) else None
    status, error = "complete", None
    if source.budget:
        # the source stopped early when its log ends more than a rollout (or 1%) short of its budget
        tolerance = max(source.iteration_steps or 0, 0.01 * source.budget)
        if steps < source.budget - tolerance:
            status, error = "failed", f"the imported log ends at step {steps:,} of its {source.budget:,}-step budget"
    wall = _number(source.wall_time_s)
    episodes = _number(final["eval_episodes"]) if final is not None else None
    return {
        "status": status,
        "error": error,
        "final_eval_return": _number(final["eval_return"]) if final is not None else None,
        "final_eval_return_std": _number(final["eval_return_std"]) if final is not None else None,
        "final_eval_episodes": int(episodes) if episodes is not None else None,
        "steps": steps,
        "wall_time_s": wall,
        "steps_per_second": steps / wall if wall else None,
    }


def _unknown(source: SourceRun, given: dict[str, str]) -> list[str]:
    unknown = list(source.unknown)
    for key, option in given.items():
        unknown.append(f"{key}: not in the log, given as {option}")
    if source.budget is None:
        unknown.append("steps: the step budget the source was given (the steps it took are used)")
    if source.wall_time_s is None:
        unknown.append("wall_time_s")
    return unknown


def _algorithm(source: SourceRun, identity: Identity) -> str | None:
    """The source's name for its algorithm; None when the log names none (or several) and --algo
    gives the arm's label instead."""
    distinct = list(dict.fromkeys(claim.value for claim in source.algorithm))
    if len(distinct) == 1:
        return str(distinct[0])
    if identity.algo:
        return None
    return _pick(source, source.algorithm, None, "--algo NAME", "algorithm")[0]  # raises: none, or several


def prepare(source: SourceRun, identity: Identity) -> PreparedRun:
    """Check one source run and build its files; UsageError when it cannot be imported."""
    if not source.has_returns():
        raise UsageError(f"{source.path}: the log holds no returns (no training episode and no evaluation)")
    env_id, env_overridden = _pick(source, source.env_id, identity.env_id, "--env ID", "env id")
    seed, seed_overridden = _pick(source, source.seed, identity.seed, "--seed N", "seed")
    algorithm = _algorithm(source, identity)
    env_id = str(env_id)
    if not env_id or len(env_id) > MAX_ENV_ID or any(character.isspace() for character in env_id):
        raise UsageError(
            f"{source.path}: env id {env_id!r} is not an env id (no spaces, at most {MAX_ENV_ID} characters); give --env ID"
        )
    if not isinstance(seed, int) or seed < 0:
        raise UsageError(f"--seed: must be >= 0, got {seed!r}")
    label = identity.algo or f"{source.label_prefix}{algorithm}"
    progress = progress_table(source)
    result = result_record(source, progress)
    progress_text = progress.to_csv(index=False, lineterminator="\n")
    payload = json.dumps(
        {
            "format": source.format,
            "label": label,
            "algorithm": algorithm,
            "env_id": env_id,
            "seed": seed,
            "progress": progress_text,
            "result": result,
        },
        sort_keys=True,
    )
    run_id = f"{_safe(label)}__{_safe(env_id)}__s{seed}__{hashlib.sha256(payload.encode()).hexdigest()[:12]}"

    given = {
        key: option
        for key, option, value, claims in (
            ("env_id", "--env", identity.env_id, source.env_id),
            ("seed", "--seed", identity.seed, source.seed),
        )
        if value is not None and not claims
    }
    if algorithm is None:
        given["algorithm"] = "--algo (the arm's label; the log names no one algorithm)"
    algorithm_overridden = source.algorithm if algorithm is None else []
    overridden = {
        key: [{"value": claim.value, "where": claim.where} for claim in claims]
        for key, claims in (("env_id", env_overridden), ("seed", seed_overridden), ("algorithm", algorithm_overridden))
        if claims
    }
    versions = {**({source.library: source.version} if source.version else {}), **source.versions}
    config = {
        "run_id": run_id,
        "algo": label,
        "algorithm": algorithm,
        "env_id": env_id,
        "env_backend": None,
        "seed": seed,
        "seeds": None,
        "steps": source.budget or result["steps"],
        "device": None,
        "config": None,
        "overrides": {},
        "versions": versions,
        "git_commit": None,
        "hostname": None,
        "created_at": source.started_at,
        SOURCE_KEY: {
            "format": source.format,
            "library": source.library,
            "version": source.version,
            "path": str(source.path.resolve()),
            "files": source.files,
            "config": source.config,
            "meaning": source.meaning,
            "unknown": _unknown(source, given),
            "given": given,
            "overridden": overridden,
            "iteration_steps": source.iteration_steps,
            "imported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "imported_with": f"trbench {trbench.__version__}",
        },
    }
    return PreparedRun(source, run_id, label, env_id, seed, progress, result, config)


def _existing_identities(runs_dir: Path) -> dict[tuple[str, str, int], str]:
    """(algo, env_id, seed) -> run id of every readable run folder already in runs/."""
    identities: dict[tuple[str, str, int], str] = {}
    for folder in run_folders(runs_dir.parent):
        try:
            config = read_config(folder)
            identities[(str(config["algo"]), str(config["env_id"]), int(config["seed"]))] = folder.name
        except (RunFolderError, ValueError, KeyError, TypeError):
            continue  # a damaged or unfinished folder: the report lists it, it claims no identity
    return identities


def plan(prepared: Sequence[PreparedRun], runs_dir: Path) -> tuple[list[PreparedRun], list[PreparedRun]]:
    """(to write, already there): refuses a run that would stand beside another with the same
    algo, env and seed, which a report would count as two seeds."""
    identities = _existing_identities(runs_dir)
    paths = {run_id: "runs/" + run_id for run_id in identities.values()}
    to_write: list[PreparedRun] = []
    present: list[PreparedRun] = []
    for run in prepared:
        key = (run.label, run.env_id, run.seed)
        if (runs_dir / run.run_id).exists() or run.run_id in {other.run_id for other in to_write}:
            present.append(run)
            continue
        if key in identities:
            other = paths.get(identities[key], identities[key])
            raise UsageError(
                f"{run.source.path}: {run.label} on {run.env_id} with seed {run.seed} is already in the "
                f"results ({other}); give it another --seed or --algo, or import into another --out"
            )
        identities[key] = run.run_id
        paths[run.run_id] = str(run.source.path)
        to_write.append(run)
    return to_write, present


def write_run(run: PreparedRun, results_dir: Path) -> Path:
    """config.json, progress.csv and result.json (last), in a staging folder renamed into runs/."""
    runs_dir = results_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".importing-", dir=results_dir))
    try:
        progress_csv = run.progress.to_csv(index=False, lineterminator="\n")
        files = {CONFIG_FILE: json_text(run.config), PROGRESS_FILE: progress_csv, RESULT_FILE: json_text(run.result)}
        store_run_files(staging, {name: text.encode() for name, text in files.items()})
        os.replace(staging, runs_dir / run.run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return runs_dir / run.run_id
