"""The objective: train a trial's configuration on every (seed, env), report, prune, score."""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna

from trbench.analysis.normalization import NormalizationConstants, load_normalization
from trbench.base.errors import UsageError
from trbench.base.run_folder import read_result, run_is_complete
from trbench.suites.execute import RunPruned, execute_run
from trbench.suites.run_spec import RunSpec, resolve

from .settings import TuneSettings
from .trials import COUNTED_FAIL_ATTR, PRUNED_ATTR, SURPLUS_ATTR, WORKER_ATTR, holds_slot, retry_root


class TrialFailed(Exception):
    """A configuration that cannot be trained (an error that is not divergence); counts as a trial."""


class SurplusTrial(Exception):
    """This trial was created after the study already had N trials; it gives way, uncounted."""


def mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def load_normalization_for(envs: tuple[str, ...]) -> dict[str, NormalizationConstants]:
    table = load_normalization()
    missing = [env for env in envs if env not in table]
    if missing:
        raise UsageError(
            f"--env {missing[0]}: no normalisation constants (analysis/data/normalization.csv), which a "
            f"multi-env objective needs; allowed: {', '.join(sorted(table))}"
        )
    return {env: table[env] for env in envs}


class Objective:
    """Train a trial's configuration on every (seed, env) and return the mean score.

    Intermediate values go to step ``r * stride + s`` of run ``r`` (seed-major), so every trial's
    step ``t`` means the same amount of training and pruners compare like with like. The value at
    a step is the mean score of the runs so far, the current one counting with its latest
    evaluation; after each run (every seed, with one env) it is the mean of finished runs.
    """

    def __init__(self, settings: TuneSettings):
        self.settings = settings
        self.stride = settings.first_run().steps_taken
        self.constants = load_normalization_for(settings.envs) if settings.normalised else {}
        self.runs_dir = settings.out / "runs"

    def score(self, env_id: str, value: float) -> float:
        return float(self.constants[env_id].normalize(value)) if self.settings.normalised else float(value)

    def claim(self, trial: optuna.Trial) -> None:
        study = trial.study
        trial.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
        ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and holds_slot(t)]
        if len(ahead) >= self.settings.trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"the study already has {self.settings.trials} trials")

    def __call__(self, trial: optuna.Trial) -> float:
        s = self.settings
        self.claim(trial)
        params = {param.name: param.suggest(trial) for param in s.space}
        label = f"{s.label}[trial={retry_root(trial)}]"
        done_scores: list[float] = []
        seed_scores: list[float] = []
        returns: dict[str, list[float]] = {env: [] for env in s.envs}
        run_ids: list[str] = []
        last_run = s.seeds * len(s.envs) - 1
        for i, seed in enumerate(s.trial_seeds):
            env_scores = []
            for j, env_id in enumerate(s.envs):
                r = i * len(s.envs) + j
                run = resolve(RunSpec(s.algorithm, env_id, s.steps, seed, s.overrides(env_id, params), label=label))
                run_ids.append(run.run_id)
                trial.set_user_attr("run_ids", run_ids)
                folder = self.runs_dir / run.run_id
                pruned_at: list[int] = []

                def on_iteration(row: dict[str, Any], r=r, env_id=env_id, pruned_at=pruned_at) -> None:
                    if row.get("eval_return") is None or row["step"] >= self.stride:
                        return  # the last iteration's evaluation is reported as the run's result below
                    step = r * self.stride + row["step"]
                    trial.report(mean(done_scores + [self.score(env_id, row["eval_return"])]), step)
                    if trial.should_prune():
                        pruned_at.append(step)
                        raise RunPruned(f"pruned by the tuner ({s.pruner} pruner) at trial step {step}")

                if run_is_complete(folder):  # a trial resumed after a kill: this run is done
                    result = read_result(folder) or {}
                else:
                    result = execute_run(run, folder, on_iteration=on_iteration)
                if pruned_at:
                    trial.set_user_attr(
                        PRUNED_ATTR, f"{s.pruner} pruner at trial step {pruned_at[0]} ({env_id}, seed {seed})"
                    )
                    raise optuna.TrialPruned(trial.user_attrs[PRUNED_ATTR])
                if result["status"] == "diverged":
                    reason = f"diverged: {env_id} seed {seed}: {result['error']}"
                    trial.set_user_attr(PRUNED_ATTR, reason)
                    trial.set_user_attr("diverged", True)
                    raise optuna.TrialPruned(reason)
                if result["status"] != "complete":
                    reason = f"run failed: {env_id} seed {seed}: {result['error']}"
                    trial.set_user_attr(COUNTED_FAIL_ATTR, reason)
                    raise TrialFailed(reason)
                returns[env_id].append(result["final_eval_return"])
                env_scores.append(self.score(env_id, result["final_eval_return"]))
                done_scores.append(env_scores[-1])
                trial.set_user_attr("final_eval_returns", returns)
                if r < last_run:
                    step = (r + 1) * self.stride
                    trial.report(mean(done_scores), step)
                    if trial.should_prune():
                        reason = f"{s.pruner} pruner at trial step {step} (after {env_id}, seed {seed})"
                        trial.set_user_attr(PRUNED_ATTR, reason)
                        raise optuna.TrialPruned(reason)
            seed_scores.append(mean(env_scores))
            trial.set_user_attr("seed_scores", seed_scores)
        return mean(seed_scores)
