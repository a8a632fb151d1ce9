"""Progress of a running grid: a live status line on a terminal, plain log lines elsewhere.

Both show runs done / running / failed, the aggregate environment steps per second of all
workers together, and the time left at that rate.
"""

from __future__ import annotations

import shutil
import time
from typing import Any, TextIO

from trbench.suites.run_spec import ResolvedRun

LOG_INTERVAL_S = 30.0
LIVE_REFRESH_S = 0.5


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def describe(run: ResolvedRun) -> str:
    return f"{run.spec.arm} on {run.spec.env_id} seed {run.spec.seed}"


class Progress:
    """Counts runs and steps as the executor reports them and shows them on `stream`."""

    def __init__(
        self,
        runs: list[ResolvedRun],
        stream: TextIO,
        live: bool,
        already_done: int = 0,
        log_interval_s: float = LOG_INTERVAL_S,
    ):
        self.stream = stream
        self.live = live
        self.log_interval_s = log_interval_s
        self.total = len(runs) + already_done
        self.already_done = already_done
        self.planned_steps = sum(run.steps_taken for run in runs)
        self.running: dict[str, int] = {}  # run id -> steps so far
        self.complete = 0
        self.failed = 0
        self.finished_steps = 0  # steps of the runs of this session that have ended, as planned
        self.measured_steps = 0  # steps actually taken by them
        self.start = time.perf_counter()
        self._last_log = self.start
        self._last_draw = 0.0
        self._line_shown = False

    # --- tracker interface ----------------------------------------------------------------------------
    def started(self, run: ResolvedRun) -> None:
        self.running[run.run_id] = 0
        self._refresh()

    def stepped(self, run: ResolvedRun, step: int) -> None:
        if run.run_id in self.running:
            self.running[run.run_id] = step
        self._refresh()

    def finished(self, run: ResolvedRun, result: dict[str, Any]) -> None:
        self.running.pop(run.run_id, None)
        self.finished_steps += run.steps_taken
        self.measured_steps += int(result.get("steps") or 0)
        status = result.get("status")
        if status == "complete":
            self.complete += 1
            final = result.get("final_eval_return")
            detail = f"final return {final:.1f}" if final is not None else "complete"
        else:
            self.failed += 1
            detail = f"{str(status).upper()}: {result.get('error')}"
        wall = result.get("wall_time_s")
        took = f" in {format_duration(wall)}" if wall is not None else ""
        self._print(f"[{self.ended}/{self.total}] {describe(run)}: {detail}{took} ({run.run_id})")

    def resubmitted(self, run: ResolvedRun, reason: str) -> None:
        self._print(f"[retry] {describe(run)}: {reason} ({run.run_id})")

    def tick(self) -> None:
        self._refresh()

    def close(self) -> None:
        if self.live and self._line_shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._line_shown = False

    # --- numbers --------------------------------------------------------------------------------------
    @property
    def ended(self) -> int:
        return self.already_done + self.complete + self.failed

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def steps_per_second(self) -> float | None:
        elapsed = time.perf_counter() - self.start
        steps = self.measured_steps + sum(self.running.values())
        return steps / elapsed if elapsed > 0 and steps > 0 else None

    def eta_seconds(self) -> float | None:
        rate = self.steps_per_second()
        if rate is None:
            return None
        remaining = self.planned_steps - self.finished_steps - sum(self.running.values())
        return max(remaining, 0) / rate

    def summary(self) -> str:
        rate = self.steps_per_second()
        rate_text = f"{rate:,.0f} steps/s" if rate is not None else "? steps/s"
        return (
            f"{self.ended}/{self.total} done, {len(self.running)} running, {self.failed} failed, "
            f"{rate_text}, ETA {format_duration(self.eta_seconds())}, "
            f"elapsed {format_duration(time.perf_counter() - self.start)}"
        )

    # --- output ---------------------------------------------------------------------------------------
    def _print(self, line: str) -> None:
        if self.live:
            self.stream.write("\r\x1b[K" + line + "\n")
            self._line_shown = False
            self._draw()
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _refresh(self) -> None:
        now = time.perf_counter()
        if self.live:
            if now - self._last_draw >= LIVE_REFRESH_S:
                self._draw()
        elif now - self._last_log >= self.log_interval_s:
            self._last_log = now
            self.stream.write(f"progress: {self.summary()}\n")
            self.stream.flush()

    def _draw(self) -> None:
        self._last_draw = time.perf_counter()
        width = shutil.get_terminal_size().columns
        self.stream.write("\r\x1b[K" + self.summary()[: max(width - 1, 20)])
        self.stream.flush()
        self._line_shown = True
