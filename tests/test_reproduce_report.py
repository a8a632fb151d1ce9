"""`trbench report --reference` and `trbench reproduce` on synthetic results folders: the
reproduction table computes each source's metric, gives the right verdicts and draws its figure."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trbench.analysis import reference
from trbench.analysis.load import load_results
from trbench.analysis.published import load_published, load_reference_sets, resolve_reference, selected_rows
from trbench.analysis.report import ReportOptions, build_report
from trbench.cli import main
from trbench.suites.grid import load_suite

ROOT = Path(__file__).resolve().parents[1]
ITERATION = 50_000


def write_run(
    runs_dir: Path,
    arm: str,
    env_id: str,
    seed: int,
    train_return: float,
    eval_curve: list[float] | None = None,
    steps: int = 1_000_000,
    final_eval: float | None = None,
    top10: float | None = None,
) -> None:
    """A complete run whose training episodes all return ``train_return`` (50 per iteration)
    and whose periodic evaluations follow ``eval_curve`` (one per iteration); with ``top10``, a
    train_return_top10 column rising to it (half of it at the first iteration)."""
    run_id = f"{arm}__{env_id}__s{seed}".replace("+", "plus")
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    n = steps // ITERATION
    evals = eval_curve if eval_curve is not None else [train_return] * n
    assert len(evals) == n
    lines = ["iteration,step,wall_time_s,train_return,train_episodes,eval_return,eval_return_std"]
    for i in range(n):
        lines.append(f"{i + 1},{(i + 1) * ITERATION},{i},{train_return},50,{evals[i]},1.0")
    if top10 is not None:
        rising = np.linspace(top10 / 2, top10, n)
        lines = [lines[0] + ",train_return_top10"] + [f"{line},{float(v)!r}" for line, v in zip(lines[1:], rising)]
    (folder / "progress.csv").write_text("\n".join(lines) + "\n")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "algo": arm,
                "algorithm": arm.rstrip("+"),
                "env_id": env_id,
                "seed": seed,
                "steps": steps,
                "config": {},
                "versions": {"gymnasium": "1.4.0"},
            }
        )
    )
    (folder / "result.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "error": None,
                "final_eval_return": final_eval if final_eval is not None else evals[-1],
                "final_eval_return_std": 1.0,
                "final_eval_episodes": 10,
                "steps": steps,
                "wall_time_s": 10.0,
                "steps_per_second": steps / 10.0,
            }
        )
    )


def make_folder(root: Path, suite: str) -> Path:
    (root / "runs").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"suite": suite, "runs": []}))
    (root / "suite.toml").write_text(f'name = "{suite}"\n')
    return root


def row(table: pd.DataFrame, **key) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for column, wanted in key.items():
        mask &= (table[column] == wanted).to_numpy()
    assert mask.sum() == 1, key
    return table[mask].iloc[0]


@pytest.fixture
def baselines_folder(tmp_path) -> Path:
    root = make_folder(tmp_path / "baselines", "baselines-mujoco1m")
    for seed, value in enumerate([1850.0, 1900.0, 1950.0, 1880.0, 1920.0]):
        write_run(root / "runs", "trpo", "Hopper-v4", seed, value)
    for seed, value in enumerate([-20.0, -21.0, -19.0, -20.5, -19.5]):
        write_run(root / "runs", "trpo", "Reacher-v4", seed, value)
    for seed, value in enumerate([3000.0, 3100.0, 3050.0, 3020.0, 3080.0]):
        write_run(root / "runs", "trpo", "Walker2d-v4", seed, value)
    for seed, value in enumerate([5000.0, 5100.0, 5050.0]):  # far above 1290, but only 3 seeds
        write_run(root / "runs", "trpo", "HalfCheetah-v4", seed, value)
    return root


def test_training_return_metric_and_verdicts(baselines_folder):
    result = reference.reproduction_table(
        baselines_folder, "baselines-mujoco1m", np.random.default_rng(0), n_resamples=500
    )
    table = result.table
    hopper = row(table, env_id="Hopper-v4", source="baselines-mujoco1m")
    assert hopper["metric"] == "train_return_curve"
    assert hopper["ours"] == pytest.approx(1900.0)
    assert hopper["n_seeds"] == 5
    assert hopper["ours_ci_low"] < 1912.9 < hopper["ours_ci_high"]
    assert hopper["verdict"] == "consistent"
    assert row(table, env_id="Reacher-v4", source="baselines-mujoco1m")["verdict"] == "below"
    assert row(table, env_id="Walker2d-v4", source="baselines-mujoco1m")["verdict"] == "above"
    cheetah = row(table, env_id="HalfCheetah-v4", source="baselines-mujoco1m")
    assert cheetah["n_seeds"] == 3 and cheetah["ours"] == pytest.approx(5050.0)
    assert cheetah["verdict"] == "too few seeds"
    # the approximate graph reading of the same benchmark is flagged
    assert row(table, env_id="Hopper-v4", source="baselines-plot")["approximate"]


def test_a_cells_interval_does_not_move_when_other_cells_gain_runs(baselines_folder):
    def hopper_interval():
        table = reference.reproduction_table(
            baselines_folder, "baselines-mujoco1m", np.random.default_rng(0), n_resamples=500
        ).table
        hopper = row(table, env_id="Hopper-v4", source="baselines-mujoco1m")
        return hopper["ours_ci_low"], hopper["ours_ci_high"]

    before = hopper_interval()
    # HalfCheetah-v4 sorts before Hopper-v4: with one shared stream its draws would come first
    for folder in (baselines_folder / "runs").glob("trpo__HalfCheetah-v4__*"):
        shutil.rmtree(folder)
    assert hopper_interval() == before


def test_report_adds_the_reproduction_section_table_and_figure(baselines_folder):
    out = build_report(baselines_folder, None, ReportOptions(n_resamples=300, reference="baselines-mujoco1m"))
    text = (out / "report.md").read_text()
    assert "## Reproduction of published results" in text
    assert re.search(
        r"\| Hopper-v4 \| trpo \| baselines-mujoco1m \(trpo_mpi\) \| v2 \| 1M \| train_return_curve \| 1913 \|", text
    )
    assert (out / "figures" / "reproduction.png").stat().st_size > 0
    assert (out / "figures" / "reproduction.pdf").exists()
    csv = pd.read_csv(out / "reproduction.csv")
    assert list(csv.columns) == reference.REPRODUCTION_COLUMNS
    assert set(csv["verdict"]) <= {"consistent", "above", "below", "too few seeds", "no data"}
    assert "Reproduction of published results" in (out / "reproduction.md").read_text()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda folder: (folder / "progress.csv").write_text("iteration,step\n1,50"), "progress.csv truncated"),
        (lambda folder: (folder / "result.json").unlink(), "interrupted: result.json missing"),
        (lambda folder: (folder / "config.json").write_bytes(b"\xff\xfe"), "config.json unreadable"),
    ],
)
def test_a_damaged_run_is_left_out_of_the_report_and_the_reproduction_for_the_same_reason(
    baselines_folder, damage, reason
):
    damaged = baselines_folder / "runs" / "trpo__Hopper-v4__s0"
    damage(damaged)
    excluded = load_results(baselines_folder).excluded
    result = reference.reproduction_table(
        baselines_folder, "baselines-mujoco1m", np.random.default_rng(0), n_resamples=200
    )
    pd.testing.assert_frame_equal(result.excluded, excluded)
    (record,) = excluded[excluded["run_id"] == damaged.name].to_dict("records")
    assert record["reason"].startswith(reason)
    assert damaged.name not in {run.run_id for run in result.runs}
    assert row(result.table, env_id="Hopper-v4", source="baselines-mujoco1m")["n_seeds"] == 4
    assert any("left out" in note for note in result.notes)


def test_a_complete_run_without_progress_rows_is_kept_by_both(baselines_folder):
    # the report scores it for 'final' from result.json; the reproduction must not drop it unseen
    kept = baselines_folder / "runs" / "trpo__Hopper-v4__s0"
    (kept / "progress.csv").write_text("iteration,step,wall_time_s,train_return,train_episodes,eval_return\n")
    loaded = load_results(baselines_folder)
    assert kept.name in set(loaded.runs["run_id"]) and loaded.excluded.empty
    result = reference.reproduction_table(loaded, "baselines-mujoco1m", np.random.default_rng(0), n_resamples=200)
    (run,) = [run for run in result.runs if run.run_id == kept.name]
    assert run.final_step == 1_000_000 and run.progress.empty
    # without rows it has no training return, so the training-return cell has the other 4 seeds
    assert row(result.table, env_id="Hopper-v4", source="baselines-mujoco1m")["n_seeds"] == 4


def test_the_reproduction_intervals_follow_the_confidence_level(baselines_folder):
    def hopper(level):
        table = reference.reproduction_table(
            baselines_folder, "baselines-mujoco1m", np.random.default_rng(0), n_resamples=500, confidence_level=level
        ).table
        return row(table, env_id="Hopper-v4", source="baselines-mujoco1m")

    default, narrow = hopper(0.95), hopper(0.5)
    assert narrow["ours_ci_high"] - narrow["ours_ci_low"] < default["ours_ci_high"] - default["ours_ci_low"]
    out = build_report(
        baselines_folder, None, ReportOptions(n_resamples=200, confidence_level=0.5, reference="baselines-mujoco1m")
    )
    assert "ours [50% CI] (seeds)" in (out / "reproduction.md").read_text()


def test_report_without_reference_is_unchanged(baselines_folder):
    out = build_report(baselines_folder, baselines_folder / "plain", ReportOptions(n_resamples=200))
    assert "Reproduction" not in (out / "report.md").read_text()
    assert not (out / "reproduction.csv").exists()


def test_max_of_the_seed_mean_curve_and_final_evaluation(tmp_path):
    root = make_folder(tmp_path / "algos", "algos-v5")
    # two seeds whose evaluation curves peak at different times: the max of the mean curve is
    # below the mean of the per-seed maxima
    up = list(np.linspace(100, 2000, 20))
    down = list(np.linspace(2000, 100, 20))
    write_run(root / "runs", "npg", "Hopper-v5", 0, 500.0, up)
    write_run(root / "runs", "npg", "Hopper-v5", 1, 500.0, down)
    for seed, final in enumerate([3400.0, 3300.0, 3350.0, 3380.0, 3320.0]):
        write_run(root / "runs", "trpo", "Hopper-v5", seed, 500.0, final_eval=final)
    table = reference.reproduction_table(root, "algos-v5", np.random.default_rng(0), n_resamples=300).table
    tianshou = row(table, arm="npg", source="tianshou")
    assert tianshou["metric"] == "max_mean_eval_curve"
    assert tianshou["ours"] == pytest.approx(max((a + b) / 2 for a, b in zip(up, down)))
    zoo = row(table, arm="trpo", source="rlzoo")
    assert zoo["metric"] == "final_eval_return"
    assert zoo["ours"] == pytest.approx(3350.0)
    assert zoo["verdict"] == "consistent"  # 3618.4 +- 356.8 holds 3350
    # sources that share a metric and budget are compared with one estimate, not two bootstrap draws
    sb3 = row(table, arm="trpo", source="sb3-contrib")
    assert sb3["metric"] == "final_eval_return" and sb3["steps"] == zoo["steps"]
    assert (sb3["ours_ci_low"], sb3["ours_ci_high"]) == (zoo["ours_ci_low"], zoo["ours_ci_high"])


def test_top10_training_return_is_read_at_the_published_budget(tmp_path):
    root = make_folder(tmp_path / "wang", "wang2019")
    for seed, best in enumerate([3500.0, 3600.0, 3700.0, 3650.0, 3550.0]):
        write_run(root / "runs", "truly_ppo", "Hopper-v4", seed, 2000.0, top10=best)
    for seed in range(5):  # runs written before the column: nothing to compare
        write_run(root / "runs", "ppo", "Hopper-v4", seed, 2000.0)
    table = reference.reproduction_table(root, "wang2019", np.random.default_rng(0), n_resamples=300).table
    truly = row(table, arm="truly_ppo", env_id="Hopper-v4")
    assert truly["metric"] == "top10_train_return" and truly["published"] == 3653
    assert truly["ours"] == pytest.approx(3600.0)  # the last row's running value, not the curve's mean
    assert truly["verdict"] == "consistent"
    assert row(table, arm="ppo", env_id="Hopper-v4")["verdict"] == "no data"


def test_runs_shorter_than_the_published_budget_are_not_compared(tmp_path):
    root = make_folder(tmp_path / "short", "henderson2018")
    for seed in range(3):
        write_run(root / "runs", "trpo", "Hopper-v4", seed, 2000.0, steps=1_000_000)
    table = reference.reproduction_table(root, "henderson2018", np.random.default_rng(0), n_resamples=200).table
    assert len(table) and (table["verdict"] == "no data").all()
    assert table["ours"].isna().all()
    out = build_report(root, None, ReportOptions(n_resamples=200, reference="henderson2018"))
    assert "no published value could be compared yet" in (out / "report.md").read_text()


def test_cli_reference_from_the_manifest_and_bad_preset(baselines_folder, capsys):
    assert main(["report", str(baselines_folder), "--reference", "--out", str(baselines_folder / "r")]) == 0
    assert (baselines_folder / "r" / "reproduction.csv").exists()
    capsys.readouterr()
    assert main(["report", str(baselines_folder), "--reference", "no-such-preset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no published reference set" in err[0]


def test_reproduce_report_only_and_unknown_preset(baselines_folder, capsys):
    assert main(["reproduce", "baselines-mujoco1m", "--out", str(baselines_folder), "--report-only"]) == 0
    assert (baselines_folder / "report" / "reproduction.md").exists()
    capsys.readouterr()
    assert main(["reproduce", "no-such-preset", "--report-only"]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_runs_a_tiny_preset_then_reports(tmp_path):
    text = (ROOT / "suites" / "presets" / "baselines_mujoco1m.toml").read_text()
    text = re.sub(r"(?m)^steps = .*$", "steps = 2048", text)
    text = re.sub(r"(?m)^seeds = .*$", "seeds = 2", text)
    text = re.sub(r"(?ms)^envs = \[.*?\]$", 'envs = ["InvertedPendulum-v4"]', text)
    text = re.sub(r"(?m)^eval_interval_steps = .*$", "eval_interval_steps = 1024", text)
    suite = tmp_path / "tiny.toml"
    suite.write_text(text)
    out = tmp_path / "out"
    assert main(["reproduce", str(suite), "--out", str(out), "--workers", "2"]) == 0
    table = pd.read_csv(out / "report" / "reproduction.csv")
    assert set(table["env_id"]) == {"InvertedPendulum-v4"}
    assert (table["verdict"] == "no data").all()  # 2048 steps cannot be compared with 1M
    assert not list(out.glob("runs/*/model.pt"))


def test_every_published_source_gets_its_own_marker_shape():
    from trbench.analysis.reproduction_plot import SOURCE_MARKERS

    sources = set(load_published()["source"])
    assert len(set(SOURCE_MARKERS)) == len(SOURCE_MARKERS) >= len(sources)


def test_reproduce_refuses_an_env_outside_the_preset_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "baselines-mujoco1m", "--out", str(out), "--env", "Hopper-v5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Hopper-v5'" in err and "allowed: Hopper-v4" in err
    assert not out.exists()


def test_the_family_suite_is_compared_with_every_published_number_its_methods_have():
    family = load_suite(Path(__file__).resolve().parents[1] / "suites" / "trust_region_family.toml")
    compared = load_reference_sets()[family.name].comparisons
    arms = {arm.name for arm in family.arms}
    assert {c.arm for c in compared} <= arms
    published = load_published()
    # each comparison finds rows within the grid's 1M-step budget, none beyond it
    for comparison in compared:
        rows = selected_rows(published, comparison)
        assert len(rows) and not (rows["steps"] > 1_000_000).any(), comparison.arm
    # an arm left out has no published row at 1M steps that could be compared
    for arm in arms - {c.arm for c in compared}:
        algo = arm.split("-")[0]
        at_budget = published[(published["algo"] == algo) & ~(published["steps"] > 1_000_000)]
        assert at_budget.empty, arm


def test_a_family_folder_compares_truly_ppo_with_wang2019(tmp_path):
    root = make_folder(tmp_path / "family", "trust_region_family")
    for seed, best in enumerate([3500.0, 3600.0, 3700.0, 3650.0, 3550.0]):
        write_run(root / "runs", "truly_ppo", "Hopper-v5", seed, 2000.0, top10=best)
    table = reference.reproduction_table(
        root, resolve_reference("auto", "trust_region_family"), np.random.default_rng(0), n_resamples=300
    ).table
    truly = row(table, arm="truly_ppo", env_id="Hopper-v5", source="wang2019")
    assert truly["published"] == 3653 and truly["verdict"] == "consistent"
