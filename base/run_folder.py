"""The run-folder format: its file names, the progress writer, the order a run's files are stored
in, and every reader and check of a run folder (what goes into config.json and result.json is
decided by :mod:`trbench.suites.execute`).

A run folder (documented in ``results/README.md``) holds:

- ``config.json``: what ran (run id, arm, env, seed, budget, every setting, library versions);
- ``progress.csv``: one row per iteration, streamed to ``progress.csv.partial`` and renamed when
  the run ends; in an archived results tree it may be ``progress.csv.xz`` instead (the same bytes,
  compressed losslessly, see :func:`archive_progress`);
- ``result.json``: the outcome, written last and atomically, so a folder without it is unfinished;
- ``checkpoint.pt`` while a run is interrupted, ``model.pt`` with the setting ``save_model``, and
  TensorBoard event files with the setting ``tensorboard``.

Every reader goes through :func:`read_complete_run`, so a damaged or unfinished run gets the same
reason for its exclusion in every report and table.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UsageError
from .files import atomic_write_bytes, atomic_write_text, remove_temporary_files

CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.csv"
PARTIAL_PROGRESS_FILE = "progress.csv.partial"
ARCHIVED_PROGRESS_FILE = "progress.csv.xz"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
RESULT_FILE = "result.json"
EVENT_FILE_PREFIX = "events.out.tfevents."  # TensorBoard's own naming of its event files
# every file a run folder can hold, besides the temporary files of atomic writes and event files
RUN_FILES = (
    CONFIG_FILE,
    PROGRESS_FILE,
    ARCHIVED_PROGRESS_FILE,
    PARTIAL_PROGRESS_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    RESULT_FILE,
)
# the order a finished run's files are stored in: result.json last marks the run finished
WRITE_ORDER = (CONFIG_FILE, PROGRESS_FILE, MODEL_FILE, RESULT_FILE)
# the block of config.json that marks a run written by `trbench import` and holds its provenance
SOURCE_KEY = "source"
# the columns every progress.csv starts with; the algorithm's diagnostics follow
PROGRESS_FIXED_COLUMNS = [
    "iteration",
    "step",
    "wall_time_s",
    "train_return",
    "train_episodes",
    "eval_return",
    "eval_return_std",
]
# the xz preset of archived progress files: the smallest files; xz output is a function of the
# input and the preset alone, so re-archiving gives the same bytes
ARCHIVE_PRESET = 9


def is_run_file(name: str) -> bool:
    return name in RUN_FILES or name.startswith(EVENT_FILE_PREFIX)


# --- writing ---------------------------------------------------------------------------------------


class ProgressWriter:
    """Streams iteration records to `progress.csv.partial`; renamed to `progress.csv` on close.

    `resume_text` (the file's text as a checkpoint saved it) starts the file again from that
    point, so rows an interrupted attempt wrote after its last checkpoint are dropped."""

    def __init__(self, folder: Path, resume_text: str = ""):
        self.final_path = folder / PROGRESS_FILE
        self.partial_path = folder / PARTIAL_PROGRESS_FILE
        self._handle = open(self.partial_path, "w", newline="")
        self._writer: csv.DictWriter | None = None
        if resume_text:
            self._handle.write(resume_text)
            self._handle.flush()
            header = next(csv.reader(io.StringIO(resume_text)))
            self._writer = csv.DictWriter(self._handle, fieldnames=header)

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._handle, fieldnames=list(record))
            self._writer.writeheader()
        self._writer.writerow({k: csv_value(v) for k, v in record.items()})
        self._handle.flush()

    def text(self) -> str:
        """Everything written so far."""
        return self.partial_path.read_text()

    def close(self) -> None:
        if self._handle.closed:
            return
        if self._writer is None:  # no iteration ran: still a parseable table, with the fixed columns
            csv.DictWriter(self._handle, fieldnames=PROGRESS_FIXED_COLUMNS).writeheader()
        self._handle.close()
        os.replace(self.partial_path, self.final_path)


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact representation: the file round-trips bit for bit
    return value


def clear_unfinished(folder: Path, keep_checkpoint: bool = False) -> None:
    """Remove what an interrupted attempt left, so the redo starts clean; with `keep_checkpoint`
    the checkpoint (and the config.json of the run it belongs to) stay, to resume from."""
    keep = {CHECKPOINT_FILE, CONFIG_FILE} if keep_checkpoint else set()
    for name in RUN_FILES:
        if name not in keep:
            (folder / name).unlink(missing_ok=True)
    for events in folder.glob(EVENT_FILE_PREFIX + "*"):  # a resumed run writes its event file anew
        events.unlink(missing_ok=True)
    remove_temporary_files(folder)


def salvage_progress(folder: Path) -> str:
    """Turn what a run that died logged into its progress.csv, cut to its complete rows, and
    clear the rest of its unfinished attempt (model, result, temporary files). Returns the text."""
    partial = folder / PARTIAL_PROGRESS_FILE
    rows_text = ""
    if partial.exists():
        text = partial.read_text(errors="replace")
        rows_text = text[: text.rfind("\n") + 1]
    for name in (PARTIAL_PROGRESS_FILE, MODEL_FILE, RESULT_FILE):
        (folder / name).unlink(missing_ok=True)
    remove_temporary_files(folder)
    if rows_text or not (folder / PROGRESS_FILE).exists():
        atomic_write_text(folder / PROGRESS_FILE, rows_text)
    return rows_text


def last_logged_step(progress_text: str) -> int:
    """The step of the last row of a progress table's text (0 when it has none)."""
    rows = list(csv.DictReader(io.StringIO(progress_text)))
    if rows and (rows[-1].get("step") or "").isdigit():
        return int(rows[-1]["step"])
    return 0


def store_run_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write a run's files (its name -> its bytes) with result.json last, each atomically;
    whatever an earlier attempt left goes first."""
    folder.mkdir(parents=True, exist_ok=True)
    # the checkpoint that reached the runner stays until result.json is in place: a runner killed
    # in between still resumes the run instead of starting it over
    clear_unfinished(folder, keep_checkpoint=True)
    names = sorted(files, key=lambda n: WRITE_ORDER.index(n) if n in WRITE_ORDER else -1)
    for name in names:
        atomic_write_bytes(folder / name, files[name])
    if CHECKPOINT_FILE not in files:
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)


def run_files_to_send(folder: Path) -> dict[str, bytes]:
    """A finished run's files (event files and a failed run's checkpoint included), for a worker
    on another machine to send back to :func:`store_run_files`."""
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def archive_progress(folder: Path) -> bool:
    """Replace a finished run's progress.csv by progress.csv.xz holding the same bytes (checked by
    decompressing before the original goes). Whether the folder had a progress.csv to archive."""
    plain = folder / PROGRESS_FILE
    if not plain.is_file():
        return False
    data = plain.read_bytes()
    packed = lzma.compress(data, preset=ARCHIVE_PRESET)
    if lzma.decompress(packed) != data:  # never lose a committed number to a faulty codec
        raise OSError(f"{plain}: compression did not round-trip")
    atomic_write_bytes(folder / ARCHIVED_PROGRESS_FILE, packed)
    plain.unlink()
    return True


# --- reading ---------------------------------------------------------------------------------------


class RunFolderError(Exception):
    """A run folder that cannot be used; the message says why, ``status`` classifies it
    (``unreadable``, ``incomplete``, or the run's own status such as ``failed``)."""

    def __init__(self, reason: str, status: str = "unreadable") -> None:
        super().__init__(reason)
        self.status = status


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file of a run folder, or RunFolderError saying what is wrong with it."""
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path.name} missing") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise RunFolderError(f"{path.name} unreadable: {str(exc).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise RunFolderError(f"{path.name} is not a JSON object")
    return content


def read_config(folder: Path) -> dict[str, Any]:
    return read_json_object(Path(folder) / CONFIG_FILE)


def read_config_or_empty(folder: Path) -> dict[str, Any]:
    """config.json, or {} when it is missing or damaged (to name a run that is excluded anyway)."""
    try:
        return read_config(folder)
    except RunFolderError:
        return {}


def is_imported_run(folder: Path) -> bool:
    """Whether a run folder was written by `trbench import` (its config.json has a source block)."""
    return isinstance(read_config_or_empty(folder).get(SOURCE_KEY), dict)


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run's result record, or None when it has none yet (never run, or interrupted).

    result.json is only ever written whole (by rename), so one that does not parse was damaged
    after the fact: a UsageError names it rather than counting the run as missing, which would
    have the runner overwrite it unseen."""
    path = Path(folder) / RESULT_FILE
    try:
        result = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path}: unreadable result.json ({str(exc).splitlines()[0]}); remove it to have `trbench run` redo the run"
        ) from None
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        raise UsageError(
            f"{path}: not a run result (a JSON object with a status); remove it to have `trbench run` redo the run"
        )
    return result


def run_state(folder: Path) -> str:
    """complete; failed (failed, diverged or pruned, recorded in result.json); missing (never run, or
    interrupted: no result.json)."""
    result = read_result(folder)
    if result is None:
        return "missing"
    return "complete" if result.get("status") == "complete" else "failed"


def run_is_complete(folder: Path) -> bool:
    """Whether the folder holds a finished, complete run (False for a damaged result.json too)."""
    try:
        return run_state(folder) == "complete"
    except UsageError:
        return False


def progress_text(folder: Path) -> str | None:
    """The text of a finished run's progress table (plain or archived), None when it has none.

    Every row the writer emits ends in a newline, so a text that does not was cut short: its
    last row is partial, and pandas would quietly fill the missing fields with NaN."""
    folder = Path(folder)
    plain, archived = folder / PROGRESS_FILE, folder / ARCHIVED_PROGRESS_FILE
    try:
        if plain.exists():
            raw = plain.read_bytes()
        elif archived.exists():
            raw = lzma.decompress(archived.read_bytes())
        else:
            return None
        text = raw.decode("utf-8")
    except OSError as exc:
        raise RunFolderError(f"{PROGRESS_FILE} unreadable: {exc.strerror or exc}") from None
    except lzma.LZMAError as exc:
        raise RunFolderError(f"{ARCHIVED_PROGRESS_FILE} unreadable: {exc}") from None
    except UnicodeDecodeError:
        raise RunFolderError(f"{PROGRESS_FILE} unreadable: not UTF-8 text") from None
    if not text.endswith("\n"):
        raise RunFolderError(f"{PROGRESS_FILE} truncated: its last row is incomplete")
    return text


def parse_progress(text: str) -> pd.DataFrame:
    """A progress table's text as a DataFrame, or RunFolderError when it does not parse."""
    try:
        return pd.read_csv(io.StringIO(text))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise RunFolderError(f"{PROGRESS_FILE} unreadable: {str(exc).splitlines()[0]}") from None


def read_progress(folder: Path) -> pd.DataFrame:
    """A finished run's progress table; an empty one with the fixed columns when it has none."""
    text = progress_text(folder)
    if text is None:
        return pd.DataFrame(columns=PROGRESS_FIXED_COLUMNS)
    return parse_progress(text)


@dataclass(frozen=True)
class CompleteRun:
    """A run folder that passed every check: its config, result and progress table."""

    folder: Path
    config: dict[str, Any]
    result: dict[str, Any]
    progress: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.config.get("run_id") or self.folder.name)


def read_complete_run(folder: Path, identity_fallback: dict[str, Any] | None = None) -> CompleteRun:
    """A complete run, or RunFolderError with the reason it is excluded: damaged or missing
    config.json (or one without algo or env_id, even after ``identity_fallback``, the manifest's
    entry), no result.json (interrupted), a status other than complete, a damaged progress table."""
    folder = Path(folder)
    config = read_config(folder)
    fallback = identity_fallback or {}
    for key in ("algo", "env_id"):
        if not (config[key] if key in config else fallback.get(key)):
            raise RunFolderError(f"{CONFIG_FILE} has no {key}")
    if not (folder / RESULT_FILE).exists():
        raise RunFolderError("interrupted: result.json missing", status="incomplete")
    result = read_json_object(folder / RESULT_FILE)
    status = result.get("status", "unknown")
    if status != "complete":
        error = result.get("error") or "no error message"
        raise RunFolderError(f"{status}: {error}", status=str(status))
    return CompleteRun(folder, config, result, read_progress(folder))
