"""CleanRL run directories: TensorBoard event files written by its single-file scripts.

CleanRL names a run ``{env_id}__{exp_name}__{seed}__{unix time}`` (the folder under ``runs/``),
writes its arguments once as the text ``hyperparameters`` (a markdown table ``|param|value|``),
logs ``charts/episodic_return`` at the global step each training episode ends, and per iteration
``charts/SPS``, ``charts/learning_rate`` and ``losses/*``. It runs no deterministic evaluation.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from trbench.importers.source import (
    Claim,
    SourceRun,
    as_int,
    empty_evaluations,
    episodes_by_step,
    find_run_folders,
    median_spacing,
    refuse,
)
from trbench.importers.tensorboard_events import holds_event_files, read_event_log, source_scalars

FORMAT = "cleanrl"
LIBRARY = "cleanrl"
EXPECTED = "a CleanRL run directory (TensorBoard event files with charts/episodic_return)"
RETURN_TAG = "charts/episodic_return"
ITERATION_TAG = "charts/SPS"  # logged once per iteration, so its spacing is the rollout size
NO_EVALUATION = (
    "none: CleanRL runs no deterministic evaluation; compare these runs with "
    "`trbench report --metric last100` (training return of the last 100 episodes)"
)


def is_run_folder(folder: Path) -> bool:
    return holds_event_files(folder)


def read(path: Path) -> list[SourceRun]:
    return [read_run(folder) for folder in find_run_folders(path, is_run_folder)]


def parse_value(text: str) -> Any:
    """A value as CleanRL's table prints it (str() of the argument) back to a Python value."""
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def parse_hyperparameters(text: str) -> dict[str, Any]:
    """CleanRL's ``|param|value|`` table; the header and separator rows are skipped."""
    table = {}
    for line in text.splitlines():
        cells = line.strip().strip("|").split("|")
        if len(cells) < 2 or cells[0] in ("param", "-") or set(cells[0]) <= {"-", ":"}:
            continue
        table[cells[0].strip()] = parse_value("|".join(cells[1:]))
    return table


def parse_run_name(name: str) -> dict[str, Any]:
    """env id, exp_name and seed from ``env__exp__seed__time``; empty when the name is not one."""
    parts = name.split("__")
    if len(parts) != 4 or as_int(parts[2]) is None or as_int(parts[3]) is None:
        return {}
    return {"env_id": parts[0], "exp_name": parts[1], "seed": int(parts[2])}


def algorithm_of(exp_name: str) -> str:
    """CleanRL's script names start with the algorithm: ppo_continuous_action -> ppo."""
    return exp_name.split("_")[0]


def read_run(folder: Path) -> SourceRun:
    log = read_event_log(folder)
    if RETURN_TAG not in log.scalars:
        raise refuse(
            folder,
            f"its TensorBoard events hold no '{RETURN_TAG}'; a CleanRL run logs each training episode's return there",
        )
    episodes = log.scalars[RETURN_TAG]
    hyperparameters = parse_hyperparameters(log.texts.get("hyperparameters", ""))
    from_name = parse_run_name(folder.name)

    env_claims = [Claim(str(hyperparameters["env_id"]), "hyperparameters")] if hyperparameters.get("env_id") else []
    seed_claims = (
        [Claim(int(hyperparameters["seed"]), "hyperparameters")]
        if as_int(hyperparameters.get("seed")) is not None
        else []
    )
    # the script's name (ppo_continuous_action) stays in the config; the algorithm is its first word
    exp_names = (
        [Claim(algorithm_of(str(hyperparameters["exp_name"])), "hyperparameters")]
        if hyperparameters.get("exp_name")
        else []
    )
    if from_name:
        env_claims.append(Claim(from_name["env_id"], "run name"))
        seed_claims.append(Claim(from_name["seed"], "run name"))
        exp_names.append(Claim(algorithm_of(from_name["exp_name"]), "run name"))

    others = sorted(tag for tag in log.scalars if tag != RETURN_TAG)
    scalars = source_scalars(log, others, FORMAT)
    every_step = scalars["step"]
    iteration_steps = median_spacing(log.scalars[ITERATION_TAG]["step"]) if ITERATION_TAG in log.scalars else None
    start = log.first_wall_time
    unknown = [
        "version: CleanRL logs none",
        "eval_return and final_eval_return: CleanRL runs no deterministic evaluation",
    ]
    if not hyperparameters:
        unknown.append("configuration: no hyperparameters text in the events")
    return SourceRun(
        format=FORMAT,
        library=LIBRARY,
        path=folder,
        files=log.files,
        label_prefix="cleanrl-",
        training=episodes_by_step(episodes["step"], episodes["value"]),
        evaluations=empty_evaluations(),
        scalars=scalars,
        meaning={
            "train_return": f"{RETURN_TAG}: the return of each training episode, at the global step it ended",
            "eval_return": NO_EVALUATION,
            "final_eval_return": NO_EVALUATION,
        },
        env_id=env_claims,
        seed=seed_claims,
        algorithm=exp_names,
        config=hyperparameters,
        unknown=unknown,
        budget=as_int(hyperparameters.get("total_timesteps")),
        steps_taken=int(every_step.max()) if len(every_step) else None,
        iteration_steps=iteration_steps,
        wall_time_s=float(scalars["wall_time_s"].max()) if len(scalars) else None,
        started_at=_dt.datetime.fromtimestamp(start, _dt.UTC).isoformat(timespec="seconds") if start else None,
    )
