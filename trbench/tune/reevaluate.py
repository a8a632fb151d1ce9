"""`--reevaluate K2`: the top-k configurations and the default one on K2 fresh seeds, as a suite,
and whether the best beats the default there."""

from __future__ import annotations

import math
from typing import Any, TextIO

import numpy as np
import optuna
import tomli_w
from optuna.trial import FrozenTrial

from trbench.analysis.stats import probability_of_improvement, welch_test
from trbench.base.files import atomic_write_json, atomic_write_text
from trbench.base.results_folder import RUNS_DIR
from trbench.base.run_folder import read_result
from trbench.suites.grid import parse_suite
from trbench.suites.runner import run_suite

from .objective import load_normalization_for, mean
from .outputs import mean_ci, ranked_trials
from .settings import REEVALUATION_SEED_BASE, TuneSettings, jsonable, suite_name

# Two-sided Welch test level for "the best beats the default".
SIGNIFICANCE_LEVEL = 0.05
SUITE_HEADER = "# Written by trbench tune --reevaluate; rerunning it resumes the re-evaluation.\n"


def reevaluation_suite_data(
    settings: TuneSettings, arms: dict[str, dict[str, Any]], seeds: list[int], ranked: list[FrozenTrial]
) -> dict[str, Any]:
    """The re-evaluation as suite TOML data: one variant per configuration, on the study's envs."""
    variants = {
        name: {
            "algo": settings.algorithm,
            "description": (f"trial {ranked[int(name[6:]) - 1].number}" if name != "default" else "default settings"),
            "hparams": {**jsonable(settings.fixed), **params},
        }
        for name, params in arms.items()
    }
    for body in variants.values():
        if not body["hparams"]:
            del body["hparams"]
    data: dict[str, Any] = {
        "name": suite_name(f"{settings.study_name}-reevaluation"),
        "description": "top trials and the default configuration on fresh seeds",
        "steps": settings.steps,
        "seeds": seeds,
        "envs": list(settings.envs),
        "algos": list(arms),
        "variants": variants,
    }
    env_tables = {
        env: {"hparams": {name: jsonable(values) for name in arms}}
        for env, values in settings.env_fixed.items()
        if values
    }
    if env_tables:
        data["env"] = env_tables
    return data


def reevaluate(settings: TuneSettings, study: optuna.Study, stream: TextIO) -> dict[str, Any] | None:
    """Re-run the top-k trials' configurations and the default one on K2 fresh seeds."""
    ranked = ranked_trials(study)[: settings.top_k]
    if not ranked:
        return None
    folder = settings.out / "reevaluation"
    seeds = [REEVALUATION_SEED_BASE + i for i in range(settings.reevaluate)]
    arms = {f"tuned-{rank}": dict(t.params) for rank, t in enumerate(ranked, start=1)}
    arms["default"] = {}
    data = reevaluation_suite_data(settings, arms, seeds, ranked)
    suite_file = settings.out / "reevaluation.toml"
    text = SUITE_HEADER + tomli_w.dumps(data)
    # the file is for a person (`trbench run` resumes it); the runner gets the same suite in memory
    atomic_write_text(suite_file, text)
    suite = parse_suite(suite_file, text, data)
    run_suite(suite, folder, workers=settings.workers, executor="local", address=None, redo_failed=True, stream=stream)

    constants = load_normalization_for(settings.envs) if settings.normalised else {}
    per_arm: dict[str, dict[int, list[float]]] = {name: {} for name in arms}
    failures: dict[str, int] = {name: 0 for name in arms}
    for run in suite.runs:
        result = read_result(folder / RUNS_DIR / run.run_id) or {"status": "missing"}
        arm = run.spec.arm
        if result.get("status") != "complete":
            failures[arm] += 1
            continue
        value = result["final_eval_return"]
        if constants:
            value = float(constants[run.spec.env_id].normalize(value))
        per_arm[arm].setdefault(run.spec.seed, []).append(value)
    what = "normalised score, envs averaged per seed" if settings.normalised else "final eval return"
    summary: dict[str, Any] = {"seeds": seeds, "objective": f"mean {what} over fresh seeds", "arms": {}}
    samples = {}
    for name in arms:
        # a seed counts only when every env of it completed, so the envs weigh alike in each score
        scores = [mean(v) for v in per_arm[name].values() if len(v) == len(settings.envs)]
        samples[name] = scores
        arm_mean, low, high = mean_ci(scores) if scores else (None, None, None)
        summary["arms"][name] = {
            "params": arms[name],
            "trial": ranked[int(name[6:]) - 1].number if name != "default" else None,
            "study_value": ranked[int(name[6:]) - 1].value if name != "default" else None,
            "mean": arm_mean,
            "ci_low": low,
            "ci_high": high,
            "n": len(scores),
            "runs_not_complete": failures[name],
        }
    summary["best_vs_default"] = best_vs_default(samples["tuned-1"], samples["default"])
    atomic_write_json(settings.out / "reevaluation.json", {"best_trial": ranked[0].number, "summary": summary})
    return summary


def best_vs_default(best: list[float], default: list[float]) -> dict[str, Any]:
    """Welch's test and the probability of improvement of the best configuration over the default."""
    test = welch_test(best, default) if best and default else None
    pvalue = None if test is None or math.isnan(test.pvalue) else test.pvalue
    significant = bool(pvalue is not None and pvalue < SIGNIFICANCE_LEVEL and mean(best) > mean(default))
    if pvalue is None:
        verdict = "inconclusive: too few complete runs (or no spread) for a test"
    elif significant:
        verdict = (
            f"the best configuration beats the default significantly (Welch p = {pvalue:.3g} < {SIGNIFICANCE_LEVEL})"
        )
    else:
        verdict = (
            f"no significant difference between the best and the default configuration "
            f"(Welch p = {pvalue:.3g}, level {SIGNIFICANCE_LEVEL})"
        )
    return {
        "welch_t": None if test is None else test.statistic,
        "pvalue": pvalue,
        "level": SIGNIFICANCE_LEVEL,
        "significant": significant,
        "probability_of_improvement": float(probability_of_improvement(np.asarray(best), np.asarray(default)))
        if best and default
        else None,
        "verdict": verdict,
    }
