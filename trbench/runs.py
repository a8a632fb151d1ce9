"""One run, one folder: resolve a run from its description, execute it, write the results format.

The format is documented in ``results/README.md``. `result.json` is written last and atomically,
and `progress.csv` only appears (by rename) once the run has ended, so a folder either holds a
finished run or is recognisably unfinished and can be redone.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

import trbench
from trbench.algos.base import OnPolicyAlgorithm
from trbench.algos.config import OnPolicyConfig
from trbench.algos.registry import resolve_algorithm
from trbench.algos.trainer import Trainer, TrainingDiverged, derive_seeds, resolve_device, steps_collected
from trbench.errors import UsageError
from trbench.tensorboard_log import EVENT_FILE_PREFIX, RunEvents, require_tensorboard

# fields that change how a run executes but not what it computes; kept out of the run id
EXECUTION_ONLY_FIELDS = ("device", "save_model", "linesearch_mode", "checkpoint_interval_steps", "keep_checkpoint",
                         "tensorboard")

# Bump when a change alters what an existing configuration computes (a changed default, a fix
# in an update rule), so that resumed grids redo their runs instead of mixing old and new.
# Adding a config field whose default reproduces the old behaviour needs no bump.
COMPUTATION_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """What to run: algorithm (name or import path), env, budget, seed, config overrides.

    `label` is the arm's name in reports (a variant such as ``trpo+``); it defaults to the
    algorithm's name.
    """

    algorithm: str
    env_id: str
    steps: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def arm(self) -> str:
        return self.label or self.algorithm


@dataclass(frozen=True)
class ResolvedRun:
    spec: RunSpec
    algorithm_cls: type[OnPolicyAlgorithm]
    config: OnPolicyConfig

    @property
    def steps_taken(self) -> int:
        """The environment steps the run takes: its budget rounded up to whole iterations."""
        return steps_collected(self.spec.steps, self.config.steps_per_iteration)

    @property
    def run_id(self) -> str:
        """`<arm>__<env>__s<seed>__<hash>`: the hash covers the arm, algorithm, env, budget, seed,
        :data:`COMPUTATION_VERSION` and every setting whose resolved value differs from its
        default. Leaving defaults out keeps ids stable when a new setting is added, and makes an
        explicit `max_kl=0.01` the same run as the default."""
        defaults = type(self.config)().to_dict()
        changed = {k: v for k, v in self.config.to_dict().items()
                   if k not in EXECUTION_ONLY_FIELDS and v != defaults[k]}
        payload = json.dumps({"arm": self.spec.arm, "algorithm": self.spec.algorithm, "env_id": self.spec.env_id,
                              "steps": self.spec.steps, "seed": self.spec.seed, "config": changed,
                              "computation_version": COMPUTATION_VERSION},
                             sort_keys=True, default=str)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        safe_arm = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.spec.arm)
        return f"{safe_arm}__{self.spec.env_id}__s{self.spec.seed}__{digest}"


def resolve(spec: RunSpec) -> ResolvedRun:
    """Validate everything about a run without touching the disk or building an env."""
    cls = resolve_algorithm(spec.algorithm)
    if spec.env_id not in gym.registry:
        raise UsageError(f"env: unknown gymnasium env id {spec.env_id!r} (e.g. Hopper-v5, InvertedPendulum-v5)")
    if not isinstance(spec.steps, int) or isinstance(spec.steps, bool) or spec.steps < 1:
        raise UsageError(f"steps: must be an integer >= 1, got {spec.steps!r}")
    if not isinstance(spec.seed, int) or isinstance(spec.seed, bool) or spec.seed < 0:
        raise UsageError(f"seed: must be an integer >= 0, got {spec.seed!r}")
    config = cls.Config.from_overrides(spec.overrides)
    resolve_device(config.device)
    if config.tensorboard:
        require_tensorboard()
    return ResolvedRun(spec, cls, config)


def rounding_note(runs: Sequence[ResolvedRun]) -> str:
    """One line saying which step budgets are rounded up to whole iterations ("" when none is),
    so that a command says it once instead of printing one count and running another."""
    rounded_runs = [run for run in runs if run.steps_taken != run.spec.steps]
    if not rounded_runs:
        return ""
    pairs = sorted({(run.spec.steps, run.steps_taken) for run in rounded_runs})
    sizes = {run.config.steps_per_iteration for run in rounded_runs}
    unit = f"steps_per_iteration = {next(iter(sizes)):,} steps" if len(sizes) == 1 else "steps_per_iteration steps"
    if len(pairs) == 1:
        change = f"the budget of {pairs[0][0]:,} becomes {pairs[0][1]:,} steps"
    else:
        shown = ", ".join(f"{budget:,} -> {taken:,}" for budget, taken in pairs[:3])
        change = f"budgets are rounded up: {shown}" + (", ..." if len(pairs) > 3 else "")
    share = f" ({len(rounded_runs)} of {len(runs)} runs)" if len(runs) > 1 else ""
    return f"note: training collects whole iterations of {unit}, so {change}{share}"


# --- writing ---------------------------------------------------------------------------------------

def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _git_commit() -> str | None:
    source = Path(trbench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=None)
def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries that decide what a run computes."""
    import mujoco
    import numpy
    import torch

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
        from trbench.algos.envpool_backend import envpool_versions

        versions.update(envpool_versions())
    return {
        "versions": versions,
        "git_commit": _git_commit(),
        "hostname": socket.gethostname(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
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
        "overrides": dict(run.spec.overrides),
        **provenance(run.config.env_backend),
    }


PROGRESS_FIXED_COLUMNS = ["iteration", "step", "wall_time_s", "train_return", "train_episodes", "eval_return",
                          "eval_return_std"]
CHECKPOINT_FILE = "checkpoint.pt"
# every file a run folder can hold (besides the temporary files of atomic writes, ".NAME.*.tmp", and
# the TensorBoard event files of the setting tensorboard, EVENT_FILE_PREFIX + "...")
RUN_FILES = ("config.json", "progress.csv", "progress.csv.partial", CHECKPOINT_FILE, "model.pt", "result.json")


def is_run_file(name: str) -> bool:
    return name in RUN_FILES or name.startswith(EVENT_FILE_PREFIX)


class ProgressWriter:
    """Streams iteration records to `progress.csv.partial`; renamed to `progress.csv` on close.

    `resume_text` (the file's text as a checkpoint saved it) starts the file again from that
    point, so rows an interrupted attempt wrote after its last checkpoint are dropped."""

    def __init__(self, folder: Path, resume_text: str = ""):
        self.final_path = folder / "progress.csv"
        self.partial_path = folder / "progress.csv.partial"
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
        self._writer.writerow({k: _csv_value(v) for k, v in record.items()})
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


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact representation: the file round-trips bit for bit
    return value


def run_is_complete(folder: Path) -> bool:
    try:
        return json.loads((folder / "result.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def clear_unfinished(folder: Path, keep_checkpoint: bool = False) -> None:
    """Remove what an interrupted attempt left, so the redo starts clean; with `keep_checkpoint`
    the checkpoint (and the config.json of the run it belongs to) stay, to resume from."""
    keep = {CHECKPOINT_FILE, "config.json"} if keep_checkpoint else set()
    for name in RUN_FILES:
        if name not in keep:
            (folder / name).unlink(missing_ok=True)
    for events in folder.glob(EVENT_FILE_PREFIX + "*"):  # a resumed run writes its event file anew
        events.unlink(missing_ok=True)
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


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
    import torch

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        # the checkpoint holds the live training objects (see Trainer.checkpoint_state), which
        # only a full unpickle restores; it is a file this run wrote for itself
        payload = torch.load(path, map_location=resolve_device(run.config.device), weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(f"{path}: unreadable checkpoint ({type(exc).__name__}); remove it to start the run "
                         "over from step 0") from None
    if not isinstance(payload, dict) or payload.get("run_id") != run.run_id:
        other = payload.get("run_id") if isinstance(payload, dict) else None
        raise UsageError(f"{path}: the checkpoint of run {other!r}, not of {run.run_id}; remove it to start the "
                         "run over from step 0")
    if payload.get("versions") != _checkpoint_versions():
        raise UsageError(f"{path}: written with {payload.get('versions')}, but this is {_checkpoint_versions()}, "
                         "so resuming would not continue the same computation; remove it to start over")
    written_with, wanted = payload.get("settings", {}), _checkpoint_settings(run)
    changed = sorted(k for k in wanted.keys() | written_with.keys() if written_with.get(k) != wanted.get(k))
    if changed:
        key = changed[0]
        raise UsageError(f"{path}: written with {key}={written_with.get(key)!r}, this run has {key}="
                         f"{wanted.get(key)!r}; resume with the same settings, or remove it to start over")
    return payload


def write_checkpoint(folder: Path, run: ResolvedRun, trainer: Trainer, progress: ProgressWriter,
                     resumed_at_steps: list[int]) -> Path:
    """Save the trainer's state and the progress rows so far, atomically: the previous checkpoint
    stays in place until the new one is complete."""
    import torch

    payload = {"run_id": run.run_id, "versions": _checkpoint_versions(), "settings": _checkpoint_settings(run),
               "step": trainer.loop.steps,
               "resumed_at_steps": list(resumed_at_steps), "progress_csv": progress.text(),
               "trainer": trainer.checkpoint_state()}
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
    foreign = sorted(n for n in names if not is_run_file(n) and not (n.startswith(".") and n.endswith(".tmp")))
    if foreign:
        raise UsageError(f"{option}: {folder} holds files that are not a trbench run ({foreign[0]!r}, ...); "
                         "give a new or empty folder, or the folder of an interrupted run of the same settings")
    if "config.json" in names:
        try:
            other = json.loads((folder / "config.json").read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            raise UsageError(f"{option}: {folder / 'config.json'} is unreadable; remove the folder to start over") from None
        if other != run.run_id:
            raise UsageError(f"{option}: {folder} holds run {other!r}, not {run.run_id} (other settings, seed or "
                             "budget); give a new folder, or the same arguments to resume it")
    if "result.json" in names:
        status = _recorded_status(folder / "result.json", option)
        if status != "failed" or CHECKPOINT_FILE not in names:
            raise UsageError(f"{option}: {folder} already holds this run, {status} (result.json); choose another "
                             "folder, or remove it to run again")
    if CHECKPOINT_FILE in names:
        read_checkpoint(folder, run)  # refuse an unusable one now, before anything is written
        return "resume"
    if "config.json" not in names and not _only_an_empty_start(folder, names):
        # trbench's file names alone do not make a folder trbench's: another tool's progress.csv
        # or model.pt must not be deleted as the leftovers of an interrupted run
        raise UsageError(f"{option}: {folder} holds {', '.join(sorted(names))} but no config.json, so not a "
                         "trbench run; give a new or empty folder")
    if run.config.env_backend == "envpool" and "progress.csv.partial" in names:
        raise UsageError(f"{option}: {folder} holds an interrupted envpool run, which cannot resume: envpool cannot "
                         "save its simulator state; remove the folder to start the run over")
    return "restart"


def _recorded_status(path: Path, option: str) -> str:
    try:
        return str(json.loads(path.read_text()).get("status"))
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"{option}: {path} is unreadable; remove the folder to start over") from None


def _only_an_empty_start(folder: Path, names: set[str]) -> bool:
    """A run killed before it wrote config.json leaves an empty progress.csv.partial (and maybe
    temporary files of atomic writes), nothing else."""
    leftovers = {n for n in names if not (n.startswith(".") and n.endswith(".tmp"))}
    return leftovers <= {"progress.csv.partial"} and all((folder / n).stat().st_size == 0 for n in leftovers)


# --- executing a run -----------------------------------------------------------------------------------

def execute_run(run: ResolvedRun, folder: Path, on_iteration=None,
                on_checkpoint: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Execute a resolved run into `folder` and return the result record.

    If `folder` holds a checkpoint of this run, the run resumes from it (a checkpoint of another
    run, or an unreadable one, is a UsageError); otherwise it starts from step 0. A checkpoint is
    written every ``checkpoint_interval_steps`` and `on_checkpoint` is called with its path once
    it is complete. Divergence, errors inside training and a :class:`RunPruned` from
    ``on_iteration`` are recorded (status `diverged` / `failed` / `pruned`), not raised; an
    interrupt (KeyboardInterrupt, SIGKILL) leaves no result.json, so the run counts as
    unfinished and resumes from its last checkpoint.
    """
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint = read_checkpoint(folder, run)
        discarded = None
    except UsageError as exc:
        # unusable (damaged, or written with other settings or library versions): resuming from it
        # would not continue this run, and refusing would fail it at every rerun; start over
        checkpoint, discarded = None, str(exc)
    clear_unfinished(folder, keep_checkpoint=checkpoint is not None)
    start = time.perf_counter()
    result: dict[str, Any] = {"status": "failed", "error": None, "final_eval_return": None,
                              "final_eval_return_std": None, "final_eval_episodes": 0, "steps": 0,
                              "wall_time_s": None, "steps_per_second": None}
    trainer = None
    resumed_at_steps = list(checkpoint["resumed_at_steps"]) + [checkpoint["step"]] if checkpoint else []
    earlier_wall_time_s = checkpoint["trainer"]["loop"]["wall_time_s"] if checkpoint else 0.0
    progress = ProgressWriter(folder, checkpoint["progress_csv"] if checkpoint else "")
    steps_seen = checkpoint["step"] if checkpoint else 0
    events = RunEvents(folder) if run.config.tensorboard else None
    if events is not None and checkpoint:
        events.replay(checkpoint["progress_csv"])

    def record(row: dict[str, Any]) -> None:
        nonlocal steps_seen
        steps_seen = row["step"]
        progress.write(row)
        if events is not None:
            events.row(row)
        if trainer.checkpoint_due:
            path = write_checkpoint(folder, run, trainer, progress, resumed_at_steps)
            if on_checkpoint is not None:
                on_checkpoint(path)
        if on_iteration is not None:
            on_iteration(row)

    try:
        trainer = Trainer(run.algorithm_cls, run.config, run.spec.env_id, run.spec.steps, run.spec.seed,
                          resume_from=checkpoint["trainer"] if checkpoint else None)
        if not (folder / "config.json").exists():
            atomic_write_json(folder / "config.json", config_record(run, str(trainer.device)))
        if events is not None:
            events.config((folder / "config.json").read_text())
        outcome = trainer.run(record)
        returns = outcome.final_eval_returns
        result.update(status="complete", final_eval_return=float(returns.mean()),
                      final_eval_return_std=float(returns.std()), final_eval_episodes=int(returns.size),
                      steps=outcome.steps)
        if run.config.save_model:
            tmp = folder / ".model.pt.tmp"
            torch.save(outcome.state, tmp)
            os.replace(tmp, folder / "model.pt")
    except TrainingDiverged as exc:
        result.update(status="diverged", error=str(exc), steps=steps_seen)
    except RunPruned as exc:
        result.update(status="pruned", error=str(exc), steps=steps_seen)
    except UsageError:
        progress.close()
        if events is not None:
            events.close()
        clear_unfinished(folder, keep_checkpoint=checkpoint is not None)
        if not any(folder.iterdir()):
            folder.rmdir()
        raise
    except Exception as exc:  # noqa: BLE001 - any training error is recorded, the grid goes on
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0], steps=steps_seen)
    finally:
        if trainer is not None:
            trainer.close()
        if events is not None:
            events.close()
    if not (folder / "config.json").exists():
        atomic_write_json(folder / "config.json", config_record(run, run.config.device))
    progress.close()
    wall = earlier_wall_time_s + time.perf_counter() - start
    result["wall_time_s"] = wall
    result["steps_per_second"] = result["steps"] / wall if wall > 0 else None
    if resumed_at_steps:
        result["resumed_at_steps"] = resumed_at_steps
    if discarded:
        result["discarded_checkpoint"] = discarded
    for key in ("final_eval_return", "final_eval_return_std"):
        if result[key] is not None and not math.isfinite(result[key]):
            result.update(status="diverged", error=f"non-finite {key}")
    atomic_write_json(folder / "result.json", result)
    # a failed run keeps its checkpoint, so the rerun that redoes it resumes it (after a full disk, say)
    if result["status"] != "failed" and not run.config.keep_checkpoint:
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return result
