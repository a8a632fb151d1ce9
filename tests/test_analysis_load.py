"""Reading results folders and the fixed normalisation constants."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import RunSpec, grid_specs, make_results, write_run

from trbench.analysis import load, normalization
from trbench.base.errors import UsageError

MEASURE_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "measure_random_scores.py"


def _measure_random_scores():
    """scripts/measure_random_scores.py, which steps the envs to write the random-policy constants."""
    spec = importlib.util.spec_from_file_location("measure_random_scores", MEASURE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_loads_runs_curves_and_lists_failed_ones(tmp_path):
    specs = grid_specs(seeds=(0, 1)) + [
        RunSpec("trpo", "Hopper-v5", 7, status="diverged"),
        RunSpec("ppo", "Hopper-v5", 8, status="failed"),
    ]
    root = make_results(tmp_path / "suite", specs, incomplete=[RunSpec("trpo", "Hopper-v5", 9)])
    broken = root / "runs" / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")

    loaded = load.load_results(root)

    assert len(loaded.runs) == 8
    assert set(loaded.runs.columns) == set(load.RUN_COLUMNS)
    assert set(loaded.curves["run_id"]) == set(loaded.runs["run_id"])
    statuses = dict(zip(loaded.excluded["run_id"], loaded.excluded["status"]))
    assert statuses == {
        "trpo-Hopper-v5-s7": "diverged",
        "ppo-Hopper-v5-s8": "failed",
        "trpo-Hopper-v5-s9": "incomplete",
        "broken": "unreadable",
    }
    reasons = dict(zip(loaded.excluded["run_id"], loaded.excluded["reason"]))
    assert "synthetic failed run" in reasons["ppo-Hopper-v5-s8"]
    assert "config.json unreadable" in reasons["broken"]
    assert loaded.manifest["suite"] == "synthetic"
    assert loaded.versions["gymnasium"] == ["1.4.0"]


def test_final_and_auc_metrics_by_hand(tmp_path):
    run_dir = tmp_path / "r" / "runs" / "one"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps({"run_id": "one", "algo": "trpo", "env_id": "Hopper-v5", "seed": 0, "steps": 400})
    )
    # evaluations at steps 100, 200, 400 with returns 0, 10, 10 (and a row without evaluation)
    (run_dir / "progress.csv").write_text(
        "iteration,step,wall_time_s,train_return,train_episodes,eval_return,eval_return_std\n"
        "1,100,1,0,1,0,0\n2,200,2,5,1,10,0\n3,300,3,5,1,,\n4,400,4,5,1,10,0\n"
    )
    (run_dir / "result.json").write_text(
        json.dumps({"status": "complete", "error": None, "final_eval_return": 12.5, "steps": 400})
    )
    runs = load.load_results(tmp_path / "r").runs
    assert runs.loc[0, "final"] == 12.5
    # area: (0+10)/2*100 + 10*200 = 2500 over a span of 300 steps
    assert runs.loc[0, "auc"] == pytest.approx(2500 / 300)


def test_area_mean_of_single_and_flat_curves():
    assert load.area_mean(np.array([5.0]), np.array([3.0])) == 3.0
    assert load.area_mean(np.array([0.0, 10.0, 20.0]), np.array([2.0, 2.0, 2.0])) == pytest.approx(2.0)
    assert math.isnan(load.area_mean(np.array([]), np.array([])))


def test_scored_runs_moves_runs_without_the_metric_to_excluded(tmp_path):
    root = make_results(tmp_path / "s", grid_specs(algos=("trpo",), envs=("Hopper-v5",), seeds=(0, 1)))
    result_path = root / "runs" / "trpo-Hopper-v5-s1" / "result.json"
    result = json.loads(result_path.read_text())
    result["final_eval_return"] = None
    result_path.write_text(json.dumps(result))
    scored, excluded = load.scored_runs(load.load_results(root), "final")
    assert list(scored["run_id"]) == ["trpo-Hopper-v5-s0"]
    assert "final_eval_return missing" in excluded.loc[0, "reason"]
    scored_auc, excluded_auc = load.scored_runs(load.load_results(root), "auc")
    assert len(scored_auc) == 2 and excluded_auc.empty
    with pytest.raises(UsageError, match="--metric: must be one of final, auc"):
        load.scored_runs(load.load_results(root), "max")


def test_usage_errors_name_the_path(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        load.load_results(tmp_path / "missing")
    with pytest.raises(UsageError, match="runs: missing"):
        load.load_results(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UsageError, match="no run folders"):
        load.load_results(tmp_path)


def test_ragged_curves_interpolate_without_extrapolation(tmp_path):
    generator = np.random.default_rng(0)
    runs_dir = tmp_path / "runs"
    write_run(runs_dir, RunSpec("trpo", "Hopper-v5", 0, steps=10_000, eval_every=1_000), generator)
    write_run(runs_dir, RunSpec("trpo", "Hopper-v5", 1, steps=6_000, eval_every=1_500, first_eval=1_500), generator)
    curves = load.load_results(tmp_path).curves

    union = load.step_grid(curves, points=11)
    np.testing.assert_allclose(union, np.linspace(1_000, 10_000, 11))
    common = load.step_grid(curves, points=5, common_support=True)
    np.testing.assert_allclose(common, np.linspace(1_500, 6_000, 5))

    interpolated = load.interpolate_runs(curves, union)
    short = interpolated[interpolated["seed"] == 1].set_index("step")["eval_return"]
    assert short.loc[1_000] != short.loc[1_000]  # NaN before its first evaluation
    assert math.isnan(short.loc[10_000])  # and after its last
    raw = curves[curves["seed"] == 1].set_index("step")["eval_return"]
    assert short.loc[union[2]] == pytest.approx(np.interp(union[2], raw.index, raw.to_numpy()))


def test_non_overlapping_runs_have_no_common_grid(tmp_path):
    generator = np.random.default_rng(0)
    write_run(tmp_path / "runs", RunSpec("a", "Hopper-v5", 0, steps=2_000, eval_every=1_000), generator)
    write_run(
        tmp_path / "runs", RunSpec("a", "Hopper-v5", 1, steps=9_000, eval_every=1_000, first_eval=5_000), generator
    )
    assert load.step_grid(load.load_results(tmp_path).curves, common_support=True).size == 0


# --- normalisation constants -----------------------------------------------------------------


def test_normalization_table_covers_v4_and_v5_of_every_task_with_sources():
    table = normalization.load_normalization()
    for task in _measure_random_scores().TASKS:  # the tasks the constants were measured for
        for version in ("v4", "v5"):
            constants = table[f"{task}-{version}"]
            assert constants.random_episodes >= 50
            assert constants.random_seed == 0
            assert "scripts/measure_random_scores.py" in constants.random_source
            assert "Tianshou" in constants.reference_source and "TRPO" in constants.reference_source
            assert constants.reference_return > constants.random_return


def test_reference_returns_are_the_published_trpo_values():
    table = normalization.load_normalization()
    assert table["Hopper-v5"].reference_return == 2046.0
    assert table["Reacher-v4"].reference_return == -5.1
    assert table["InvertedDoublePendulum-v5"].reference_return == 8435.2


def test_normalize_maps_random_to_zero_and_reference_to_one():
    constants = normalization.load_normalization()["Hopper-v5"]
    np.testing.assert_allclose(constants.normalize([constants.random_return, constants.reference_return]), [0.0, 1.0])


def test_normalization_rejects_degenerate_rows(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text(
        "env_id,random_return,random_return_std,random_episodes,random_seed,random_source,reference_return,reference_source\n"
        "X-v0,5,1,10,0,m,5,r\n"
    )
    with pytest.raises(ValueError, match="reference equals random"):
        normalization.load_normalization(path)


def test_random_score_measurement_records_protocol(tmp_path):
    measure = _measure_random_scores()
    score = measure.measure_random_score("InvertedPendulum-v5", episodes=3, seed=0)
    again = measure.measure_random_score("InvertedPendulum-v5", episodes=3, seed=0)
    assert score == again and score.episodes == 3 and score.mean_return > 0
    row = measure.merge_random_score({"env_id": "InvertedPendulum-v5", "reference_return": "1000"}, score)
    assert row["reference_return"] == "1000" and row["random_seed"] == "0"
