"""Stable-Baselines3 / RL Zoo log folders.

A run folder holds the Monitor files of its training envs (``0.monitor.csv``, ``1.monitor.csv``, ...,
or one ``monitor.csv``: a ``#{json}`` line with ``t_start`` and ``env_id``, then one row per
episode with its return ``r``, length ``l`` and time ``t``), EvalCallback's ``evaluations.npz``
(``timesteps``, and ``results``: the return of each evaluation episode), and, when the RL Zoo ran
it, ``<env>/config.yml`` (the hyperparameters) and ``<env>/args.yml`` (the command line: algo, env,
seed, n_timesteps), plus the saved model ``<env>.zip`` whose ``system_info.txt`` and ``data`` give
the library versions, the seed and the steps taken.

SB3's vector envs step every env once per step, so an episode that ends at local step ``s`` of its
env ends at global step ``s * n_envs``, which is what EvalCallback's ``timesteps`` count too.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from trbench.importers.source import (
    Claim,
    SourceRun,
    as_int,
    empty_evaluations,
    episodes_by_step,
    find_run_folders,
    refuse,
)

FORMAT = "sb3"
LIBRARY = "stable-baselines3"
EXPECTED = "a Stable-Baselines3 / RL Zoo log folder (*.monitor.csv and/or evaluations.npz)"
EVALUATIONS_FILE = "evaluations.npz"
ON_POLICY = ("a2c", "ppo", "trpo", "ars", "ppo_lstm", "recurrentppo")
# system_info.txt names -> the keys of config.json's versions
SYSTEM_INFO_NAMES = {
    "Stable-Baselines3": LIBRARY,
    "PyTorch": "torch",
    "Numpy": "numpy",
    "Gymnasium": "gymnasium",
    "Python": "python",
    "OpenAI Gym": "gym",
}


def monitor_files(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.glob("*monitor.csv") if path.name == "monitor.csv" or path.name.endswith(".monitor.csv")
    )


def is_run_folder(folder: Path) -> bool:
    return folder.is_dir() and (bool(monitor_files(folder)) or (folder / EVALUATIONS_FILE).is_file())


def read(path: Path) -> list[SourceRun]:
    return [read_run(folder) for folder in find_run_folders(path, is_run_folder)]


class _ZooLoader(yaml.SafeLoader):
    """Reads the RL Zoo's config.yml and args.yml, which are yaml.dump() of OrderedDicts, without
    running any Python object constructor: an OrderedDict becomes a dict, a tuple a list, and any
    other Python object its tag."""


def _python_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a sequence, got {type(node).__name__}", node.start_mark
        )
    return loader.construct_sequence(node, deep=True)


def _ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    arguments = _python_tuple(loader, node)
    pairs = arguments[0] if arguments else []
    return {str(key): value for key, value in pairs}


_ZooLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict)
_ZooLoader.add_constructor("tag:yaml.org,2002:python/tuple", _python_tuple)
_ZooLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: f"<python/{suffix}>")


def read_zoo_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.load(path.read_text(), Loader=_ZooLoader)  # noqa: S506 - a loader without object constructors
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise refuse(path, f"unreadable RL Zoo file ({str(exc).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise refuse(path, "not an RL Zoo config (expected a mapping of settings)")
    return content


def read_monitor(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The Monitor file's header (t_start, env_id) and its episodes (r, l, t)."""
    try:
        first, _, rest = path.read_text().partition("\n")
        header = json.loads(first[1:]) if first.startswith("#") else None
        episodes = pd.read_csv(io.StringIO(rest)) if rest.strip() else None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError):
        header = episodes = None
    if not isinstance(header, dict) or episodes is None or not {"r", "l", "t"} <= set(episodes.columns):
        raise refuse(
            path, "not a Stable-Baselines3 Monitor file (expected a '#{...}' JSON line, then the columns r,l,t)"
        )
    for column in ("r", "l", "t"):
        episodes[column] = pd.to_numeric(episodes[column], errors="coerce")
    if episodes[["r", "l", "t"]].isna().any().any():
        raise refuse(path, "a Monitor row has an r, l or t that is not a number")
    return header, episodes


def read_evaluations(path: Path) -> pd.DataFrame:
    try:
        with np.load(path, allow_pickle=False) as data:
            timesteps, results = np.asarray(data["timesteps"]), np.asarray(data["results"], dtype=float)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise refuse(path, "not EvalCallback's evaluations.npz (expected arrays timesteps and results)") from None
    if results.ndim != 2 or results.shape[0] != timesteps.shape[0]:
        raise refuse(path, f"results has shape {results.shape}, expected one row of episode returns per timestep")
    return pd.DataFrame(
        {
            "step": timesteps.astype(float),
            "eval_return": results.mean(axis=1),
            "eval_return_std": results.std(axis=1),
            "eval_episodes": results.shape[1],
        }
    )


def read_saved_model(folder: Path) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """From the final model's zip (not best_model.zip): the JSON scalars of its ``data``, the
    versions of system_info.txt, and the file's name; empty when there is none."""
    candidates = sorted(path for path in folder.glob("*.zip") if path.name != "best_model.zip")
    for path in candidates:
        try:
            with zipfile.ZipFile(path) as archive:
                data = json.loads(archive.read("data"))
                info = (
                    archive.read("system_info.txt").decode("utf-8", "replace")
                    if "system_info.txt" in archive.namelist()
                    else ""
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            continue  # some other zip: not a model SB3 saved
        scalars = {
            key: value for key, value in data.items() if isinstance(value, (int, float, str, bool)) or value is None
        }
        versions = {}
        for line in info.splitlines():
            name, _, value = line.strip().lstrip("- ").partition(":")
            if name in SYSTEM_INFO_NAMES and value.strip():
                versions[SYSTEM_INFO_NAMES[name]] = value.strip().split()[0]
        return scalars, versions, path.name
    return {}, {}, None


def _zoo_files(folder: Path) -> dict[str, Path]:
    """config.yml and args.yml, in the folder or in the one subfolder the Zoo writes them to."""
    found = {}
    for name in ("config.yml", "args.yml"):
        matches = [folder / name] if (folder / name).is_file() else sorted(folder.glob(f"*/{name}"))
        if matches:
            found[name] = matches[0]
    return found


def read_run(folder: Path) -> SourceRun:
    monitors = [(path, *read_monitor(path)) for path in monitor_files(folder)]
    evaluations = (
        read_evaluations(folder / EVALUATIONS_FILE) if (folder / EVALUATIONS_FILE).is_file() else empty_evaluations()
    )
    zoo = {name: read_zoo_yaml(path) for name, path in _zoo_files(folder).items()}
    hyperparams, args = zoo.get("config.yml", {}), zoo.get("args.yml", {})
    model, versions, model_file = read_saved_model(folder)

    n_envs = len(monitors)
    for stated, where in ((as_int(model.get("n_envs")), model_file), (as_int(hyperparams.get("n_envs")), "config.yml")):
        if monitors and stated is not None and stated != n_envs:
            raise refuse(
                folder,
                f"holds {n_envs} Monitor file(s) but {where} says n_envs = {stated}; "
                "every training env's Monitor file is needed to count steps",
            )

    steps, returns, times = [], [], []
    t_starts = [float(header.get("t_start", 0.0)) for _, header, _ in monitors]
    start = min(t_starts) if t_starts else 0.0
    for (_, _header, episodes), t_start in zip(monitors, t_starts):
        steps.append(episodes["l"].cumsum().to_numpy() * n_envs)
        returns.append(episodes["r"].to_numpy())
        times.append(t_start - start + episodes["t"].to_numpy())
    all_steps = np.concatenate(steps) if steps else np.array([])
    training = episodes_by_step(all_steps, np.concatenate(returns) if returns else [])
    wall = pd.DataFrame({"step": all_steps, "wall_time_s": np.concatenate(times) if times else []})
    scalars = wall.groupby("step", sort=True)["wall_time_s"].max().reset_index()

    env_claims = [Claim(header["env_id"], path.name) for path, header, _ in monitors if header.get("env_id")]
    if args.get("env"):
        env_claims.append(Claim(str(args["env"]), "args.yml"))
    seed_claims = [
        Claim(seed, str(where))
        for value, where in ((args.get("seed"), "args.yml"), (model.get("seed"), model_file))
        if (seed := as_int(value)) is not None
    ]
    algorithm_claims = [Claim(str(args["algo"]), "args.yml")] if args.get("algo") else []

    budget = next(
        (
            value
            for value in (
                as_int(args.get("n_timesteps")),
                as_int(hyperparams.get("n_timesteps")),
                as_int(model.get("_total_timesteps")),
            )
            if value and value > 0
        ),
        None,
    )
    logged = ([float(all_steps.max())] if all_steps.size else []) + (
        [float(evaluations["step"].max())] if len(evaluations) else []
    )
    steps_taken = as_int(model.get("num_timesteps")) or int(max(logged, default=0))
    n_steps = as_int(hyperparams.get("n_steps", model.get("n_steps")))
    algorithm = str(args.get("algo", "")).lower()
    iteration_steps = (
        n_steps * max(n_envs, 1) if n_steps and (algorithm in ON_POLICY or "n_epochs" in hyperparams) else None
    )

    unknown = []
    if not monitors:
        unknown.append("training episodes (no Monitor files)")
    if len(evaluations):
        unknown.append("whether EvalCallback evaluated deterministically (its default): evaluations.npz does not say")
    if monitors:
        unknown.append("wall_time_s: when training ended (the time the last training episode ended is used)")
    version = versions.pop(LIBRARY, None)
    started = _dt.datetime.fromtimestamp(start, _dt.UTC).isoformat(timespec="seconds") if start else None
    return SourceRun(
        format=FORMAT,
        library=LIBRARY,
        path=folder,
        label_prefix="sb3-",
        files=[path.name for path, _, _ in monitors]
        + ([EVALUATIONS_FILE] if (folder / EVALUATIONS_FILE).is_file() else [])
        + [str(path.relative_to(folder)) for path in _zoo_files(folder).values()]
        + ([model_file] if model_file else []),
        training=training,
        evaluations=evaluations,
        scalars=scalars,
        meaning={
            "train_return": "Monitor (*.monitor.csv): the return of each training episode, at the step it ended "
            "(episode lengths summed per env, times n_envs)",
            "eval_return": (
                "EvalCallback (evaluations.npz): the mean return of its evaluation episodes"
                if len(evaluations)
                else "none: the folder has no evaluations.npz (no EvalCallback)"
            ),
            "final_eval_return": (
                "the last EvalCallback evaluation (not a separate final evaluation)"
                if len(evaluations)
                else "none: the folder has no evaluations.npz (no EvalCallback)"
            ),
        },
        env_id=env_claims,
        seed=seed_claims,
        algorithm=algorithm_claims,
        version=version,
        versions=versions,
        config={
            key: value
            for key, value in (
                ("rl_zoo3 config.yml", hyperparams),
                ("rl_zoo3 args.yml", args),
                (f"{model_file} data" if model_file else "", model),
            )
            if value
        },
        unknown=unknown,
        budget=budget,
        steps_taken=steps_taken,
        iteration_steps=iteration_steps,
        wall_time_s=float(wall["wall_time_s"].max()) if len(wall) else None,
        started_at=started,
    )
