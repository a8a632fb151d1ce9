"""What a study leaves in its folder: trials.csv, best.json, figures/ and tuned.toml."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # figures go to files; no display is needed, nor wanted on a server

import matplotlib.pyplot as plt
import numpy as np
import optuna
import tomli_w
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as plots

from trbench.analysis.stats import bootstrap_mean_ci
from trbench.base.files import atomic_write_json, atomic_write_text

from .settings import REEVALUATION_SEED_BASE, TuneSettings, jsonable, suite_name
from .trials import COUNTED_FAIL_ATTR, PRUNED_ATTR, RETRY_ATTR, SURPLUS_ATTR, counts, study_progress

# Seeds of tuned.toml when no --reevaluate count is given: the shipped suites' 10 seeds.
TUNED_SUITE_SEEDS = 10
# Seed of every bootstrap, so best.json and reevaluation.json are reproducible.
BOOTSTRAP_SEED = 0


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if SURPLUS_ATTR in t.user_attrs:
            continue
        reason = t.user_attrs.get(PRUNED_ATTR) or t.user_attrs.get(COUNTED_FAIL_ATTR) or ""
        if t.state.name == "FAIL" and not counts(t):
            reason = "interrupted; enqueued again"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "counted": counts(t),
                "value": t.value,
                **{f"params_{k}": v for k, v in t.params.items()},
                "seed_scores": json.dumps(t.user_attrs.get("seed_scores", [])),
                "retry_of": t.user_attrs.get(RETRY_ATTR, ""),
                "reason": reason,
                "datetime_start": t.datetime_start.isoformat() if t.datetime_start else "",
                "duration_s": t.duration.total_seconds() if t.duration else "",
                "run_ids": " ".join(t.user_attrs.get("run_ids", [])),
            }
        )
    return rows


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    rows = trial_rows(study)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-cast(float, t.value), t.number))  # a complete trial has a value


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """The mean and its 95% bootstrap CI (None for fewer than two values)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None, None
    low, high = bootstrap_mean_ci(np.asarray(values), np.random.default_rng(BOOTSTRAP_SEED))
    return mean, float(low), float(high)


def best_record(settings: TuneSettings, study: optuna.Study) -> dict[str, Any] | None:
    ranked = ranked_trials(study)
    if not ranked:
        return None
    best = ranked[0]
    scores = best.user_attrs.get("seed_scores", [])
    _, low, high = mean_ci(scores) if scores else (None, None, None)
    counted, _, _ = study_progress(study)
    return {
        "study_name": settings.study_name,
        "storage": settings.storage,
        "algorithm": settings.algorithm,
        "envs": list(settings.envs),
        "steps": settings.steps,
        "objective": settings.objective_name(),
        "trial": best.number,
        "params": dict(best.params),
        "value": best.value,
        "ci": {
            "low": low,
            "high": high,
            "confidence": 0.95,
            "method": "bootstrap over trial seeds",
            "seeds": settings.trial_seeds,
        },
        "seed_scores": scores,
        "final_eval_returns": best.user_attrs.get("final_eval_returns", {}),
        "fixed_settings": jsonable(settings.fixed),
        "trials_counted": counted,
        "note": "the CI is over the seeds the study selected on, so it is optimistic; --reevaluate scores the "
        "best configurations on fresh seeds",
    }


def write_figures(settings: TuneSettings, study: optuna.Study, folder: Path) -> list[str]:
    """History, contour of the first two parameters, slices, importances (PDF and PNG each).
    Returns the notes of figures that could not be drawn (too few trials, one parameter)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [p.name for p in settings.space]
    target_name = "normalised score" if settings.normalised else "final eval return"
    figures = {
        "history": lambda: plots.plot_optimization_history(study, target_name=target_name),
        "slices": lambda: plots.plot_slice(study, params=names, target_name=target_name),
        "importances": lambda: plots.plot_param_importances(study, params=names),
    }
    if len(names) >= 2:
        figures[f"contour_{names[0]}_{names[1]}"] = lambda: plots.plot_contour(
            study, params=names[:2], target_name=target_name
        )
    notes = [] if len(names) >= 2 else ["contour: skipped, the space has one parameter"]
    for name, draw in figures.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            try:
                axes = draw()
            except Exception as exc:  # noqa: BLE001 - a figure Optuna cannot draw yet must not lose the others
                notes.append(f"{name}: skipped, {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = cast(plt.Figure, first.figure)
        figure.set_size_inches(max(figure.get_size_inches()[0], 6.0), max(figure.get_size_inches()[1], 4.0))
        for suffix in ("pdf", "png"):
            tmp = folder / f".{name}.{suffix}.tmp"
            figure.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
            os.replace(tmp, folder / f"{name}.{suffix}")
        plt.close(figure)
    return notes


def tuned_suite_text(
    settings: TuneSettings, params: dict[str, Any], seeds: list[int], name: str, description: str, header: str
) -> str:
    data: dict[str, Any] = {
        "name": name,
        "description": description,
        "steps": settings.steps,
        "seeds": seeds,
        "envs": list(settings.envs),
        "algos": [settings.algorithm],
    }
    hparams = {**jsonable(settings.fixed), **params}
    if hparams:
        data["hparams"] = {settings.algorithm: hparams}
    env_tables = {
        env: {"hparams": {settings.algorithm: jsonable(values)}} for env, values in settings.env_fixed.items() if values
    }
    if env_tables:
        data["env"] = env_tables
    return header + tomli_w.dumps(data)


def write_outputs(settings: TuneSettings, study: optuna.Study) -> dict[str, Any] | None:
    out = settings.out
    write_trials_csv(study, out / "trials.csv")
    best = best_record(settings, study)
    if best is None:
        return None
    notes = write_figures(settings, study, out / "figures")
    best["figures_skipped"] = notes
    if (out / "reevaluation.json").exists():
        previous = json.loads((out / "reevaluation.json").read_text())
        if previous.get("best_trial") == best["trial"]:
            best["reevaluation"] = previous["summary"]
    atomic_write_json(out / "best.json", best)
    seeds = [REEVALUATION_SEED_BASE + i for i in range(settings.reevaluate or TUNED_SUITE_SEEDS)]
    header = (
        f"# The best configuration of study {settings.study_name!r} (trial {best['trial']}, "
        f"{settings.objective_name()} {best['value']:.4g}).\n"
        f"# Seeds start at {REEVALUATION_SEED_BASE}: fresh seeds, disjoint from the ones the study tuned on.\n"
        f"# Run it with: trbench run {out / 'tuned.toml'}\n"
    )
    text = tuned_suite_text(
        settings,
        best["params"],
        seeds,
        suite_name(f"{settings.study_name}-tuned"),
        f"{settings.label} with the settings tuned by study {settings.study_name}",
        header,
    )
    atomic_write_text(out / "tuned.toml", text)
    return best
