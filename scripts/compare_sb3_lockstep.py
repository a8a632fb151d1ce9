"""The same 4-seed TRPO work on one core: trbench with the seeds in lockstep against sb3-contrib's
TRPO trained seed after seed, and trbench seed after seed for reference.

Both sides run sb3-contrib's defaults (1 env, 2048 steps per update, 10 critic epochs of minibatch
128, learning rate 1e-3, target KL 0.01, CG damping 0.1, line search shrink 0.8 over 10 steps, GAE
0.95, 64x64 tanh networks, no observation or reward normalisation) with 15 CG iterations. trbench
also runs its final evaluation (10 episodes per seed, which sb3-contrib does not), so its times are
an upper bound. One torch thread throughout, as a suite worker runs.

    python scripts/compare_sb3_lockstep.py [--env Hopper-v5] [--seeds 4] [--steps 20480]

Needs the sb3 extra (pip install 'trbench[sb3]'). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from trbench.algos.lockstep_trainer import LockstepTrainer
from trbench.algos.trainer import Trainer
from trbench.algos.trpo import TRPO
from trbench.base.errors import UsageError

# sb3-contrib TRPO's defaults, as trbench settings (sb3_contrib/trpo/trpo.py)
SB3_DEFAULTS_AS_TRBENCH = {
    "num_envs": 1,
    "steps_per_iteration": 2048,
    "critic_epochs": 10,
    "critic_minibatch_size": 128,
    "critic_lr": 1e-3,
    "max_kl": 0.01,
    "damping": 0.1,
    "cg_iters": 15,
    "backtrack_coeff": 0.8,
    "backtrack_iters": 10,
    "kl_accept_factor": 1.0,
    "gae_lambda": 0.95,
    "gamma": 0.99,
    "normalize_obs": False,
    "normalize_reward": False,
    "eval_interval_steps": 0,
}


def time_sb3(env_id: str, seeds: int, steps: int) -> float:
    try:
        from sb3_contrib import TRPO as SB3TRPO
    except ImportError:
        raise UsageError("sb3-contrib is not installed; install the extra: pip install 'trbench[sb3]'") from None
    started = time.perf_counter()
    for seed in range(seeds):
        model = SB3TRPO("MlpPolicy", env_id, cg_max_steps=15, seed=seed, device="cpu", verbose=0)
        model.learn(total_timesteps=steps)
        model.env.close()
    return time.perf_counter() - started


def time_trbench(env_id: str, seeds: int, steps: int, lockstep: bool) -> float:
    config = TRPO.Config.from_overrides(SB3_DEFAULTS_AS_TRBENCH)
    trainers = [Trainer(TRPO, config, env_id, steps, seed) for seed in range(seeds)]
    started = time.perf_counter()
    try:
        if lockstep:
            outcomes = LockstepTrainer(trainers).run(lambda k, record: None)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            if failed:
                raise failed[0]
        else:
            for trainer in trainers:
                trainer.run()
    finally:
        for trainer in trainers:
            trainer.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20_480, help="steps per seed (default 20480, 10 updates)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sb3 = time_sb3(args.env, args.seeds, args.steps)
    alone = time_trbench(args.env, args.seeds, args.steps, lockstep=False)
    packed = time_trbench(args.env, args.seeds, args.steps, lockstep=True)
    work = args.seeds * args.steps
    print(f"{args.seeds} seeds x {args.steps:,} steps of TRPO on {args.env}, one core, sb3-contrib defaults\n")
    print("| what | seconds | steps/s | speed-up over sb3-contrib |")
    print("|---|---:|---:|---:|")
    for name, seconds in (
        ("sb3-contrib, seed after seed", sb3),
        ("trbench, seed after seed", alone),
        (f"trbench, {args.seeds} seeds in lockstep", packed),
    ):
        print(f"| {name} | {seconds:.1f} | {work / seconds:,.0f} | {sb3 / seconds:.2f}x |")


if __name__ == "__main__":
    main()
