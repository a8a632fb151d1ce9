"""Reading TensorBoard event files with TensorBoard's own reader (the optional `tensorboard` extra).

CleanRL and Tianshou log through torch's SummaryWriter; their scalars come back here as one table
per tag and their text summaries (CleanRL's hyperparameter table, Tianshou's args) as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trbench.base.errors import UsageError
from trbench.suites.tensorboard_log import EVENT_FILE_PREFIX

TEXT_SUFFIX = "/text_summary"  # torch's add_text(tag) stores the text under "<tag>/text_summary"


@dataclass
class EventLog:
    """The event files of one folder: ``scalars[tag]`` is a table of step, wall_time, value in the
    order written; ``texts[tag]`` the last text written under that tag."""

    folder: Path
    files: list[str]
    scalars: dict[str, pd.DataFrame]
    texts: dict[str, str]

    @property
    def first_wall_time(self) -> float | None:
        times = [table["wall_time"].min() for table in self.scalars.values() if len(table)]
        return min(times) if times else None


def holds_event_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.name.startswith(EVENT_FILE_PREFIX) for path in folder.iterdir())


def read_event_log(folder: Path) -> EventLog:
    """Every scalar and text of the event files directly in ``folder`` (not its subfolders)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import (  # noqa: PLC0415 - optional extra
            EventAccumulator,
        )
        from tensorboard.util import tensor_util  # noqa: PLC0415 - the optional tensorboard extra
    except ImportError:
        raise UsageError(
            f"{folder}: reading TensorBoard event files needs the tensorboard extra: pip install 'trbench[tensorboard]'"
        ) from None
    # 0 keeps every event; TensorBoard's default keeps a random sample of 10,000 per tag
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    try:
        accumulator.Reload()
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line, whatever the reader raised
        raise UsageError(f"{folder}: unreadable TensorBoard event file ({type(exc).__name__}: {exc})") from None
    tags = accumulator.Tags()
    scalars = {
        tag: pd.DataFrame(
            [(event.step, event.wall_time, event.value) for event in accumulator.Scalars(tag)],
            columns=["step", "wall_time", "value"],
        )
        for tag in tags.get("scalars", [])
    }
    texts = {}
    for tag in tags.get("tensors", []):
        plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
        events = accumulator.Tensors(tag)
        if plugin == "text" and events:
            value = tensor_util.make_ndarray(events[-1].tensor_proto).flatten()[0]
            texts[tag.removesuffix(TEXT_SUFFIX)] = (
                value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            )
        elif plugin == "scalars":  # a writer that stores scalars as tensors (new-style summaries)
            scalars[tag] = pd.DataFrame(
                [
                    (event.step, event.wall_time, float(tensor_util.make_ndarray(event.tensor_proto)))
                    for event in events
                ],
                columns=["step", "wall_time", "value"],
            )
    files = sorted(path.name for path in folder.iterdir() if path.name.startswith(EVENT_FILE_PREFIX))
    return EventLog(folder, files, scalars, texts)


def per_step(table: pd.DataFrame) -> pd.DataFrame:
    """A scalar's values by step, several values at one step averaged (step, value)."""
    return table.groupby("step", sort=True)["value"].mean().reset_index()


def source_scalars(log: EventLog, tags: list[str], prefix: str, env_step_tags: list[str] | None = None) -> pd.DataFrame:
    """``step``, ``wall_time_s`` (seconds since the log's first event) and one column per tag of
    ``tags``, named ``<prefix>/<tag>``, at every step at which one of ``env_step_tags`` (default:
    every tag; the tags whose steps count env steps) was logged."""
    start = log.first_wall_time
    pieces = []
    for tag in tags:
        table = per_step(log.scalars[tag]).rename(columns={"value": f"{prefix}/{tag}"}).set_index("step")
        pieces.append(table)
    timed = log.scalars if env_step_tags is None else env_step_tags
    every = pd.concat([log.scalars[tag] for tag in timed], ignore_index=True) if len(timed) else pd.DataFrame()
    if every.empty:
        return pd.DataFrame({"step": pd.Series(dtype=float)})
    wall = (every.groupby("step")["wall_time"].max() - start).rename("wall_time_s")
    frame = pd.concat([wall, *pieces], axis=1).sort_index()
    return frame.rename_axis("step").reset_index()
