"""The study: its sampler and pruner, created or loaded from its storage."""

from __future__ import annotations

import warnings

import optuna

from trbench.base.errors import UsageError

from .settings import TuneSettings
from .storage import open_storage

# the study user attribute holding TuneSettings.identity(), which a resumed study must match
STUDY_ATTR = "trbench_tune"
# Hyperband's successive-halving rate: Optuna's default, keeps a third of the trials per rung.
HYPERBAND_REDUCTION_FACTOR = 3


def make_sampler(settings: TuneSettings, worker_index: int, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """Optuna 5's TPE is multivariate with the constant liar by default, which is what parallel
    workers need (running trials count as bad guesses, so workers do not pile onto one point)."""
    seed = None
    if settings.sampler_seed is not None:
        # distinct per worker, and per session, so a resumed study does not replay its first points
        seed = (settings.sampler_seed * 1_000_003 + worker_index * 7919 + trials_so_far) % (2**32)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.sampler_startup_trials)


def make_pruner(settings: TuneSettings, stride: int) -> optuna.pruners.BasePruner:
    """`stride` is the environment steps of one run, the unit of the steps a trial reports at."""
    warmup = stride if settings.pruner_warmup_steps is None else settings.pruner_warmup_steps
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=stride,
            max_resource=stride * settings.seeds * len(settings.envs),
            reduction_factor=HYPERBAND_REDUCTION_FACTOR,
        )
    median = optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials, n_warmup_steps=warmup)
    if settings.pruner == "median":
        return median
    return optuna.pruners.PatientPruner(median, patience=settings.patience)


def load_study(settings: TuneSettings, *, worker_index: int = 0, create: bool = False) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats, PatientPruner and the matplotlib plots are marked experimental; we pin optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = open_storage(settings.storage, settings.heartbeat_interval_s, settings.heartbeat_grace_s)
    stride = settings.first_run().steps_taken
    if create:
        study = optuna.create_study(
            storage=storage, study_name=settings.study_name, direction="maximize", load_if_exists=True
        )
        recorded = study.user_attrs.get(STUDY_ATTR)
        if recorded is None:
            study.set_user_attr(STUDY_ATTR, settings.identity())
        elif recorded != settings.identity():
            differ = [k for k in settings.identity() if recorded.get(k) != settings.identity()[k]]
            raise UsageError(
                f"--study-name: study {settings.study_name!r} in {settings.storage} was created with "
                f"different settings ({', '.join(differ)}: {[recorded.get(k) for k in differ]}); "
                f"resume it with the same command, or choose another --study-name or --out"
            )
    trials_so_far = len(optuna.load_study(study_name=settings.study_name, storage=storage).trials)
    return optuna.load_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(settings, worker_index, trials_so_far),
        pruner=make_pruner(settings, stride),
    )
