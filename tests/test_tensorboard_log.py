"""The setting `tensorboard = true`: event files in the run folder that TensorBoard's own reader
reads back as progress.csv's columns and the config; off by default, and run ids stay the same."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from trbench.cli import main
from trbench.suites.execute import execute_run, inspect_run_folder
from trbench.suites.run_spec import RunSpec, resolve
from trbench.suites.tensorboard_log import EVENT_FILE_PREFIX

SETTINGS = {"eval_interval_steps": 1024, "eval_episodes": 2, "steps_per_iteration": 512, "num_envs": 2}


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    scalars = {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }
    text = tensor_util.make_ndarray(accumulator.Tensors("config/text_summary")[0].tensor_proto).flatten()[0].decode()
    return scalars, text


def assert_events_match_progress(folder) -> None:
    scalars, text = read_events(folder)
    progress = pd.read_csv(folder / "progress.csv")
    assert set(scalars) == set(progress.columns) - {"step"} - {c for c in progress if progress[c].isna().all()}
    for column, events in scalars.items():
        logged = progress.dropna(subset=[column])
        assert [step for step, _ in events] == logged["step"].tolist(), column
        # TensorBoard keeps scalars as float32
        assert np.allclose(
            [value for _, value in events], logged[column].to_numpy(dtype=float), rtol=1e-6, atol=1e-6
        ), column
    assert json.loads("\n".join(line[4:] for line in text.splitlines())) == json.loads(
        (folder / "config.json").read_text()
    )


@pytest.mark.slow
def test_event_files_hold_progress_csv_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    run = resolve(RunSpec("ppo", "Pendulum-v1", 2048, 0, {**SETTINGS, "tensorboard": True}))
    execute_run(run, tmp_path / "run")
    assert len(list((tmp_path / "run").glob(EVENT_FILE_PREFIX + "*"))) == 1
    assert_events_match_progress(tmp_path / "run")


@pytest.mark.slow
def test_a_resumed_run_logs_each_step_once(tmp_path):
    pytest.importorskip("tensorboard")
    run = resolve(
        RunSpec("ppo", "Pendulum-v1", 2048, 0, {**SETTINGS, "tensorboard": True, "checkpoint_interval_steps": 1024})
    )
    folder = tmp_path / "run"

    def interrupt_after_the_checkpoint(row):
        if row["step"] == 1536:  # one iteration after the checkpoint at 1024, which the resume drops
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_run(run, folder, on_iteration=interrupt_after_the_checkpoint)
    assert inspect_run_folder(folder, run) == "resume"
    execute_run(run, folder)

    assert_events_match_progress(folder)
    assert pd.read_csv(folder / "progress.csv")["step"].tolist() == [512, 1024, 1536, 2048]


def test_the_setting_is_off_by_default_and_leaves_run_ids_alone():
    plain = resolve(RunSpec("ppo", "Pendulum-v1", 2048, 0))
    assert plain.config.tensorboard is False
    pytest.importorskip("tensorboard")
    assert resolve(RunSpec("ppo", "Pendulum-v1", 2048, 0, {"tensorboard": True})).run_id == plain.run_id


def test_without_the_extra_the_setting_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed

    code = main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "Pendulum-v1",
            "--steps",
            "512",
            "--set",
            "tensorboard=true",
            "--out",
            str(tmp_path / "run"),
        ]
    )

    err = capsys.readouterr().err
    assert code == 2 and err.startswith("trbench: error: tensorboard: ") and "tensorboard extra" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_folder_with_event_files_is_a_run_folder(tmp_path):
    run = resolve(RunSpec("ppo", "Pendulum-v1", 2048, 0))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"run_id": run.run_id}))
    (folder / f"{EVENT_FILE_PREFIX}1.host.1.0").write_bytes(b"")
    assert inspect_run_folder(folder, run) == "restart"


@pytest.mark.slow
def test_trbench_run_tensorboard_writes_event_files_in_every_run(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "s"\nsteps = 1024\nseeds = [0, 1]\nenvs = ["Pendulum-v1"]\nalgos = ["ppo"]\n'
        "[hparams.all]\nsteps_per_iteration = 512\nnum_envs = 2\neval_interval_steps = 0\n"
        "final_eval_episodes = 10\n"
    )

    assert main(["run", str(suite), "--out", str(tmp_path / "results"), "--workers", "1", "--tensorboard"]) == 0

    folders = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(folders) == 2 and all(len(list(f.glob(EVENT_FILE_PREFIX + "*"))) == 1 for f in folders)
    assert all(json.loads((f / "config.json").read_text())["config"]["tensorboard"] for f in folders)
