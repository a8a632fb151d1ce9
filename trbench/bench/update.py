"""The TRPO update phase by phase, timed inside TRPO's own update by its phase hook.

:func:`trpo_update_phases` installs a recorder (algos/timing.py) on the algorithm and runs the
real ``update``, once per line-search mode from the same state, so the phases measured are the
ones a run executes, Fisher-vector products on the ``fvp_subsample`` states included.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from trbench.algos.config import LINESEARCH_MODES
from trbench.algos.rollout import Batch, to_batch
from trbench.algos.timing import recording_phases
from trbench.algos.trainer import Trainer, resolve_device
from trbench.algos.trpo import TRPO

from .settings import BenchReport, BenchSettings, Row, median

# the table's phases, in its order; "linesearch" is one row per mode
SPLIT_PHASES = ("gradient_and_kl_graph", "fvp", "cg_algebra", "linesearch", "critic", "update_total")


def _learning_state(algorithm: TRPO) -> dict[str, Any]:
    """What one update changes: the networks, the critic's Adam moments, the random stream."""
    return {
        "networks": copy.deepcopy(algorithm.state_dict()),
        "critic_optimizer": copy.deepcopy(algorithm.critic_optimizer.state_dict()),
        "generator": algorithm.generator.get_state(),
        "progress": algorithm.progress,
    }


def _restore(algorithm: TRPO, state: dict[str, Any]) -> None:
    algorithm.policy.load_state_dict(state["networks"]["policy"])
    algorithm.value_fn.load_state_dict(state["networks"]["value_fn"])
    algorithm.critic_optimizer.load_state_dict(state["critic_optimizer"])
    algorithm.generator.set_state(state["generator"])
    algorithm.progress = state["progress"]


def trpo_update_phases(algorithm: TRPO, batch: Batch) -> dict[str, float]:
    """Seconds per phase of TRPO's own update on `batch`; the algorithm is left as it was.

    The update runs once per line-search mode, each time from the same state; every phase besides
    the line search comes from the run in the algorithm's configured mode:

    - ``fvp``: the Fisher-vector products (``cg_iters`` in the solve and one for s^T F s);
    - ``cg_algebra``: the conjugate-gradient solve without its products;
    - ``linesearch_<mode>``: the backtracking line search, and ``_backtracks`` its rejections;
    - ``gradient_and_kl_graph``: the rest of the policy update: the surrogate and KL forward
      passes, the surrogate gradient, the KL gradient graph, the step's scaling;
    - ``critic``: the critic update; ``update_total``: the whole update, the KL and entropy
      diagnostics and their transfer included.
    """
    configured = algorithm.config
    before = _learning_state(algorithm)
    recorded: dict[str, tuple[dict[str, float], float, float]] = {}
    try:
        for mode in LINESEARCH_MODES:
            algorithm.config = configured.replace(linesearch_mode=mode)
            with recording_phases(algorithm) as recorder:
                with recorder("update"):
                    diagnostics = algorithm.update(batch, progress=before["progress"])
            _restore(algorithm, before)
            recorded[mode] = (recorder.seconds, recorder.total(), diagnostics["backtracks"])
    finally:
        algorithm.config = configured
    seconds, total, _ = recorded[configured.linesearch_mode]
    phases = {"gradient_and_kl_graph": seconds["policy"], "fvp": seconds["fvp"], "cg_algebra": seconds["cg"]}
    for mode, (mode_seconds, _, backtracks) in recorded.items():
        # a skipped update (s^T F s not positive) runs no line search
        phases[f"linesearch_{mode}"] = mode_seconds.get("linesearch", 0.0)
        phases[f"linesearch_{mode}_backtracks"] = backtracks
    return phases | {"critic": seconds["critic"], "update_total": total}


def _split_rows(section: str, env: str, per_repeat: list[dict[str, float]], mode: str, note: str) -> list[Row]:
    rows = []
    totals = [p["update_total"] for p in per_repeat]
    for phase in SPLIT_PHASES:
        key = f"linesearch_{mode}" if phase == "linesearch" else phase
        values = [p[key] for p in per_repeat]
        shares = [v / t for v, t in zip(values, totals)]
        label = f"linesearch ({mode})" if phase == "linesearch" else phase
        extra = ""
        if phase == "linesearch":
            extra = f"median backtracks {median([p[f'linesearch_{mode}_backtracks'] for p in per_repeat]):g}"
        rows.append(
            Row(
                section,
                env,
                label,
                median(values),
                "s",
                median(shares),
                min(shares),
                max(shares),
                len(values),
                "; ".join(x for x in (note if phase == "update_total" else "", extra) if x),
            )
        )
    return rows


def _add_split(report: BenchReport, section: str, env: str, per_repeat: list[dict[str, float]], note: str) -> None:
    """Every phase once, and the line search once per mode."""
    for mode in LINESEARCH_MODES:
        for row in _split_rows(section, env, per_repeat, mode, note):
            if mode == LINESEARCH_MODES[0] or row.measure.startswith("linesearch"):
                report.add(row)


def measure_trpo_split(
    env_id: str, trainer: Trainer, settings: BenchSettings, report: BenchReport, device: str
) -> None:
    """The TRPO update split, on batches the trainer's own collector gathers from the env."""
    algorithm, collector = trainer.algorithm, trainer.collector
    assert isinstance(algorithm, TRPO) and collector is not None  # the throughput rounds started it
    cfg = algorithm.config
    actor = algorithm.policy if algorithm.device.type == "cpu" else copy.deepcopy(algorithm.policy).cpu()
    per_repeat = []
    for _ in range(settings.repeats):
        arrays, _ = collector.collect(
            actor,
            algorithm.value_fn,
            cfg.steps_per_iteration // cfg.num_envs,
            cfg.gamma,
            cfg.gae_lambda,
            algorithm.device,
            cfg.bootstrap_truncated,
            cfg.acting_backend,
        )
        batch = to_batch(arrays, algorithm.device, torch.float32)
        per_repeat.append(trpo_update_phases(algorithm, batch))
    report.samples[f"trpo_update/{env_id}"] = per_repeat
    note = f"batch {cfg.steps_per_iteration}, {device}, ratio = share of the update"
    _add_split(report, "trpo_update", env_id, per_repeat, note)


def synthetic_trpo(batch_size: int, settings: BenchSettings, device: torch.device, obs_dim: int = 11, act_dim: int = 3):
    """A TRPO instance and a batch shaped like a Hopper rollout, for timing the update alone."""
    config = TRPO.Config.from_overrides(
        {
            "policy_hidden": settings.hidden,
            "value_hidden": settings.hidden,
            "steps_per_iteration": batch_size,
            "num_envs": 1,
            "device": "cuda" if device.type == "cuda" else "cpu",
        }
    )
    generator = torch.Generator().manual_seed(settings.seed)
    algorithm = TRPO(config, obs_dim, act_dim, device, generator)
    obs = torch.randn(batch_size, obs_dim, generator=generator).to(device)
    with torch.no_grad():
        mean, log_std = algorithm.policy(obs)
        actions = mean + torch.randn(mean.shape, generator=generator).to(device) * log_std.exp()
        log_probs = algorithm.policy.log_prob(obs, actions)
    values = torch.randn(batch_size, generator=generator).to(device)
    advantages = torch.randn(batch_size, generator=generator).to(device)
    batch = Batch(
        obs=obs, actions=actions, log_probs=log_probs, advantages=advantages, returns=values + advantages, values=values
    )
    return algorithm, batch


def measure_update_devices(settings: BenchSettings, report: BenchReport) -> None:
    """The TRPO update at `update_batch` states on the CPU and on the requested device."""
    devices = [torch.device("cpu")]
    target = resolve_device(settings.device)
    if target.type != "cpu":
        devices.append(target)
    hidden = "x".join(str(h) for h in settings.hidden)
    results: dict[str, list[dict[str, float]]] = {}
    for device in devices:
        algorithm, batch = synthetic_trpo(settings.update_batch, settings, device)
        trpo_update_phases(algorithm, batch)  # warm-up (allocator, kernels)
        results[str(device)] = [trpo_update_phases(algorithm, batch) for _ in range(settings.repeats)]
    report.samples["update"] = results
    cpu_total = median([p["update_total"] for p in results["cpu"]])
    for name, per_repeat in results.items():
        note = f"batch {settings.update_batch}, {hidden}, synthetic data"
        _add_split(report, "update", name, per_repeat, note)
        if name != "cpu":
            total = median([p["update_total"] for p in per_repeat])
            report.add(
                Row(
                    "update",
                    name,
                    "speed-up of the update over the CPU",
                    cpu_total / total,
                    "x",
                    repeats=len(per_repeat),
                    note=note,
                )
            )
