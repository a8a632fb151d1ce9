"""A hook naming the phases of an update, for a benchmark to time them in the real code.

An algorithm's update marks its phases with ``with self.phase("cg"): ...``. By default
``phase`` is :func:`untimed`, which hands back one shared do-nothing context: no clock is read,
nothing is allocated and a GPU is never synchronised, so training computes and costs what it
would without the marks. ``trbench bench`` installs a :class:`PhaseRecorder` on one algorithm
instance (:func:`recording_phases`), runs the real update and reads the time spent in each phase.

Phases nest (the conjugate-gradient solve holds its Fisher-vector products); the recorder keeps
each phase's own time, without the phases nested in it, so that the times add up to the whole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch

PhaseHook = Callable[[str], AbstractContextManager[Any]]

_NOTHING = contextlib.nullcontext()


def untimed(name: str) -> AbstractContextManager[Any]:
    """The default hook: the same empty context for every phase."""
    return _NOTHING


class PhaseRecorder:
    """Seconds and entries per phase name, each phase's own time without its nested phases.

    On a CUDA device the queue is drained at every phase boundary, so a phase's time is the work
    it queued and not the work queued before it; that adds synchronisations the untimed update
    does not have (around every Fisher-vector product inside the CG solve among them)."""

    def __init__(self, device: torch.device | None = None, clock: Callable[[], float] = time.perf_counter):
        self.synchronize_cuda = device is not None and device.type == "cuda"
        self.device = device
        self.clock = clock  # seconds; a test passes a clock of its own
        self.seconds: dict[str, float] = {}
        self.entries: dict[str, int] = {}
        self._nested_seconds: list[float] = []  # per open phase: time spent in phases nested in it

    def _now(self) -> float:
        if self.synchronize_cuda:
            torch.cuda.synchronize(self.device)
        return self.clock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._nested_seconds.append(0.0)
        start = self._now()
        try:
            yield
        finally:
            elapsed = self._now() - start
            nested = self._nested_seconds.pop()
            if self._nested_seconds:
                self._nested_seconds[-1] += elapsed
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - nested
            self.entries[name] = self.entries.get(name, 0) + 1

    def total(self) -> float:
        """Seconds inside any recorded phase (outermost phases counted once)."""
        return sum(self.seconds.values())


@contextlib.contextmanager
def recording_phases(algorithm: Any) -> Iterator[PhaseRecorder]:
    """Time the phases of `algorithm`'s updates while the block runs, then put the default back
    (the recorder is never pickled into a checkpoint with the algorithm)."""
    recorder = PhaseRecorder(algorithm.device)
    algorithm.phase = recorder
    try:
        yield recorder
    finally:
        del algorithm.phase  # the class's untimed hook shows through again
