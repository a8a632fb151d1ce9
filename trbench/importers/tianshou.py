"""Tianshou log directories: TensorBoard event files written by its TensorboardLogger.

Tianshou's MuJoCo examples log to ``{logdir}/{task}/{algo}/{seed}/{time}/``. Its logger writes
the statistics of each logged training collect and of each test (after every epoch, and once
before training) against the env step, under tags that changed between releases:

- before 1.0: ``train/reward`` (mean return of the collect's episodes), ``train/episode`` (their
  count), ``test/reward``, ``test/reward_std``; the text ``args`` is the argparse Namespace;
- 1.x: ``train/returns_stat/mean``, ``train/n_collected_episodes``, ``test/returns_stat/mean``,
  ``test/returns_stat/std``, ``test/n_collected_episodes``;
- 2.x: the same with ``training/`` for ``train/``.

Training collects closer than the logger's ``train_interval`` (1000 env steps by default) to the
last logged one are not logged, so their episodes are missing from the training curve.
"""

from __future__ import annotations

import ast
import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trbench.importers.source import (
    Claim,
    SourceRun,
    as_int,
    empty_evaluations,
    empty_training,
    find_run_folders,
    median_spacing,
    refuse,
)
from trbench.importers.tensorboard_events import EventLog, holds_event_files, per_step, read_event_log, source_scalars

FORMAT = "tianshou"
LIBRARY = "tianshou"
EXPECTED = "a Tianshou log directory (TensorBoard event files with its train/test return tags)"
ENV_ID = re.compile(r"^[\w.:/-]+-v\d+$")


@dataclass(frozen=True)
class TagScheme:
    releases: str
    train_return: str
    train_episodes: str
    test_return: str
    test_std: str
    test_episodes: str | None


SCHEMES = (
    TagScheme("before 1.0", "train/reward", "train/episode", "test/reward", "test/reward_std", None),
    TagScheme(
        "1.x",
        "train/returns_stat/mean",
        "train/n_collected_episodes",
        "test/returns_stat/mean",
        "test/returns_stat/std",
        "test/n_collected_episodes",
    ),
    TagScheme(
        "2.x",
        "training/returns_stat/mean",
        "training/n_collected_episodes",
        "test/returns_stat/mean",
        "test/returns_stat/std",
        "test/n_collected_episodes",
    ),
)
# scopes whose scalars are logged against the env step (update/ and info/ count gradient steps and epochs)
ENV_STEP_SCOPES = ("train/", "training/", "test/")


def is_run_folder(folder: Path) -> bool:
    return holds_event_files(folder)


def read(path: Path) -> list[SourceRun]:
    return [read_run(folder) for folder in find_run_folders(path, is_run_folder)]


def parse_args_text(text: str) -> dict[str, Any]:
    """Tianshou's ``args`` text: ``Namespace(task='Hopper-v3', seed=0, ...)`` before 1.0, a dict
    literal after; values that are not Python literals are kept as their source text."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return {}
    if isinstance(tree, ast.Call):
        pairs = [(keyword.arg, keyword.value) for keyword in tree.keywords if keyword.arg]
    elif isinstance(tree, ast.Dict):
        pairs = [
            (key.value, value)
            for key, value in zip(tree.keys, tree.values)
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
        ]
    else:
        return {}
    parsed = {}
    for name, node in pairs:
        try:
            parsed[name] = ast.literal_eval(node)
        except ValueError:
            parsed[name] = ast.unparse(node)
    return parsed


def parse_log_path(folder: Path) -> dict[str, Any]:
    """task, algo and seed from the examples' ``{task}/{algo}/{seed}/{time}`` folders, if it is one."""
    parts = folder.resolve().parts
    if len(parts) < 4:
        return {}
    task, algo, seed = parts[-4], parts[-3], parts[-2]
    if not ENV_ID.match(task) or as_int(seed) is None:
        return {}
    return {"task": task, "algo": algo, "seed": int(seed)}


def tag_scheme(log: EventLog) -> TagScheme | None:
    for scheme in SCHEMES:
        if scheme.train_return in log.scalars:
            return scheme
    return next((scheme for scheme in SCHEMES if scheme.test_return in log.scalars), None)


def _training(log: EventLog, scheme: TagScheme) -> pd.DataFrame:
    if scheme.train_return not in log.scalars:
        return empty_training()
    returns = per_step(log.scalars[scheme.train_return]).rename(columns={"value": "train_return"})
    if scheme.train_episodes in log.scalars:
        counts = per_step(log.scalars[scheme.train_episodes]).rename(columns={"value": "train_episodes"})
        returns = returns.merge(counts, on="step", how="left")
    else:
        returns["train_episodes"] = float("nan")
    # a logged collect without its count stands for at least one episode
    returns["train_episodes"] = returns["train_episodes"].fillna(1.0).clip(lower=1.0)
    return returns


def _evaluations(log: EventLog, scheme: TagScheme, episodes: int | None) -> pd.DataFrame:
    if scheme.test_return not in log.scalars:
        return empty_evaluations()
    frame = per_step(log.scalars[scheme.test_return]).rename(columns={"value": "eval_return"})
    if scheme.test_std in log.scalars:
        frame = frame.merge(
            per_step(log.scalars[scheme.test_std]).rename(columns={"value": "eval_return_std"}), on="step", how="left"
        )
    else:
        frame["eval_return_std"] = float("nan")
    if scheme.test_episodes and scheme.test_episodes in log.scalars:
        frame = frame.merge(
            per_step(log.scalars[scheme.test_episodes]).rename(columns={"value": "eval_episodes"}),
            on="step",
            how="left",
        )
    else:
        frame["eval_episodes"] = episodes if episodes is not None else float("nan")
    return frame


def read_run(folder: Path) -> SourceRun:
    log = read_event_log(folder)
    scheme = tag_scheme(log)
    if scheme is None:
        expected = ", ".join(sorted({tag for s in SCHEMES for tag in (s.train_return, s.test_return)}))
        raise refuse(folder, f"its TensorBoard events hold none of Tianshou's return tags ({expected})")
    args = parse_args_text(log.texts.get("args", ""))
    from_path = parse_log_path(Path(args["log_dir"])) if isinstance(args.get("log_dir"), str) else {}
    from_path = from_path or parse_log_path(folder)

    env_claims = [Claim(str(args["task"]), "args")] if args.get("task") else []
    seed_claims = [Claim(int(args["seed"]), "args")] if as_int(args.get("seed")) is not None else []
    algorithm_claims = [Claim(str(args["algo_name"]), "args")] if args.get("algo_name") else []
    if from_path:
        env_claims.append(Claim(from_path["task"], "log path"))
        seed_claims.append(Claim(from_path["seed"], "log path"))
        algorithm_claims.append(Claim(from_path["algo"], "log path"))

    mapped = {scheme.train_return, scheme.train_episodes, scheme.test_return, scheme.test_std, scheme.test_episodes}
    env_step_tags = sorted(tag for tag in log.scalars if tag.startswith(ENV_STEP_SCOPES))
    others = [tag for tag in env_step_tags if tag not in mapped]
    scalars = source_scalars(log, others, FORMAT, env_step_tags)
    last_step = int(scalars["step"].max()) if len(scalars) else None
    epochs, per_epoch = as_int(args.get("epoch")), as_int(args.get("step_per_epoch"))
    training = _training(log, scheme)
    test_episodes = as_int(args.get("test_num"))
    start = log.first_wall_time
    unknown = [
        "version: the log does not say which Tianshou release wrote it "
        f"(its tags are those of releases {scheme.releases})",
        "whether test episodes used the deterministic policy (the policy's deterministic_eval): the log does not say",
        "update/ and info/ scalars: logged against gradient steps and epochs, not env steps, so not kept",
    ]
    if scheme.train_return in log.scalars:
        unknown.append("training episodes of collects the logger skipped (its train_interval)")
    return SourceRun(
        format=FORMAT,
        library=LIBRARY,
        path=folder,
        files=log.files,
        label_prefix="tianshou-",
        training=training,
        evaluations=_evaluations(log, scheme, test_episodes),
        scalars=scalars,
        meaning={
            "train_return": f"{scheme.train_return}: the mean return of the training episodes of each logged "
            f"collect ({scheme.train_episodes} of them)",
            "eval_return": f"{scheme.test_return}: the mean return of the test episodes after each epoch "
            "(deterministic only if the policy had deterministic_eval = True)",
            "final_eval_return": f"the last {scheme.test_return}: the test after the last epoch",
        },
        env_id=env_claims,
        seed=seed_claims,
        algorithm=algorithm_claims,
        config=args,
        unknown=unknown,
        budget=epochs * per_epoch if epochs and per_epoch else None,
        steps_taken=last_step,
        iteration_steps=as_int(args.get("step_per_collect")) or median_spacing(training["step"]),
        wall_time_s=float(scalars["wall_time_s"].max()) if len(scalars) else None,
        started_at=_dt.datetime.fromtimestamp(start, _dt.UTC).isoformat(timespec="seconds") if start else None,
    )
