"""The sections that time whole runs: the suite runner on one and several workers (grid), the
memory of one worker over a run, and what a checkpoint costs against a training iteration."""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
import torch

from trbench.algos.config import OnPolicyConfig
from trbench.algos.trainer import Trainer
from trbench.base.run_folder import ProgressWriter
from trbench.suites.execute import execute_run, write_checkpoint
from trbench.suites.grid import load_suite
from trbench.suites.run_spec import ResolvedRun, RunSpec, resolve
from trbench.suites.runner import run_suite

from .settings import BenchReport, BenchSettings, Row, bench_config, median, ratio_row


def measure_grid(env_id: str, settings: BenchSettings, report: BenchReport) -> None:
    """Throughput of `trbench run` on one worker and on `grid_workers`, alternated."""
    # the settings the throughput section trains with (on the CPU: one core per worker)
    _, config = bench_config("trpo", settings, "cpu")
    hparams = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in config.to_dict().items()
        if value != getattr(type(config)(), key)
    }
    hparams["save_model"] = False
    text = tomli_w.dumps(
        {
            "name": "bench-grid",
            "description": "throughput of the suite runner",
            "steps": settings.grid_steps,
            "seeds": settings.grid_runs,
            "envs": [env_id],
            "algos": ["trpo"],
            "hparams": {"all": hparams},
        }
    )
    samples: dict[int, list[float]] = {1: [], settings.grid_workers: []}
    cpu_samples: dict[int, list[float]] = {1: [], settings.grid_workers: []}
    parent_cpu: dict[int, list[float]] = {1: [], settings.grid_workers: []}  # the runner's own share of a core
    with tempfile.TemporaryDirectory(prefix="trbench-bench-grid-") as tmp:
        suite_path = Path(tmp) / "bench-grid.toml"
        suite_path.write_text(text)
        suite = load_suite(suite_path)
        total_steps = settings.grid_runs * settings.grid_steps
        for repeat in range(settings.grid_repeats):
            for workers in (1, settings.grid_workers):
                out = Path(tmp) / f"r{repeat}-w{workers}"
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                parent_before = time.process_time()
                start = time.perf_counter()
                code = run_suite(
                    suite, out, workers=workers, executor="local", address=None, redo_failed=True, stream=io.StringIO()
                )
                elapsed = time.perf_counter() - start
                parent_cpu[workers].append((time.process_time() - parent_before) / elapsed)
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if code != 0:
                    raise RuntimeError(f"the benchmark grid did not complete on {workers} worker(s)")
                samples[workers].append(total_steps / elapsed)
                # the workers' own CPU time (reaped children): steps per CPU-second does not depend
                # on how many cores other processes leave free, so it shows whether workers slow
                # each other down even when the wall-clock ratio is swamped by foreign load
                cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
                cpu_samples[workers].append(total_steps / cpu)
    report.samples[f"grid/{env_id}"] = {
        "steps_per_s": samples,
        "steps_per_cpu_s": cpu_samples,
        "runner_cpu_share": parent_cpu,
    }
    n = settings.grid_workers
    ratios = [m / o for m, o in zip(samples[n], samples[1])]
    note = f"{settings.grid_runs} TRPO runs x {settings.grid_steps} steps, trbench run (local pool)"
    report.add(Row("grid", env_id, "1 worker", median(samples[1]), "steps/s", 1.0, repeats=len(samples[1]), note=note))
    report.add(
        ratio_row("grid", env_id, f"{n} workers", samples[n], ratios, "steps/s", "wall clock, ratio to 1 worker")
    )
    cpu_ratios = [m / o for m, o in zip(cpu_samples[n], cpu_samples[1])]
    report.add(
        Row(
            "grid",
            env_id,
            "1 worker, per CPU-second",
            median(cpu_samples[1]),
            "steps/cpu-s",
            1.0,
            repeats=len(cpu_samples[1]),
            note="workers' CPU time",
        )
    )
    report.add(
        ratio_row(
            "grid",
            env_id,
            f"{n} workers, per CPU-second",
            cpu_samples[n],
            cpu_ratios,
            "steps/cpu-s",
            f"ratio to 1 worker; times {n} = the wall-clock speed-up on {n} otherwise idle cores",
        )
    )


# --- memory ----------------------------------------------------------------------------------------


def _rss_mb() -> float:
    """Current resident set size; the peak so far where /proc is not available."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _memory_worker(env_id: str, steps: int, settings: BenchSettings, queue) -> None:
    torch.set_num_threads(1)  # as a suite worker runs
    trace: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="trbench-bench-memory-") as tmp:
        run = resolve(RunSpec("trpo", env_id, steps, settings.seed, {"num_envs": settings.num_envs}))
        result = execute_run(run, Path(tmp) / "run", on_iteration=lambda row: trace.append((row["step"], _rss_mb())))
    queue.put({"status": result["status"], "trace": trace, "peak_mb": _peak_rss_mb()})


def measure_memory(env_id: str, settings: BenchSettings, report: BenchReport) -> None:
    """Peak RSS of one worker (a fresh process, as in the runner's pool) over a TRPO run."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_worker, args=(env_id, settings.memory_steps, settings, queue))
    process.start()
    outcome = queue.get()
    process.join()
    trace = outcome["trace"]
    report.samples[f"memory/{env_id}"] = outcome
    tenth = max(len(trace) // 10, 1)
    early = median([rss for _, rss in trace[tenth - 1 : 2 * tenth]])
    late = median([rss for _, rss in trace[-tenth:]])
    note = f"TRPO, {settings.memory_steps} steps, run {outcome['status']}"
    report.add(Row("memory", env_id, "peak RSS of one worker", outcome["peak_mb"], "MiB", repeats=1, note=note))
    report.add(Row("memory", env_id, "RSS at 10-20% of the run", early, "MiB", repeats=1))
    report.add(
        Row(
            "memory",
            env_id,
            "RSS over the last 10% of the run",
            late,
            "MiB",
            repeats=1,
            note=f"growth {late - early:+.1f} MiB from the 10-20% mark",
        )
    )


# --- checkpoints -------------------------------------------------------------------------------------


def measure_checkpoint(env_id: str, settings: BenchSettings, report: BenchReport, device: str) -> None:
    """What a checkpoint costs: the time to write one (the trainer's state captured, serialised,
    written and fsynced atomically, as a run does) against the time of one training iteration
    of the same run, measured in turn; from the two, its share of a run's time at the default
    ``checkpoint_interval_steps``."""
    cls, config = bench_config("trpo", settings, device)
    config = dataclasses.replace(config, checkpoint_interval_steps=settings.steps_per_iteration)
    rounds = settings.warmup + settings.repeats
    steps = settings.steps_per_iteration * (rounds + 1)  # one more: the last iteration takes no checkpoint
    run = ResolvedRun(RunSpec("trpo", env_id, steps, settings.seed), cls, config)
    trainer = Trainer(cls, config, env_id, steps, settings.seed)
    iteration_s, write_s, sizes = [], [], []
    with tempfile.TemporaryDirectory(prefix="trbench-bench-checkpoint-") as tmp:
        folder = Path(tmp)
        progress = ProgressWriter(folder)
        if trainer.checkpoint_unsupported_reason:
            report.add(
                Row(
                    "checkpoint",
                    env_id,
                    "checkpoint write",
                    float("nan"),
                    "s",
                    repeats=0,
                    note=f"not measured: {trainer.checkpoint_unsupported_reason}",
                )
            )
            trainer.close()
            progress.close()
            return
        started = time.perf_counter()
        for round_index, row in enumerate(trainer.iterate()):
            iteration = time.perf_counter() - started
            progress.write(row)
            if trainer.checkpoint_due:
                begin = time.perf_counter()
                path = write_checkpoint(folder, run, trainer, progress, [])
                written = time.perf_counter() - begin
                if round_index >= settings.warmup:
                    iteration_s.append(iteration)
                    write_s.append(written)
                    sizes.append(path.stat().st_size)
            started = time.perf_counter()
        progress.close()
    trainer.close()
    report.samples[f"checkpoint/{env_id}"] = {"iteration_s": iteration_s, "write_s": write_s, "bytes": sizes}
    interval = OnPolicyConfig().checkpoint_interval_steps
    iterations_between = interval / settings.steps_per_iteration
    shares = [w / (w + iterations_between * i) for w, i in zip(write_s, iteration_s)]
    note = f"TRPO, {device}; ratio = one write / one training iteration of the same round"
    report.add(
        ratio_row(
            "checkpoint", env_id, "checkpoint write", write_s, [w / i for w, i in zip(write_s, iteration_s)], "s", note
        )
    )
    report.add(Row("checkpoint", env_id, "checkpoint size", median(sizes) / 2**20, "MiB", repeats=len(sizes)))
    report.add(
        Row(
            "checkpoint",
            env_id,
            f"share of run time at checkpoint_interval_steps={interval}",
            100 * median(shares),
            "%",
            repeats=len(shares),
            note=f"range {100 * min(shares):.2f}-{100 * max(shares):.2f}%; one write per "
            f"{iterations_between:.1f} iterations; a kill loses at most {interval:,} steps",
        )
    )
