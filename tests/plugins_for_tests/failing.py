"""VPG variants that fail on their second update, each in a different way the suite runner
must record without stopping the grid. They fail on the second update, not the first, so the
run has logged a row of progress before it fails."""

from __future__ import annotations

import os
import signal

from trbench.algos.vpg import VPG

FAILING_UPDATE = 2


class _FailsLater(VPG):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates = 0

    def update_policy(self, batch):
        self.updates += 1
        if self.updates >= FAILING_UPDATE:
            return self.fail()
        return super().update_policy(batch)

    def fail(self):
        raise NotImplementedError


class RaisingVPG(_FailsLater):
    def fail(self):
        raise RuntimeError("deliberate failure in update_policy")


class DivergingVPG(_FailsLater):
    def fail(self):
        return {"policy_loss": float("nan")}


class SelfKillingVPG(_FailsLater):
    """Stands for a worker lost to the out-of-memory killer or a segfault."""

    def fail(self):
        os.kill(os.getpid(), signal.SIGKILL)
