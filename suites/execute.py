"""Execute one run into its folder: train, stream its progress, checkpoint, record the result.

The folder's format belongs to :mod:`trbench.base.run_folder`; this module decides what goes
into it: the config record with its provenance, the checkpoints a run resumes from, and the result.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy
import torch

import trbench
from trbench.algos.envpool_backend import envpool_versions
from trbench.algos.trainer import Trainer, TrainingDiverged, TrainingOutcome, derive_seeds, resolve_device
from trbench.base.errors import UsageError
from trbench.base.files import atomic_write_bytes, atomic_write_json, is_temporary_file
from trbench.base.run_folder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    PARTIAL_PROGRESS_FILE,
    RESULT_FILE,
    ProgressWriter,
    clear_unfinished,
    is_run_file,
)

from .run_spec import ResolvedRun
from .tensorboard_log import RunEvents


def _git_commit() -> str | None:
    source = Path(trbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries that decide what a run computes."""
    return {
        "python": platform.python_version(),
        "trbench": trbench.__version__,
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "mujoco": mujoco.__version__,
        "numpy": numpy.__version__,
    }


def provenance(env_backend: str = "gymnasium") -> dict[str, Any]:
    versions = dict(library_versions())
    if env_backend == "envpool":
        # envpool steps its own MuJoCo build, not the mujoco package above
        versions.update(envpool_versions())
    return {
        "versions": versions,
        "git_commit": _git_commit(),
        "hostname": socket.gethostname(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def config_record(run: ResolvedRun, device: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "algo": run.spec.arm,
        "algorithm": run.spec.algorithm,
        "env_id": run.spec.env_id,
        "env_backend": run.config.env_backend,
        "seed": run.spec.seed,
        "seeds": derive_seeds(run.spec.seed),
        "steps": run.spec.steps,
        "device": device,
        "config": run.config.to_dict(),
        "trust_region": run.config.trust_region_record(),
        "overrides": dict(run.spec.overrides),
        **provenance(run.config.env_backend),
    }


class RunPruned(Exception):
    """Raised by an ``on_iteration`` callback to end a run early on purpose (a tuner's pruner);
    the run is recorded with status ``pruned`` and the message, not as a failure."""


# --- checkpoints -------------------------------------------------------------------------------------

# settings a resumed attempt may change: they decide what is written, not what is computed
RESUMABLE_CHANGES = ("checkpoint_interval_steps", "keep_checkpoint", "save_model", "tensorboard")


def _checkpoint_settings(run: ResolvedRun) -> dict[str, Any]:
    """What a checkpoint must have been written with to be resumed: every setting (the
    execution-only ones too, such as ``device``, since the pickled algorithm keeps them) but those
    in :data:`RESUMABLE_CHANGES`, and the device ``auto`` resolved to."""
    settings = {k: v for k, v in run.config.to_dict().items() if k not in RESUMABLE_CHANGES}
    return settings | {"device": str(resolve_device(run.config.device))}


def _checkpoint_versions() -> dict[str, str]:
    """The versions a bit-identical resume depends on; a checkpoint from others is not resumed."""
    versions = library_versions()
    return {key: versions[key] for key in ("trbench", "torch", "gymnasium", "mujoco", "numpy")}


def read_checkpoint(folder: Path, run: ResolvedRun) -> dict[str, Any] | None:
    """The checkpoint in `folder` if there is one; UsageError if it is unreadable, belongs to
    another run or was written by other versions of the libraries that decide the arithmetic."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        # the checkpoint holds the live training objects (see Trainer.checkpoint_state), which
        # only a full unpickle restores; it is a file this run wrote for itself
        payload = torch.load(path, map_location=resolve_device(run.config.device), weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}); remove it to start the run over from step 0"
        ) from None
    if not isinstance(payload, dict) or payload.get("run_id") != run.run_id:
        other = payload.get("run_id") if isinstance(payload, dict) else None
        raise UsageError(
            f"{path}: the checkpoint of run {other!r}, not of {run.run_id}; remove it to start the run over from step 0"
        )
    if payload.get("versions") != _checkpoint_versions():
        raise UsageError(
            f"{path}: written with {payload.get('versions')}, but this is {_checkpoint_versions()}, "
            "so resuming would not continue the same computation; remove it to start over"
        )
    written_with, wanted = payload.get("settings", {}), _checkpoint_settings(run)
    # a setting added since the checkpoint was written is as its default there: it computes what
    # the code did before the setting existed (adding one needs no COMPUTATION_VERSION bump)
    defaults = type(run.config)().to_dict()
    changed = sorted(
        k for k in wanted.keys() | written_with.keys() if written_with.get(k, defaults.get(k)) != wanted.get(k)
    )
    if changed:
        key = changed[0]
        raise UsageError(
            f"{path}: written with {key}={written_with.get(key)!r}, this run has {key}="
            f"{wanted.get(key)!r}; resume with the same settings, or remove it to start over"
        )
    return payload


def write_checkpoint(
    folder: Path, run: ResolvedRun, trainer: Trainer, progress: ProgressWriter, resumed_at_steps: list[int]
) -> Path:
    """Save the trainer's state and the progress rows so far, atomically: the previous checkpoint
    stays in place until the new one is complete."""
    payload = {
        "run_id": run.run_id,
        "versions": _checkpoint_versions(),
        "settings": _checkpoint_settings(run),
        "step": trainer.loop.steps,
        "resumed_at_steps": list(resumed_at_steps),
        "progress_csv": progress.text(),
        "trainer": trainer.checkpoint_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = folder / CHECKPOINT_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def inspect_run_folder(folder: Path, run: ResolvedRun, option: str = "--out") -> str:
    """What `folder` holds for `run`: ``new`` (missing or empty), ``resume`` (this run, interrupted,
    with a checkpoint), ``restart`` (this run, interrupted before its first checkpoint). Anything
    else is a UsageError: a file, a folder with other files, another run, a finished run, or an
    interrupted run that cannot resume."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option}: {folder} exists and is not a folder; give a new or empty folder")
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if not names:
        return "new"
    foreign = sorted(n for n in names if not is_run_file(n) and not is_temporary_file(n))
    if foreign:
        raise UsageError(
            f"{option}: {folder} holds files that are not a trbench run ({foreign[0]!r}, ...); "
            "give a new or empty folder, or the folder of an interrupted run of the same settings"
        )
    if CONFIG_FILE in names:
        try:
            other = json.loads((folder / CONFIG_FILE).read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            raise UsageError(
                f"{option}: {folder / 'config.json'} is unreadable; remove the folder to start over"
            ) from None
        if other != run.run_id:
            raise UsageError(
                f"{option}: {folder} holds run {other!r}, not {run.run_id} (other settings, seed or "
                "budget); give a new folder, or the same arguments to resume it"
            )
    if RESULT_FILE in names:
        status = _recorded_status(folder / RESULT_FILE, option)
        if status != "failed" or CHECKPOINT_FILE not in names:
            raise UsageError(
                f"{option}: {folder} already holds this run, {status} (result.json); choose another "
                "folder, or remove it to run again"
            )
    if CHECKPOINT_FILE in names:
        read_checkpoint(folder, run)  # refuse an unusable one now, before anything is written
        return "resume"
    if CONFIG_FILE not in names and not _only_an_empty_start(folder, names):
        # trbench's file names alone do not make a folder trbench's: another tool's progress.csv
        # or model.pt must not be deleted as the leftovers of an interrupted run
        raise UsageError(
            f"{option}: {folder} holds {', '.join(sorted(names))} but no config.json, so not a "
            "trbench run; give a new or empty folder"
        )
    if run.config.env_backend == "envpool" and PARTIAL_PROGRESS_FILE in names:
        raise UsageError(
            f"{option}: {folder} holds an interrupted envpool run, which cannot resume: envpool cannot "
            "save its simulator state; remove the folder to start the run over"
        )
    return "restart"


def _recorded_status(path: Path, option: str) -> str:
    try:
        return str(json.loads(path.read_text()).get("status"))
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"{option}: {path} is unreadable; remove the folder to start over") from None


def _only_an_empty_start(folder: Path, names: set[str]) -> bool:
    """A run killed before it wrote config.json leaves an empty progress.csv.partial (and maybe
    temporary files of atomic writes), nothing else."""
    leftovers = {n for n in names if not is_temporary_file(n)}
    return leftovers <= {PARTIAL_PROGRESS_FILE} and all((folder / n).stat().st_size == 0 for n in leftovers)


# --- executing a run -----------------------------------------------------------------------------------


class RunExecution:
    """One run's life in its folder, split at the points a caller drives it through: construction
    prepares the folder (resume or start over), :meth:`start` builds the trainer, :meth:`record`
    takes each iteration's row, :meth:`ended` takes the outcome or the exception that ended
    training, and :meth:`finish` writes result.json. :func:`execute_run` drives one; a lockstep
    pack (``execute_pack``) drives several around one batched trainer."""

    def __init__(
        self,
        run: ResolvedRun,
        folder: Path,
        on_iteration: Callable[[dict[str, Any]], None] | None = None,
        on_checkpoint: Callable[[Path], None] | None = None,
    ):
        self.run, self.folder = run, Path(folder)
        self.on_iteration, self.on_checkpoint = on_iteration, on_checkpoint
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            checkpoint = read_checkpoint(self.folder, run)
            self.discarded = None
        except UsageError as exc:
            # unusable (damaged, or written with other settings or library versions): resuming from it
            # would not continue this run, and refusing would fail it at every rerun; start over
            checkpoint, self.discarded = None, str(exc)
        self.checkpoint = checkpoint
        clear_unfinished(self.folder, keep_checkpoint=checkpoint is not None)
        self.started = time.perf_counter()
        self.result: dict[str, Any] = {
            "status": "failed",
            "error": None,
            "final_eval_return": None,
            "final_eval_return_std": None,
            "final_eval_episodes": 0,
            "steps": 0,
            "wall_time_s": None,
            "steps_per_second": None,
        }
        self.trainer: Trainer | None = None
        self.resumed_at_steps = list(checkpoint["resumed_at_steps"]) + [checkpoint["step"]] if checkpoint else []
        self.earlier_wall_time_s = checkpoint["trainer"]["loop"]["wall_time_s"] if checkpoint else 0.0
        self.progress = ProgressWriter(self.folder, checkpoint["progress_csv"] if checkpoint else "")
        self.steps_seen = checkpoint["step"] if checkpoint else 0
        self.events = RunEvents(self.folder) if run.config.tensorboard else None
        if self.events is not None and checkpoint:
            self.events.replay(checkpoint["progress_csv"])

    def start(self) -> Trainer:
        """The run's trainer, resuming from the checkpoint if there is one; config.json written."""
        run = self.run
        self.trainer = Trainer(
            run.algorithm_cls,
            run.config,
            run.spec.env_id,
            run.spec.steps,
            run.spec.seed,
            resume_from=self.checkpoint["trainer"] if self.checkpoint else None,
        )
        if not (self.folder / CONFIG_FILE).exists():
            atomic_write_json(self.folder / CONFIG_FILE, config_record(run, str(self.trainer.device)))
        if self.events is not None:
            self.events.config((self.folder / CONFIG_FILE).read_text())
        return self.trainer

    def record(self, row: dict[str, Any]) -> None:
        self.steps_seen = row["step"]
        self.progress.write(row)
        if self.events is not None:
            self.events.row(row)
        assert self.trainer is not None  # rows come from the trainer
        if self.trainer.checkpoint_due:
            path = write_checkpoint(self.folder, self.run, self.trainer, self.progress, self.resumed_at_steps)
            if self.on_checkpoint is not None:
                self.on_checkpoint(path)
        if self.on_iteration is not None:
            self.on_iteration(row)

    def ended(self, outcome: TrainingOutcome | BaseException) -> None:
        """Take what ended training. Divergence, a prune and any error are recorded; a
        UsageError is re-raised after the folder is cleaned up; an interrupt (any other
        BaseException) is re-raised and leaves the run unfinished."""
        if isinstance(outcome, TrainingOutcome):
            returns = outcome.final_eval_returns
            self.result.update(
                status="complete",
                final_eval_return=float(returns.mean()),
                final_eval_return_std=float(returns.std()),
                final_eval_episodes=int(returns.size),
                steps=outcome.steps,
            )
            if self.run.config.save_model:
                tmp = self.folder / f".{MODEL_FILE}.tmp"
                torch.save(outcome.state, tmp)
                os.replace(tmp, self.folder / MODEL_FILE)
        elif isinstance(outcome, TrainingDiverged):
            self.result.update(status="diverged", error=str(outcome), steps=self.steps_seen)
        elif isinstance(outcome, RunPruned):
            self.result.update(status="pruned", error=str(outcome), steps=self.steps_seen)
        elif isinstance(outcome, UsageError):
            self.progress.close()
            self.close()
            clear_unfinished(self.folder, keep_checkpoint=self.checkpoint is not None)
            if not any(self.folder.iterdir()):
                self.folder.rmdir()
            raise outcome
        elif isinstance(outcome, Exception):
            error = f"{type(outcome).__name__}: {outcome}".splitlines()[0]
            self.result.update(status="failed", error=error, steps=self.steps_seen)
        else:
            raise outcome

    def close(self) -> None:
        """Close the envs and the event log (not the progress file: an interrupted run keeps it
        unfinished). Closing twice does nothing."""
        if self.trainer is not None:
            self.trainer.close()
            self.trainer = None
        if self.events is not None:
            self.events.close()
            self.events = None

    def finish(self) -> dict[str, Any]:
        """Write result.json (atomically, last) and return it."""
        run, folder, result = self.run, self.folder, self.result
        self.close()
        if not (folder / CONFIG_FILE).exists():
            atomic_write_json(folder / CONFIG_FILE, config_record(run, run.config.device))
        self.progress.close()
        wall = self.earlier_wall_time_s + time.perf_counter() - self.started
        result["wall_time_s"] = wall
        result["steps_per_second"] = result["steps"] / wall if wall > 0 else None
        if self.resumed_at_steps:
            result["resumed_at_steps"] = self.resumed_at_steps
        if self.discarded:
            result["discarded_checkpoint"] = self.discarded
        for key in ("final_eval_return", "final_eval_return_std"):
            if result[key] is not None and not math.isfinite(result[key]):
                result.update(status="diverged", error=f"non-finite {key}")
        atomic_write_json(folder / RESULT_FILE, result)
        # a failed run keeps its checkpoint, so the rerun that redoes it resumes it (after a full disk, say)
        if result["status"] != "failed" and not run.config.keep_checkpoint:
            (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
        return result


def execute_run(
    run: ResolvedRun, folder: Path, on_iteration=None, on_checkpoint: Callable[[Path], None] | None = None
) -> dict[str, Any]:
    """Execute a resolved run into `folder` and return the result record.

    If `folder` holds a checkpoint of this run, the run resumes from it (a checkpoint of another
    run, or an unreadable one, is a UsageError); otherwise it starts from step 0. A checkpoint is
    written every ``checkpoint_interval_steps`` and `on_checkpoint` is called with its path once
    it is complete. Divergence, errors inside training and a :class:`RunPruned` from
    ``on_iteration`` are recorded (status `diverged` / `failed` / `pruned`), not raised; an
    interrupt (KeyboardInterrupt, SIGKILL) leaves no result.json, so the run counts as
    unfinished and resumes from its last checkpoint.
    """
    execution = RunExecution(run, folder, on_iteration, on_checkpoint)
    try:
        outcome: TrainingOutcome | BaseException = execution.start().run(execution.record)
    except BaseException as exc:  # noqa: BLE001 - ended() records it or raises it again
        outcome = exc
    try:
        execution.ended(outcome)
    finally:
        execution.close()
    return execution.finish()
