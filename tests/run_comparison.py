"""Comparing two run folders of the same run, trained two ways (alone and in a lockstep pack,
locally and on Ray, straight through and resumed): the same rows, result and final parameters,
bit for bit, timing aside."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

TIMING_COLUMNS = {"wall_time_s", "steps_per_second", "rollout_time_s", "update_time_s"}


def progress_rows(folder: Path) -> list[dict]:
    with open(folder / "progress.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def result_record(folder: Path) -> dict:
    result = json.loads((folder / "result.json").read_text())
    # where a run was resumed is the one thing an interrupted run records that an uninterrupted one does not
    return {k: v for k, v in result.items() if k not in ("wall_time_s", "steps_per_second", "resumed_at_steps")}


def final_parameters(folder: Path) -> dict:
    return torch.load(folder / "model.pt", weights_only=False)


def assert_same_run(alone: Path, packed: Path) -> None:
    """`packed` holds what `alone` holds: rows, result and final parameters (model.pt)."""
    assert progress_rows(alone) == progress_rows(packed)
    assert result_record(alone) == result_record(packed)
    a, b = final_parameters(alone), final_parameters(packed)
    assert a.keys() == b.keys()
    for net in a["algorithm"]:
        assert a["algorithm"][net].keys() == b["algorithm"][net].keys()
        for name, tensor in a["algorithm"][net].items():
            assert torch.equal(tensor, b["algorithm"][net][name]), (net, name)
    assert a["obs_normalizer"] == b["obs_normalizer"] and a["reward_scaler"] == b["reward_scaler"]
