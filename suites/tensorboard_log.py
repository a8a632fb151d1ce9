"""TensorBoard event files in a run folder (the setting ``tensorboard = true``), to watch runs live.

Every progress.csv row becomes one scalar per column under the column's own name, against the
row's ``step`` (env steps, progress.csv's x axis), and the run's config.json becomes the text
``config``. The files lie directly in the run folder (``events.out.tfevents.*``), so
``tensorboard --logdir results/NAME/runs`` shows one run per run folder, and the suite runner's
executors, which move a run folder's files, move them too. A resumed run writes its event file
anew from the checkpoint's rows, so the log holds each step once, wherever the run resumed.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from trbench.base.errors import UsageError
from trbench.base.run_folder import EVENT_FILE_PREFIX

__all__ = ["EVENT_FILE_PREFIX", "RunEvents", "require_tensorboard"]
CONFIG_TAG = "config"


def require_tensorboard() -> None:
    """Refuse the setting before anything is written when the extra is not installed."""
    try:
        import torch.utils.tensorboard  # noqa: F401, PLC0415 - the optional tensorboard extra
    except ImportError:
        raise UsageError(
            "tensorboard: writing event files needs the tensorboard extra: pip install 'trbench[tensorboard]'"
        ) from None


def _scalar(value: Any) -> float | None:
    """A progress value as a TensorBoard scalar; None for an empty cell (no evaluation, no episode)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RunEvents:
    """The event file of one run folder; written through torch's SummaryWriter."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - the optional tensorboard extra

        self._writer = SummaryWriter(log_dir=str(folder))

    def config(self, config_json: str) -> None:
        # an indented block, so that TensorBoard's markdown shows the JSON as written
        self._writer.add_text(CONFIG_TAG, "\n".join("    " + line for line in config_json.splitlines()))
        self._writer.flush()

    def row(self, row: dict[str, Any]) -> None:
        step = int(float(row["step"]))
        for name, value in row.items():
            number = _scalar(value)
            if name != "step" and number is not None:
                self._writer.add_scalar(name, number, global_step=step)
        self._writer.flush()  # a row every few seconds: watching live needs it on disk now

    def replay(self, progress_csv: str) -> None:
        """The rows a checkpoint holds, for a run that resumes from it."""
        for row in csv.DictReader(io.StringIO(progress_csv)):
            self.row(row)

    def close(self) -> None:
        self._writer.close()
