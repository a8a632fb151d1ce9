"""Typed, documented configuration shared by every algorithm.

Each numerically important constant is a dataclass field declared with :func:`setting`, which
records what it means, which published configuration its default follows, and which values are
allowed. The same metadata drives validation, the `--set key=value` parser and the docs, so a
constant can never hide in the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trbench.base.errors import UsageError

from .settings import ConfigBase, setting

__all__ = [
    "ACTING_BACKENDS",
    "ENV_BACKENDS",
    "LINESEARCH_MODES",
    "RADIUS_MEASURES",
    "ConfigBase",
    "MinibatchPolicyConfig",
    "NPGConfig",
    "NaturalGradientConfig",
    "OnPolicyConfig",
    "PPOConfig",
    "TRPOConfig",
    "TrustRegionRadius",
    "VPGConfig",
    "setting",
]

# the choices of the settings that pick an implementation: what steps the training envs
# (rollout.make_vector_env), what computes the rollout's actions (acting.RolloutActor), how TRPO's
# line search runs; the commands offer these same tuples
ENV_BACKENDS = ("gymnasium", "envpool")
ACTING_BACKENDS = ("torch", "numpy")
LINESEARCH_MODES = ("sequential", "batched")


# what a trust-region radius bounds: the KL in TRPO's direction (old policy first), the reverse
# KL (new first), or another quantity (a ratio, a Wasserstein distance)
RADIUS_MEASURES = ("kl_old_new", "kl_new_old", "other")


@dataclass(frozen=True)
class TrustRegionRadius:
    """Which setting of a method plays the role of TRPO's delta, and what it bounds. Written into
    each run's config.json (:meth:`OnPolicyConfig.trust_region_record`), so a report can ask
    whether the region was kept and how the result depends on its size."""

    setting: str  # the config field
    measure: str  # one of RADIUS_MEASURES
    scope: str  # "mean": a batch average is bounded; "per_state": every state (or sample) is

    def __post_init__(self) -> None:
        if self.measure not in RADIUS_MEASURES or self.scope not in ("mean", "per_state"):
            raise ValueError(f"bad trust-region radius description {self}")


@dataclass(frozen=True)
class OnPolicyConfig(ConfigBase):
    """Everything the on-policy algorithms share: networks, rollouts, GAE, normalisation, critic,
    evaluation. Sharing these is what makes a comparison measure the update rule alone."""

    # what plays delta in this method; None for a method with no radius (VPG)
    radius: ClassVar[TrustRegionRadius | None] = None

    # --- rollouts -----------------------------------------------------------------------------
    num_envs: int = setting(
        8,
        "parallel environments in the training vector env",
        source="trbench choice (Tianshou uses 16 vector envs); 8 keeps a 2-core machine busy",
        ge=1,
    )
    env_backend: str = setting(
        "gymnasium",
        "what steps the envs: gymnasium's SyncVectorEnv, or envpool's C++ ports of the MuJoCo tasks "
        "(optional extra; different dynamics code and MuJoCo build, so results are not interchangeable)",
        source="trbench; envpool (Weng et al. 2022) as in Tianshou and CleanRL",
        choices=ENV_BACKENDS,
    )
    acting_backend: str = setting(
        "torch",
        "what computes the rollout's actions, on the CPU: the policy network in torch, or its weights "
        "in numpy float32 (a third of torch's per-step cost at a few envs, but other rounding of the mean "
        "action, so the same seed gives a different trajectory; updates and evaluation stay in torch)",
        source="trbench",
        choices=ACTING_BACKENDS,
    )
    steps_per_iteration: int = setting(
        2048,
        "environment steps (all envs together) collected per policy update",
        source="sb3-contrib TRPO n_steps=2048",
        ge=1,
    )
    gamma: float = setting(
        0.99,
        "discount factor",
        source="Schulman et al. 2015; OpenAI Baselines trpo_mpi, Spinning Up, sb3-contrib, Tianshou",
        gt=0,
        le=1,
    )
    gae_lambda: float = setting(0.95, "GAE lambda", source="sb3-contrib, Tianshou (Spinning Up: 0.97)", ge=0, le=1)
    normalize_advantages: bool = setting(
        True, "standardise advantages to zero mean, unit std per batch", source="sb3-contrib, Tianshou"
    )
    advantage_norm_eps: float = setting(
        1e-8,
        "added to the advantages' standard deviation when they are standardised (per batch; PPO: per "
        "minibatch), so that a batch of equal advantages does not divide by zero",
        source="sb3-contrib TRPO, SB3 PPO, OpenAI Baselines ppo2, CleanRL: std + 1e-8",
        gt=0,
    )
    bootstrap_truncated: bool = setting(
        True,
        "bootstrap an episode cut by the time limit with V(its last observation); false treats the "
        "cut as a terminal state (value 0), which biases value targets near the limit",
        source="on: Pardo et al. 2018 (Time Limits in RL), sb3, Tianshou, Spinning Up; "
        "off: OpenAI Baselines trpo_mpi (gym's TimeLimit done is an ordinary episode end)",
    )
    # --- normalisation --------------------------------------------------------------------------
    normalize_obs: bool = setting(
        True,
        "running mean/std observation normalisation (frozen during evaluation)",
        source="OpenAI Baselines trpo_mpi, Tianshou, RL Zoo",
    )
    obs_clip: float = setting(
        10.0, "clip normalised observations to [-obs_clip, obs_clip]", source="Baselines VecNormalize", gt=0
    )
    normalize_reward: bool = setting(
        False,
        "scale rewards by the running std of the discounted return (training only)",
        source="off in Baselines trpo_mpi; on in RL Zoo (VecNormalize) and Engstrom et al. 2020 PPO",
    )
    reward_clip: float = setting(
        10.0, "clip scaled rewards to [-reward_clip, reward_clip]", source="Baselines VecNormalize", gt=0
    )
    normalizer_epsilon: float = setting(
        1e-8,
        "added to the running variance before the square root, in the observation normaliser and the "
        "reward scaler (it guards constant observation dimensions)",
        source="Baselines and SB3 VecNormalize (epsilon=1e-8)",
        gt=0,
    )
    normalizer_initial_count: float = setting(
        1e-4,
        "pseudo-count of the running statistics' initial mean 0 and variance 1, so that the first "
        "update is well defined without weighing on later ones",
        source="Baselines and SB3 RunningMeanStd (epsilon=1e-4)",
        gt=0,
    )
    # --- networks ---------------------------------------------------------------------------------
    policy_hidden: tuple[int, ...] = setting(
        (64, 64), "hidden layer sizes of the policy MLP", source="sb3-contrib, Tianshou, Baselines (64-64 tanh)", ge=1
    )
    value_hidden: tuple[int, ...] = setting(
        (64, 64), "hidden layer sizes of the value MLP", source="sb3-contrib, Tianshou", ge=1
    )
    activation: str = setting(
        "tanh",
        "hidden activation",
        source="OpenAI Baselines trpo_mpi, Spinning Up, sb3-contrib, Tianshou",
        choices=("tanh", "relu", "elu"),
    )
    init: str = setting(
        "orthogonal",
        "weight initialisation: orthogonal with gains sqrt(2) hidden / policy_output_gain / 1 value, or PyTorch's default",
        source="Tianshou, SB3 (orthogonal); Engstrom et al. 2020 list it as a code-level optimisation",
        choices=("orthogonal", "default"),
    )
    policy_output_gain: float = setting(
        0.01, "orthogonal gain of the policy mean's output layer", source="Tianshou, SB3", gt=0
    )
    log_std_init: float = setting(
        0.0, "initial state-independent log standard deviation", source="SB3 (Spinning Up, Tianshou: -0.5)"
    )
    # --- critic -----------------------------------------------------------------------------------
    critic_lr: float = setting(
        1e-3, "Adam learning rate of the value network", source="sb3-contrib, Spinning Up, Tianshou", gt=0
    )
    critic_epochs: int = setting(
        10, "passes over the batch per critic update", source="sb3-contrib n_critic_updates=10", ge=1
    )
    critic_minibatch_size: int = setting(
        128, "critic minibatch size (0 = full batch)", source="sb3-contrib batch_size=128", ge=0
    )
    value_clip: float = setting(
        0.0,
        "clip value predictions to within this distance of the old ones in the critic loss (0 = off)",
        source="PPO2 value clipping, a code-level optimisation in Engstrom et al. 2020",
        ge=0,
    )
    critic_max_grad_norm: float = setting(
        0.0,
        "clip the critic gradient's global norm (0 = off)",
        source="Engstrom et al. 2020 (gradient clipping switch)",
        ge=0,
    )
    anneal_lr: bool = setting(
        False,
        "anneal every learning rate linearly to 0 over the run",
        source="PPO2 / Engstrom et al. 2020 code-level optimisation",
    )
    # --- evaluation -------------------------------------------------------------------------------
    eval_interval_steps: int = setting(
        25_000,
        "evaluate the deterministic policy every this many environment steps (0 = only at the end)",
        source="trbench choice; gives 40 points on a 1M-step curve for the auc metric",
        ge=0,
    )
    eval_episodes: int = setting(5, "episodes per periodic evaluation", source="trbench choice", ge=1)
    final_eval_episodes: int = setting(
        10, "episodes in the final evaluation (final_eval_return)", source="Tianshou: 10 test episodes", ge=10
    )
    # --- execution --------------------------------------------------------------------------------
    device: str = setting("cpu", "device of the update: cpu, cuda, cuda:N or auto")
    save_model: bool = setting(True, "save final networks and normalisation statistics to model.pt")
    checkpoint_interval_steps: int = setting(
        50_000,
        "save the whole training state every this many environment steps (0 = never), so that a run "
        "killed mid-way resumes from its last checkpoint bit for bit; rounded to whole iterations",
        source="trbench: a kill loses at most 5% of a 1M-step run; writing one costs well under 1% of the "
        "steps between two (trbench bench --checkpoint, docs/performance.md)",
        ge=0,
    )
    keep_checkpoint: bool = setting(
        False,
        "keep the last checkpoint after the run has finished (it is removed by default, so finished "
        "results stay compact)",
    )
    tensorboard: bool = setting(
        False,
        "also write each progress.csv row, and the resolved config as text, to TensorBoard event files in "
        "the run folder, to watch runs live (needs the tensorboard extra; off costs nothing)",
        source="trbench; the peers' habit (SB3, CleanRL, Tianshou log to TensorBoard)",
    )

    def nominal_kl(self) -> float | None:
        """The KL (in the radius's own direction) the method nominally keeps; None when its
        radius is not a KL. Methods with several bounds that add up to a KL override it."""
        radius = self.radius
        if radius is None or radius.measure == "other":
            return None
        return float(getattr(self, radius.setting))

    def trust_region_record(self) -> dict[str, Any] | None:
        """The radius as config.json records it: the setting, this run's value and the
        default, what it bounds, and the KL it nominally keeps."""
        radius = self.radius
        if radius is None:
            return None
        return {
            "setting": radius.setting,
            "radius": getattr(self, radius.setting),
            "default": getattr(type(self)(), radius.setting),
            "measure": radius.measure,
            "scope": radius.scope,
            "kl_radius": self.nominal_kl(),
        }

    def check(self) -> None:
        if self.steps_per_iteration % self.num_envs:
            raise UsageError(
                f"steps_per_iteration: must be a multiple of num_envs={self.num_envs}, got {self.steps_per_iteration}"
            )
        if self.critic_minibatch_size > self.steps_per_iteration:
            raise UsageError(
                f"critic_minibatch_size: must be <= steps_per_iteration={self.steps_per_iteration} (0 = full batch), "
                f"got {self.critic_minibatch_size}"
            )
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            raise UsageError(f"device: must be one of cpu, cuda, cuda:N, auto, got {self.device!r}")


@dataclass(frozen=True)
class NaturalGradientConfig(OnPolicyConfig):
    """The trust-region numerics shared by TRPO and NPG."""

    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("max_kl", "kl_old_new", "mean")

    max_kl: float = setting(
        0.01,
        "trust-region radius delta on the mean KL(old || new)",
        source="Schulman et al. 2015; OpenAI Baselines trpo_mpi, Spinning Up, sb3-contrib, Tianshou",
        gt=0,
    )
    damping: float = setting(
        0.1,
        "added to the Fisher matrix (F + damping*I) in conjugate gradient",
        source="Spinning Up, sb3-contrib, Tianshou, Baselines (rllab/garage: 1e-5)",
        ge=0,
    )
    cg_iters: int = setting(
        10,
        "conjugate-gradient iterations (fixed count, masked early stop)",
        source="Schulman et al. 2015 App. C.1; Spinning Up, Tianshou",
        ge=1,
    )
    cg_tol: float = setting(
        1e-10, "stop CG once the squared residual is below this", source="Spinning Up / Baselines residual_tol", ge=0
    )
    fvp_subsample: float = setting(
        1.0,
        "fraction of the batch used for Fisher-vector products",
        source="1.0 in Spinning Up / sb3-contrib; Schulman et al. 2015 App. C.1 used 0.1",
        gt=0,
        le=1,
    )
    fvp_subsample_mode: str = setting(
        "random",
        "how fvp_subsample < 1 picks states: a fresh random subset each update, or every "
        "round(1/fvp_subsample)-th state of the batch",
        source="strided: OpenAI Baselines trpo_mpi (arr[::5]); random: Engstrom et al. 2020 code",
        choices=("random", "strided"),
    )


@dataclass(frozen=True)
class TRPOConfig(NaturalGradientConfig):
    backtrack_coeff: float = setting(
        0.8, "line-search shrink factor per backtrack", source="Spinning Up, sb3-contrib, Tianshou", gt=0, lt=1
    )
    backtrack_iters: int = setting(
        10, "maximum line-search candidates", source="Spinning Up, sb3-contrib, Tianshou (rllab: 15)", ge=1
    )
    kl_accept_factor: float = setting(
        1.0,
        "accept a line-search candidate only if its mean KL <= kl_accept_factor * max_kl",
        source="Spinning Up, sb3-contrib, Tianshou: 1.0; OpenAI Baselines trpo_mpi: 1.5",
        ge=1.0,
    )
    accept_ratio: float = setting(
        0.0,
        "accept a candidate only if its surrogate improvement exceeds this fraction of the linearly expected one (0 = any improvement)",
        source="modular_rl used 0.1; Spinning Up and sb3-contrib accept any improvement",
        ge=0,
        lt=1,
    )
    linesearch_mode: str = setting(
        "sequential",
        "how the line search runs (same accepted step either way): sequential reads each candidate's KL and "
        "surrogate back and stops at the first acceptable one; batched evaluates all backtrack_iters candidates "
        "on the device and picks with tensor ops, with no host synchronisation inside the search",
        source="trbench choice by measurement: on the CPU sequential is faster, since most updates accept the "
        "first candidate (docs/performance.md)",
        choices=LINESEARCH_MODES,
    )


@dataclass(frozen=True)
class NPGConfig(NaturalGradientConfig):
    """NPG takes the natural step rescaled to the KL radius, with no line search."""


@dataclass(frozen=True)
class VPGConfig(OnPolicyConfig):
    policy_lr: float = setting(3e-4, "Adam learning rate of the policy", source="Spinning Up VPG pi_lr", gt=0)
    policy_max_grad_norm: float = setting(0.0, "clip the policy gradient's global norm (0 = off)", ge=0)


@dataclass(frozen=True)
class MinibatchPolicyConfig(OnPolicyConfig):
    """The policy optimiser of the methods that maximise a surrogate of the importance ratio by
    Adam over epochs of shuffled minibatches (PPO and its family: algos/minibatch_policy.py)."""

    policy_lr: float = setting(3e-4, "Adam learning rate of the policy", source="SB3 / CleanRL PPO", gt=0)
    policy_adam_eps: float = setting(
        1e-5,
        "epsilon in the denominator of the policy's Adam step (PyTorch's default is 1e-8)",
        source="OpenAI Baselines ppo2 (AdamOptimizer epsilon=1e-5), CleanRL ppo_continuous_action (eps=1e-5), "
        "SB3 ActorCriticPolicy (Adam eps=1e-5)",
        gt=0,
    )
    epochs: int = setting(10, "passes over the batch per update", source="Schulman et al. 2017 (MuJoCo), SB3", ge=1)
    minibatch_size: int = setting(64, "policy minibatch size", source="Schulman et al. 2017 (MuJoCo), SB3", ge=1)
    target_kl: float = setting(
        0.0, "stop the epochs once the approximate KL exceeds this (0 = off)", source="SB3 / CleanRL option", ge=0
    )
    entropy_coef: float = setting(0.0, "entropy bonus coefficient", source="Schulman et al. 2017 (MuJoCo: 0)", ge=0)
    policy_max_grad_norm: float = setting(
        0.5, "clip the policy gradient's global norm (0 = off)", source="SB3 / CleanRL PPO", ge=0
    )

    def check(self) -> None:
        super().check()
        if self.minibatch_size > self.steps_per_iteration:
            raise UsageError(
                f"minibatch_size: must be <= steps_per_iteration={self.steps_per_iteration}, got {self.minibatch_size}"
            )


@dataclass(frozen=True)
class PPOConfig(MinibatchPolicyConfig):
    # the clip bounds each sample's ratio, not a KL (Schulman et al. 2017, eq. 7)
    radius: ClassVar[TrustRegionRadius | None] = TrustRegionRadius("clip_range", "other", "per_state")

    clip_range: float = setting(0.2, "clip parameter epsilon of the ratio", source="Schulman et al. 2017", gt=0)
