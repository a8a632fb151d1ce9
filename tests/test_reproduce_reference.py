"""Published results as data: the CSV parses, its keys are unique, its numbers match the
reference notes, and the metric and verdict helpers compute what they claim."""

from __future__ import annotations

import math
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trbench.analysis import load, reference
from trbench.analysis import published as published_data
from trbench.base import presets
from trbench.base.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p for p in (ROOT / "suites" / "presets").glob("*.toml") if p.name != "variants.toml")
GRIDS = sorted((ROOT / "suites" / "reproduction").glob("*.toml"))


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return published_data.load_published()


def _value(published, **key) -> pd.Series:
    mask = np.ones(len(published), dtype=bool)
    for column, wanted in key.items():
        mask &= (published[column] == wanted).to_numpy()
    rows = published[mask]
    assert len(rows) == 1, f"{key} matches {len(rows)} rows"
    return rows.iloc[0]


def test_csv_has_the_columns_and_unique_keys(published):
    assert list(published.columns) == published_data.COLUMNS
    assert not published[published_data.KEY_COLUMNS].astype(str).duplicated().any()
    assert len(published) > 300
    assert set(published["metric"]) <= set(published_data.METRICS)
    # TRPO and the other arms the reports compare
    assert {"trpo", "npg", "ppo", "vpg", "a2c", "reinforce"} <= set(published["algo"])


@pytest.mark.parametrize(
    "key, value, spread",
    [
        (dict(source="baselines-mujoco1m", algo="trpo", env="Hopper"), 1912.9, math.nan),
        (dict(source="baselines-mujoco1m", algo="trpo", env="Reacher"), -4.82, math.nan),
        (dict(source="baselines-mujoco1m", algo="ppo", env="Walker2d"), 3424.95, math.nan),
        (dict(source="tianshou", algo="trpo", env="HalfCheetah", steps=1_000_000.0), 4471.2, 804.9),
        (dict(source="tianshou", algo="npg", env="InvertedDoublePendulum"), 9243.2, 276.0),
        (dict(source="sb3-contrib", algo="trpo", env="Swimmer"), 359.0, 2.0),
        (dict(source="rlzoo", algo="a2c", env="Hopper"), 733.5, 376.6),
        (dict(source="spinningup", algo="trpo", env="Hopper", steps=1_000_000.0), 1161.0, 345.0),
        (dict(source="spinningup", algo="vpg", env="Walker2d", setting="impl=pytorch", steps=3_000_000.0), 471.0, 75.0),
        (
            dict(
                source="henderson2018",
                algo="trpo",
                env="HalfCheetah",
                setting="table1: code=baselines; policy network 64,64",
            ),
            205.0,
            256.0,
        ),
        (
            dict(
                source="henderson2018", algo="ppo", env="Hopper", setting="table2: code=baselines; value network relu"
            ),
            2687.0,
            144.0,
        ),
        (dict(source="pfrl", algo="trpo", env="Walker2d"), 3260.0, 82.0),
        (dict(source="cleanrl", algo="ppo", env="Reacher"), -4.65, 0.96),
    ],
)
def test_spot_checks_against_the_reference_notes(published, key, value, spread):
    row = _value(published, **key)
    assert row["value"] == pytest.approx(value)
    if math.isnan(spread):
        assert math.isnan(row["spread"])
    else:
        assert row["spread"] == pytest.approx(spread)


def test_bootstrap_intervals_are_kept_as_intervals(published):
    row = _value(published, source="henderson2018", algo="trpo", env="Hopper", setting="table3: baselines defaults")
    assert (row["value"], row["ci_low"], row["ci_high"]) == (2965, 2854, 3076)
    assert published_data.published_interval(row) == (2854, 3076)
    row = _value(published, source="engstrom2020", algo="trpo+", env="Humanoid")
    assert published_data.published_interval(row) == (979, 1083)
    assert row["steps"] == 999_424


def test_digitized_and_read_off_values_are_flagged(published):
    spinning = published[published["source"] == "spinningup"]
    assert spinning["digitized"].all() and spinning["approximate"].all()
    readings = published[published["source"].isin(["ppo-paper", "acktr-paper", "baselines-plot"])]
    assert readings["approximate"].all()
    assert not published[published["source"] == "baselines-mujoco1m"]["approximate"].any()


def _write_copy(tmp_path: Path, edit) -> Path:
    frame = pd.read_csv(published_data.PUBLISHED_CSV, dtype=str, keep_default_na=False)
    frame = edit(frame)
    path = tmp_path / "published.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: pd.concat([f, f.iloc[[0]]]), "duplicate key"),
        (lambda f: f.drop(columns=["spread_kind"]), "missing column"),
        (lambda f: f.assign(value=["x"] + list(f["value"][1:])), "not a number"),
        (lambda f: f.assign(metric=["best"] + list(f["metric"][1:])), "unknown metric"),
        (lambda f: f.assign(citation=[""] + list(f["citation"][1:])), "citation is empty"),
        (lambda f: f.assign(spread_kind=["std_seeds"] * len(f), spread=[""] * len(f)), "needs a spread"),
    ],
)
def test_malformed_data_is_refused(tmp_path, edit, message):
    with pytest.raises(published_data.PublishedDataError, match=message):
        published_data.load_published(_write_copy(tmp_path, edit))


def test_a_ci_row_must_contain_its_value(tmp_path):
    def edit(frame):
        index = frame.index[frame["spread_kind"] == "ci95_bootstrap"][0]
        frame.loc[index, "ci_low"] = str(float(frame.loc[index, "value"]) + 1)
        return frame

    with pytest.raises(published_data.PublishedDataError, match="ci_low <= value <= ci_high"):
        published_data.load_published(_write_copy(tmp_path, edit))


def test_every_preset_and_grid_has_a_reference_set_covering_its_arms(published):
    sets = published_data.load_reference_sets(published=published)
    for path in PRESETS + GRIDS:
        suite = tomllib.loads(path.read_text())
        assert suite["name"] in sets, path.name
        arms = {c.arm for c in sets[suite["name"]].comparisons}
        assert arms == set(suite["algos"]), path.name


def test_presets_cite_their_source_list_deviations_and_never_save_checkpoints():
    for path in PRESETS + GRIDS:
        text = path.read_text()
        suite = tomllib.loads(text)
        assert "Deviations" in text, path.name
        saves = [table.get("save_model") for table in suite.get("hparams", {}).values()]
        assert False in saves and True not in saves, path.name


def test_reference_set_selectors_must_match_rows(tmp_path, published):
    path = tmp_path / "sets.toml"
    path.write_text('[x]\n[[x.compare]]\narm = "trpo"\nalgo = "trpo"\nsources = ["no-such-source"]\n')
    with pytest.raises(published_data.PublishedDataError, match="no published row"):
        published_data.load_reference_sets(path, published)


def test_last_episodes_mean_weights_by_episode_count():
    steps = np.array([100.0, 200.0, 300.0])
    returns = np.array([10.0, 20.0, 30.0])
    counts = np.array([60.0, 60.0, 60.0])
    # at 300: the last 100 episodes are 60 of the 30s and 40 of the 20s
    assert load.last_episodes_mean(steps, returns, counts, np.array([300.0]))[0] == pytest.approx(26.0)
    # at 150: only the first 60 episodes ended
    assert load.last_episodes_mean(steps, returns, counts, np.array([150.0]))[0] == pytest.approx(10.0)
    assert math.isnan(load.last_episodes_mean(steps, returns, counts, np.array([50.0]))[0])
    # rows without finished episodes do not count
    with_gap = load.last_episodes_mean(
        steps, np.array([10.0, np.nan, 30.0]), np.array([60.0, 0.0, 60.0]), np.array([300.0])
    )[0]
    assert with_gap == pytest.approx((60 * 30 + 40 * 10) / 100)


@pytest.mark.parametrize(
    "published_value, interval, ours, low, high, n_seeds, expected",
    [
        (100.0, None, 95.0, 90.0, 110.0, 5, "consistent"),  # published inside our CI
        (100.0, (80.0, 120.0), 115.0, 112.0, 118.0, 5, "consistent"),  # ours inside the published spread
        (100.0, (80.0, 120.0), 130.0, 125.0, 135.0, 5, "above"),
        (100.0, None, 50.0, 40.0, 60.0, 10, "below"),
        (100.0, None, 101.0, math.nan, math.nan, 1, "too few seeds"),  # one run: no CI, so no verdict
        (100.0, (80.0, 120.0), 101.0, math.nan, math.nan, 1, "too few seeds"),  # not even inside a spread
        (100.0, None, 50.0, 40.0, 60.0, 4, "too few seeds"),  # a 4-seed CI is too narrow to say below
        (100.0, None, 95.0, 90.0, 110.0, 2, "too few seeds"),
        (100.0, None, math.nan, math.nan, math.nan, 0, "no data"),
    ],
)
def test_verdict(published_value, interval, ours, low, high, n_seeds, expected):
    assert reference.verdict(published_value, interval, ours, low, high, n_seeds) == expected


def test_the_interval_of_a_few_seeds_is_held_inside_their_range():
    """Why fewer than MIN_SEEDS_FOR_VERDICT seeds give no verdict: the bootstrap interval of the
    mean never leaves the data's range, which holds the centre of a symmetric population with
    probability 1 - 2 * 0.5^n only."""
    from trbench.analysis import stats

    rng = np.random.default_rng(0)
    for n in (2, 3, 4):
        sample = rng.normal(size=(1, n))
        low, high = stats.bootstrap_mean_ci_batch(sample, np.random.default_rng(1))
        assert sample.min() - 1e-12 <= low[0] and high[0] <= sample.max() + 1e-12
        assert 1 - 2 * 0.5**n < 0.95
    assert 1 - 2 * 0.5**reference.MIN_SEEDS_FOR_VERDICT > 0.93


def test_env_names():
    assert reference.env_base("Hopper-v4") == "Hopper"
    assert reference.env_version("InvertedDoublePendulum-v5") == "v5"
    assert reference.env_base("MyEnv") == "MyEnv"


def test_resolve_reference_accepts_names_suite_files_and_the_manifest(tmp_path):
    assert published_data.resolve_reference("engstrom2020") == "engstrom2020"
    copy = tmp_path / "whatever.toml"
    shutil.copy(ROOT / "suites" / "presets" / "baselines_mujoco1m.toml", copy)
    assert published_data.resolve_reference(str(copy)) == "baselines-mujoco1m"
    assert published_data.resolve_reference("auto", "algos-v5") == "algos-v5"
    with pytest.raises(published_data.PublishedDataError):
        published_data.resolve_reference("auto", None)


def test_reproduce_and_report_know_a_preset_by_the_same_names():
    def where(path: Path) -> tuple[str, str]:
        return path.parent.name, path.name

    for path in PRESETS + GRIDS:
        name = tomllib.loads(path.read_text()).get("name", path.stem)
        assert where(presets.find_preset(name)) == where(path) == where(presets.find_preset(path.stem))
        assert published_data.resolve_reference(path.stem) == name == published_data.resolve_reference(str(path))
    assert set(presets.available_presets()) == {
        tomllib.loads(path.read_text()).get("name", path.stem) for path in PRESETS + GRIDS
    }
    with pytest.raises(UsageError, match="PRESET: unknown preset 'no-such-preset'; shipped: "):
        presets.find_preset("no-such-preset")
    with pytest.raises(UsageError, match="--reference: no such suite file: missing.toml"):
        published_data.resolve_reference("missing.toml")


@pytest.mark.parametrize(
    "investigation, changed",
    [
        ("baselines_mujoco1m_truncation.toml", {"bootstrap_truncated": False}),
        ("walker2d_fvp_subsample.toml", {"fvp_subsample_mode": "random"}),
    ],
)
def test_an_investigation_differs_from_its_preset_in_exactly_its_setting(investigation, changed):
    from trbench.suites.grid import load_suite

    preset = {
        (run.spec.env_id, run.spec.seed): run.config.to_dict()
        for run in load_suite(ROOT / "suites" / "presets" / "baselines_mujoco1m.toml").runs
    }
    runs = load_suite(ROOT / "suites" / "reproduction" / investigation).runs
    assert runs
    for run in runs:
        ours, theirs = run.config.to_dict(), preset[run.spec.env_id, run.spec.seed]
        assert {k: v for k, v in ours.items() if theirs[k] != v} == changed, (investigation, run.run_id)
        assert run.spec.steps == 1_000_000
