"""TRPO that halts mid-run until a file appears, alone and in lockstep packs.

The fault tests kill a worker while its run trains. With a run of ordinary TRPO, whether the kill
lands mid-run depends on how fast the machine trains the iterations left after the test saw a
checkpoint; a fast machine finishes first and nothing is retried. This variant waits before every
update from `gate_at_progress` of its budget on, for as long as `gate_file` is missing, so the run
is still training when the test kills it on a machine of any speed; the test then creates the file
and the resubmitted run trains through. The numbers are TRPO's: waiting changes nothing in them,
so a gated run compares bit for bit with the same run trained alone once the file exists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from trbench.algos.config import TRPOConfig, setting
from trbench.algos.rollout import Batch
from trbench.algos.trpo import TRPO, LockstepTRPO

GATE_POLL_S = 0.02


@dataclass(frozen=True)
class GatedTRPOConfig(TRPOConfig):
    gate_file: str = setting("", "updates from gate_at_progress on wait while this file is missing ('' = never)")
    gate_at_progress: float = setting(0.5, "fraction of the budget after which updates wait for gate_file", ge=0, le=1)


def wait_for_gate(config: GatedTRPOConfig, progress: float) -> None:
    if not config.gate_file or progress < config.gate_at_progress:
        return
    gate = Path(config.gate_file)
    while not gate.exists():
        time.sleep(GATE_POLL_S)


class GatedTRPO(TRPO):
    Config = GatedTRPOConfig
    config: GatedTRPOConfig

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        wait_for_gate(self.config, progress)
        return super().update(batch, progress)


class LockstepGatedTRPO(LockstepTRPO):
    Config = GatedTRPOConfig
    config: GatedTRPOConfig

    def update(self, batch: Batch, progress: float) -> list[dict[str, float]]:
        wait_for_gate(self.config, progress)
        return super().update(batch, progress)


GatedTRPO.lockstep = LockstepGatedTRPO
