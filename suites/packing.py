"""Packing a grid's runs into lockstep packs: runs of one cell (same arm, algorithm, env, budget
and settings; any seeds) that one worker trains as one batched computation.

A pack trains each of its runs into its own folder exactly as alone (algos/lockstep_trainer.py),
so packing changes how fast a grid runs, never what it computes or writes. An algorithm without a
lockstep update of its own (a plug-in loaded by import path, say) is never packed.
"""

from __future__ import annotations

import json

from trbench.algos.lockstep import lockstep_unsupported_reason

from .run_spec import ResolvedRun

# Measured on a 2-core machine (docs/performance.md, "Seeds in lockstep"): 4 seeds per worker gives
# TRPO and PPO on Hopper-v5 and HalfCheetah-v5 most of what 8 gives, and keeps a 5-seed cell on two
# workers (3 + 2) where 8 would leave the second worker idle
DEFAULT_SEEDS_PER_WORKER = 4


def cell_key(run: ResolvedRun) -> str:
    """What runs must share to train in one pack: everything but the seed."""
    spec = run.spec
    return json.dumps([spec.arm, spec.algorithm, spec.env_id, spec.steps, sorted(spec.overrides.items())], default=repr)


def pack_runs(runs: list[ResolvedRun], seeds_per_worker: int) -> list[list[ResolvedRun]]:
    """`runs` in packs of at most `seeds_per_worker` runs of one cell, a cell's runs split into as
    few packs as that allows and as even as possible (5 seeds at 4 per worker: 3 and 2, so two
    workers share the cell evenly); packs come in the order of their first run. A run whose
    algorithm has no lockstep update is a pack of its own."""
    cells: dict[str, list[int]] = {}
    singles: list[int] = []
    for position, run in enumerate(runs):
        if seeds_per_worker <= 1 or lockstep_unsupported_reason(run.algorithm_cls):
            singles.append(position)
        else:
            cells.setdefault(cell_key(run), []).append(position)
    packs: list[list[int]] = [[position] for position in singles]
    for positions in cells.values():
        count = -(-len(positions) // seeds_per_worker)  # ceil
        size, extra = divmod(len(positions), count)
        start = 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            packs.append(positions[start:end])
            start = end
    packs.sort(key=lambda pack: pack[0])
    return [[runs[position] for position in pack] for pack in packs]


def packs_for_slots(runs: list[ResolvedRun], seeds_per_worker: int, slots: int) -> tuple[list[list[ResolvedRun]], int]:
    """:func:`pack_runs` with the most seeds per worker, up to `seeds_per_worker`, that still
    makes at least `slots` packs (workers, or CPUs of a Ray cluster), and that number. A pack
    trains its seeds some 10-25 % faster per core than one seed per worker, while a worker left
    idle loses all of its core, so a grid with fewer cells than workers is packed smaller (down
    to one seed per worker) rather than leave workers idle."""
    for size in range(seeds_per_worker, 1, -1):
        packs = pack_runs(runs, size)
        if len(packs) >= slots:
            return packs, size
    return pack_runs(runs, 1), 1


def unpacked_notes(runs: list[ResolvedRun], seeds_per_worker: int) -> list[str]:
    """One note per algorithm whose runs train one seed per worker although packing is on."""
    if seeds_per_worker <= 1:
        return []
    notes: dict[str, str] = {}
    for run in runs:
        reason = lockstep_unsupported_reason(run.algorithm_cls)
        if reason and run.spec.algorithm not in notes:
            notes[run.spec.algorithm] = f"{run.spec.algorithm} runs one seed per worker ({reason})"
    return list(notes.values())
