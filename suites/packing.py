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

# Measured on a 2-core machine (docs/performance.md): 4 seeds per worker brings TRPO and PPO on the
# MuJoCo tasks to most of the gain 8 gives, and a 5-seed cell still packs into two workers
DEFAULT_SEEDS_PER_WORKER = 4


def cell_key(run: ResolvedRun) -> str:
    """What runs must share to train in one pack: everything but the seed."""
    spec = run.spec
    return json.dumps([spec.arm, spec.algorithm, spec.env_id, spec.steps, sorted(spec.overrides.items())], default=repr)


def pack_runs(runs: list[ResolvedRun], seeds_per_worker: int) -> list[list[ResolvedRun]]:
    """`runs` in packs of at most `seeds_per_worker` runs of one cell, in the order their first
    runs come; a run whose algorithm has no lockstep update is a pack of its own."""
    packs: list[list[ResolvedRun]] = []
    open_packs: dict[str, list[ResolvedRun]] = {}
    for run in runs:
        if seeds_per_worker <= 1 or lockstep_unsupported_reason(run.algorithm_cls):
            packs.append([run])
            continue
        key = cell_key(run)
        pack = open_packs.get(key)
        if pack is None:
            pack = open_packs[key] = []
            packs.append(pack)
        pack.append(run)
        if len(pack) >= seeds_per_worker:
            del open_packs[key]
    return packs


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
