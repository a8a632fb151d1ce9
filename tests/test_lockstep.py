"""Lockstep seeds: S runs of one cell trained as one batched computation give, on the CPU, the
same bits as each run trained alone (progress rows, result, final parameters), for every
registered algorithm; a member that diverges or fails ends alone; an interrupted pack resumes;
algorithms without a lockstep update run alone."""

import json

import gymnasium as gym
import pytest
import torch
from run_comparison import assert_same_run, progress_rows, result_record
from torch import nn

from trbench.algos.config import PPOConfig
from trbench.algos.lockstep import lockstep_class, lockstep_unsupported_reason
from trbench.algos.networks import GaussianPolicy, ValueNetwork, gaussian_kl
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.algos.rollout import Batch
from trbench.algos.stacked import (
    MemberAdam,
    StackedGaussianPolicy,
    StackedValueNetwork,
    clip_member_grad_norms,
    member_dot,
)
from trbench.algos.trainer import derive_seeds
from trbench.algos.trpo import TRPO
from trbench.algos.trust_region import FisherVectorProduct, flat_gradient
from trbench.cli import main
from trbench.suites.execute import execute_run
from trbench.suites.execute_pack import execute_pack
from trbench.suites.packing import pack_runs, packs_for_slots
from trbench.suites.run_spec import RunSpec, resolve

SMALL = {
    "steps_per_iteration": 256,
    "num_envs": 2,
    "critic_minibatch_size": 64,
    "eval_interval_steps": 512,
    "eval_episodes": 2,
    "final_eval_episodes": 10,
}
# settings under which every algorithm's own branches run (clipping, early stops, subsamples)
# registered algorithms without a lockstep twin (none now): packed seeds would still train side by
# side, each member's update run on its own (the trainer's fallback), and the pack test below would
# hold them to the same bits as alone
PER_MEMBER_UPDATES: set[str] = set()
EXTRA = {
    "trpo": [{}, {"linesearch_mode": "batched", "fvp_subsample": 0.2, "anneal_lr": True}],
    "npg": [{"fvp_subsample": 0.3, "fvp_subsample_mode": "strided", "activation": "relu"}],
    "ppo": [
        {"minibatch_size": 64},
        {"target_kl": 0.004, "policy_max_grad_norm": 0.5, "critic_max_grad_norm": 0.5, "value_clip": 0.2},
    ],
    "vpg": [{"policy_max_grad_norm": 0.5, "anneal_lr": True, "activation": "elu", "init": "default"}],
    # beta moves every update at this small d_targ, and each member keeps its own
    "ppo_kl": [{"minibatch_size": 64, "kl_target": 0.0005}],
    "spo": [{"minibatch_size": 64, "target_kl": 0.004}],
    "truly_ppo": [{"minibatch_size": 64, "kl_trigger": 0.001}],
    # the K-FAC step member by member, the critic stacked: eta_max adapted every update at this
    # small desired_kl, eigenbases kept for a second update (the default), then refreshed every
    # update with momentum's velocity and the first batch's statistics weighed as Baselines does
    "acktr": [
        {"desired_kl": 0.0005, "anneal_lr": True},
        {"momentum": 0.9, "eigen_refresh_interval": 1, "stats_warm_start": False, "critic_max_grad_norm": 0.5},
    ],
    # small bounds, so that both projections are active in most updates
    "trpl": [
        {"minibatch_size": 64, "mean_bound": 0.002, "cov_bound": 1e-5},
        {"projection": "w2", "mean_bound": 0.002, "cov_bound": 1e-6, "entropy_control": True},
        {"projection": "frobenius", "minibatch_size": 128, "cov_bound": 1e-6, "precision_scaling": False},
    ],
    "mdpo": [{"epochs": 5}, {"minibatch_size": 64, "anneal_step_size": False, "entropy_coef": 0.01}],
}


# --- the stacked numerics against the single network ------------------------------------------------


def _policies(members: int, obs_dim: int, act_dim: int) -> list[GaussianPolicy]:
    out = []
    for k in range(members):
        torch.manual_seed(k)
        out.append(GaussianPolicy(obs_dim, act_dim, (64, 64), "tanh", "orthogonal", 0.01, -0.3))
    return out


@pytest.mark.parametrize("act_dim", [1, 3])
@pytest.mark.parametrize("states", [1, 2, 102, 512])
def test_stacked_policy_gives_each_member_its_own_forward_gradient_and_fisher_products(act_dim, states):
    members = 3
    lone = _policies(members, 4, act_dim)
    stacked = StackedGaussianPolicy(lone)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(members, states, 4, generator=g)
    actions = torch.randn(members, states, act_dim, generator=g)
    advantages = torch.randn(members, states, generator=g)
    params = stacked.ordered_parameters()
    surrogate = (stacked.log_prob(obs, actions).exp() * advantages).mean(-1)
    gradient = flat_gradient(surrogate, params, True)
    with torch.no_grad():
        mean_old, log_std_old = stacked(obs)
    fvp = FisherVectorProduct(gaussian_kl(mean_old, log_std_old, *stacked(obs)).mean(-1), params, 0.1)
    vector = torch.randn(gradient.shape, generator=g)
    products = fvp(vector)
    for k, policy in enumerate(lone):
        own = list(policy.parameters())
        mean, log_std = policy(obs[k])
        assert torch.equal(mean, stacked(obs)[0][k]) and torch.equal(log_std, stacked(obs)[1][k])
        assert torch.equal(
            gradient[k], flat_gradient((policy.log_prob(obs[k], actions[k]).exp() * advantages[k]).mean(), own)
        )
        with torch.no_grad():
            old = policy(obs[k])
        alone = FisherVectorProduct(gaussian_kl(*old, *policy(obs[k])).mean(), own, 0.1)
        assert torch.equal(products[k], alone(vector[k]))


def test_stacked_value_network_and_its_gradients_match_each_member():
    members, states = 4, 130
    lone = []
    for k in range(members):
        torch.manual_seed(10 + k)
        lone.append(ValueNetwork(11, (64, 64), "tanh", "orthogonal"))
    stacked = StackedValueNetwork(lone)
    obs = torch.randn(members, states, 11, generator=torch.Generator().manual_seed(2))
    targets = torch.randn(members, states, generator=torch.Generator().manual_seed(3))
    ((stacked(obs) - targets).pow(2).mean(-1)).sum().backward()
    for k, net in enumerate(lone):
        assert torch.equal(net(obs[k]), stacked(obs)[k])
        (net(obs[k]) - targets[k]).pow(2).mean().backward()
        for own, stacked_param in zip(net.parameters(), stacked.ordered_parameters()):
            assert torch.equal(own.grad, stacked_param.grad[k])


def test_member_dot_is_torch_dot_of_each_row():
    a, b = torch.randn(5, 4610), torch.randn(5, 4610)
    dots = member_dot(a, b)
    assert all(torch.equal(dots[k], torch.dot(a[k].clone(), b[k].clone())) for k in range(5))


@pytest.mark.parametrize("foreach", [True, False])
def test_member_adam_is_torch_adam_per_member_with_its_own_step_count(foreach):
    shapes = [(64, 11), (64,), (3, 64), (3,), (1,)]
    members = 3
    g = torch.Generator().manual_seed(4)
    lone = [[torch.randn(s, generator=g).requires_grad_() for s in shapes] for _ in range(members)]
    stacked = [torch.stack([lone[k][i].detach() for k in range(members)]).requires_grad_() for i in range(len(shapes))]
    lone_adams = [torch.optim.Adam(p, lr=3e-3, eps=1e-5, foreach=foreach) for p in lone]
    adam = MemberAdam(stacked, lr=3e-3, eps=1e-5)
    # member 1 sits out steps 2 and 3 (an early stop), so the step counts drift apart
    schedule = [[True, True, True], [True, False, True], [True, False, True], [True, True, True]]
    for active in schedule:
        grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(members)]
        for k in range(members):
            if active[k]:
                for p, grad in zip(lone[k], grads[k]):
                    p.grad = grad.clone()
                lone_adams[k].step()
        for i, p in enumerate(stacked):
            p.grad = torch.stack([grads[k][i] for k in range(members)])
        adam.step(active)
    for k in range(members):
        for i in range(len(shapes)):
            assert torch.equal(stacked[i][k], lone[k][i])
    # and its state moves into each member's own Adam exactly
    fresh = [torch.optim.Adam(p, lr=3e-3, eps=1e-5) for p in lone]
    for k in range(members):
        adam.store_member(k, fresh[k], lone[k])
        for p in lone[k]:
            mine, theirs = fresh[k].state[p], lone_adams[k].state[p]
            assert float(mine["step"]) == float(theirs["step"])
            assert torch.equal(mine["exp_avg"], theirs["exp_avg"]) and torch.equal(
                mine["exp_avg_sq"], theirs["exp_avg_sq"]
            )


def test_member_gradient_clipping_is_clip_grad_norm_per_member():
    shapes = [(64, 11), (64,), (3,)]
    g = torch.Generator().manual_seed(5)
    grads = [[torch.randn(s, generator=g) * scale for s in shapes] for scale in (0.01, 3.0, 50.0)]
    stacked = [torch.zeros((3, *s), requires_grad=True) for s in shapes]
    for i, p in enumerate(stacked):
        p.grad = torch.stack([grads[k][i] for k in range(3)])
    clip_member_grad_norms(stacked, 0.5)
    for k in range(3):
        lone = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, grad in zip(lone, grads[k]):
            p.grad = grad.clone()
        torch.nn.utils.clip_grad_norm_(lone, 0.5)
        assert all(torch.equal(stacked[i].grad[k], lone[i].grad) for i in range(len(shapes)))


# --- whole runs: a pack against the same seeds alone -----------------------------------------------------


def test_every_registered_algorithm_has_a_lockstep_update_unless_listed_and_a_case_here():
    assert set(EXTRA) == set(BUILTIN)
    for name in BUILTIN:
        assert (lockstep_class(resolve_algorithm(name)) is None) == (name in PER_MEMBER_UPDATES), name


@pytest.mark.parametrize(
    "algo,overrides", [(algo, overrides) for algo, cases in EXTRA.items() for overrides in cases], ids=repr
)
def test_a_seed_trained_in_a_pack_is_bit_identical_to_the_seed_trained_alone(tmp_path, monkeypatch, algo, overrides):
    seeds = [3, 11, 7]
    runs = [resolve(RunSpec(algo, "InvertedPendulum-v5", 768, seed, {**SMALL, **overrides})) for seed in seeds]
    twin = lockstep_class(resolve_algorithm(algo))
    assert twin is not None
    stacked_updates = []
    twin_update = twin.update
    # the pack really trains in lockstep: the twin's update runs, not the per-member fallback
    monkeypatch.setattr(
        twin, "update", lambda self, *a, **k: stacked_updates.append(self.size) or twin_update(self, *a, **k)
    )
    ends = execute_pack(runs, [tmp_path / f"pack-{seed}" for seed in seeds])
    assert [end["status"] for end in ends] == ["complete"] * 3
    assert stacked_updates == [3] * 3  # 768 steps: three iterations of three members
    for run, seed in zip(runs, seeds):
        alone = execute_run(run, tmp_path / f"alone-{seed}")
        assert alone["status"] == "complete"
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"pack-{seed}")


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(BUILTIN))
def test_packed_seeds_are_bit_identical_on_a_mujoco_task_with_three_action_dimensions(tmp_path, algo):
    seeds = [0, 1]
    overrides = (
        {**SMALL, "steps_per_iteration": 512, "num_envs": 4, "fvp_subsample": 0.2}
        if algo in ("trpo", "npg")
        else {**SMALL, "steps_per_iteration": 512, "num_envs": 4}
    )
    runs = [resolve(RunSpec(algo, "Hopper-v5", 1024, seed, overrides)) for seed in seeds]
    ends = execute_pack(runs, [tmp_path / f"pack-{seed}" for seed in seeds])
    assert [end["status"] for end in ends] == ["complete"] * 2
    for run, seed in zip(runs, seeds):
        execute_run(run, tmp_path / f"alone-{seed}")
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"pack-{seed}")


# --- isolation --------------------------------------------------------------------------------------------


class PoisonedPendulum(gym.Wrapper):
    """InvertedPendulum whose rewards turn NaN (or whose step raises) after a few steps, for the
    env seeds in ``poisoned``; the others are the plain task."""

    poisoned: dict[int, str] = {}

    def __init__(self):
        super().__init__(gym.make("InvertedPendulum-v5"))
        self.mode = ""
        self.count = 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.mode = self.poisoned.get(seed, "")
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.count += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.mode and self.count > 300:
            if self.mode == "raise":
                raise RuntimeError("the simulator broke")
            reward = float("nan")
        return obs, reward, terminated, truncated, info


gym.register("trbench-test/PoisonedPendulum-v0", entry_point=PoisonedPendulum, max_episode_steps=1000)


def assert_each_as_alone(runs, seeds, ends, tmp_path) -> None:
    """Each seed of the pack (folders pack-SEED) ended as the same seed trained alone ends: the
    same status; the same folder when complete, else the same rows and result."""
    for run, seed, end in zip(runs, seeds, ends):
        alone = execute_run(run, tmp_path / f"alone-{seed}")
        assert alone["status"] == end["status"]
        if alone["status"] == "complete":
            assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"pack-{seed}")
        else:
            assert progress_rows(tmp_path / f"alone-{seed}") == progress_rows(tmp_path / f"pack-{seed}")
            assert result_record(tmp_path / f"alone-{seed}") == result_record(tmp_path / f"pack-{seed}")


@pytest.mark.parametrize("mode,status", [("nan", "diverged"), ("raise", "failed")])
def test_a_member_that_diverges_or_raises_ends_alone_and_the_others_complete_as_alone(tmp_path, mode, status):
    seeds = [1, 2, 3]
    PoisonedPendulum.poisoned = {derive_seeds(2)["env"]: mode}  # the first sub-env of seed 2's envs
    try:
        runs = [resolve(RunSpec("trpo", "trbench-test/PoisonedPendulum-v0", 1024, s, SMALL)) for s in seeds]
        seen_while_others_train = []

        def on_iteration(k, row):
            if k == 0 and row["step"] == 1024:  # the others' last iteration: seed 2 ended before
                seen_while_others_train.append(json.loads((tmp_path / "pack-2" / "result.json").read_text()))

        heard = []
        ends = execute_pack(
            runs, [tmp_path / f"pack-{s}" for s in seeds], on_iteration, on_end=lambda k, end: heard.append(k)
        )
        assert [end["status"] for end in ends] == ["complete", status, "complete"]
        assert [r["status"] for r in seen_while_others_train] == [status] and heard[0] == 1
        assert ends[1]["steps"] < 1024
        assert_each_as_alone(runs, seeds, ends, tmp_path)
    finally:
        PoisonedPendulum.poisoned = {}


@pytest.mark.parametrize("algo", ["acktr", "vpg"])
def test_a_member_whose_own_policy_step_raises_ends_alone_as_it_would_alone(tmp_path, monkeypatch, algo):
    # ACKTR's twin steps each member's policy on its own; a pack without a twin (VPG's, here
    # forced by hiding it) updates each member on its own: either way one member's exception ends
    # that member alone, with the error, the rows and the steps it has alone
    cls = resolve_algorithm(algo)
    if algo == "vpg":
        monkeypatch.setattr(cls, "lockstep", None)
    seeds = [1, 2, 3]
    doomed = derive_seeds(2)["torch"]
    own_step = cls.update_policy

    def update_policy(self, batch):
        # counted on the algorithm object itself: an id() could be reused by the run trained alone
        # after the pack's objects are freed, which would then never see its "second" step
        self.steps_seen_by_test = getattr(self, "steps_seen_by_test", 0) + 1
        if self.generator.initial_seed() == doomed and self.steps_seen_by_test == 2:
            raise RuntimeError("the second step of seed 2 broke")
        return own_step(self, batch)

    monkeypatch.setattr(cls, "update_policy", update_policy)
    runs = [resolve(RunSpec(algo, "InvertedPendulum-v5", 1024, s, SMALL)) for s in seeds]
    ends = execute_pack(runs, [tmp_path / f"pack-{s}" for s in seeds])
    assert [end["status"] for end in ends] == ["complete", "failed", "complete"]
    assert ends[1]["error"] == "RuntimeError: the second step of seed 2 broke"
    assert_each_as_alone(runs, seeds, ends, tmp_path)


class _Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("algo", ["ppo", "acktr"])  # acktr: its K-FAC state lives on each member
def test_an_interrupted_pack_resumes_each_member_from_its_checkpoint_to_the_same_bits(tmp_path, algo):
    seeds = [5, 6]
    settings = {**SMALL, "checkpoint_interval_steps": 512}
    runs = [resolve(RunSpec(algo, "InvertedPendulum-v5", 1280, s, settings)) for s in seeds]
    folders = [tmp_path / f"pack-{s}" for s in seeds]

    def interrupt_after_the_checkpoint(k, row):
        if row["step"] == 768:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        execute_pack(runs, folders, on_iteration=interrupt_after_the_checkpoint)
    assert all((f / "checkpoint.pt").is_file() and not (f / "result.json").exists() for f in folders)
    ends = execute_pack(runs, folders)
    assert [end["resumed_at_steps"] for end in ends] == [[512], [512]]
    for run, seed, folder in zip(runs, seeds, folders):
        execute_run(run, tmp_path / f"alone-{seed}")
        assert_same_run(tmp_path / f"alone-{seed}", folder)


def test_members_resumed_at_different_steps_catch_up_then_share_the_update_to_the_same_bits(tmp_path):
    settings = {**SMALL, "checkpoint_interval_steps": 512}
    early, late = (resolve(RunSpec("trpo", "InvertedPendulum-v5", 1280, s, settings)) for s in (8, 9))

    def interrupt(row):
        if row["step"] == 768:
            raise _Interrupt

    with pytest.raises(_Interrupt):  # one seed was trained alone and killed after its first checkpoint
        execute_run(early, tmp_path / "pack-8", on_iteration=interrupt)
    ends = execute_pack([early, late], [tmp_path / "pack-8", tmp_path / "pack-9"])
    assert ends[0]["resumed_at_steps"] == [512] and "resumed_at_steps" not in ends[1]
    for run, seed in ((early, 8), (late, 9)):
        execute_run(run, tmp_path / f"alone-{seed}")
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"pack-{seed}")


# --- algorithms without a lockstep update ------------------------------------------------------------------


class MyTRPO(TRPO):
    """A user's variant: it inherits TRPO's twin attribute but not the right to use it."""

    name = "my-trpo"

    def update_policy(self, batch):
        return super().update_policy(batch)


class WidePolicyPPO(resolve_algorithm("ppo")):  # type: ignore[misc]
    """Declares PPO's twin but builds a policy the stack cannot hold."""

    lockstep = resolve_algorithm("ppo").lockstep

    def __init__(self, config: PPOConfig, obs_dim, act_dim, device, generator):
        super().__init__(config, obs_dim, act_dim, device, generator)
        self.policy.mean_net = nn.Sequential(nn.Linear(obs_dim, act_dim, bias=False))


def test_a_subclass_without_its_own_lockstep_update_runs_alone_and_the_dry_run_says_so(tmp_path, monkeypatch, capsys):
    assert lockstep_class(MyTRPO) is None and "declares no lockstep update" in lockstep_unsupported_reason(MyTRPO)
    mine = [resolve(RunSpec(f"{__name__}:MyTRPO", "InvertedPendulum-v5", 512, s, SMALL)) for s in (0, 1)]
    builtin = [resolve(RunSpec("trpo", "InvertedPendulum-v5", 512, s, SMALL)) for s in (0, 1)]
    assert [len(p) for p in pack_runs(mine + builtin, 4)] == [1, 1, 2]
    (tmp_path / "grid.toml").write_text(
        f'steps = 512\nseeds = 2\nenvs = ["InvertedPendulum-v5"]\nalgos = ["{__name__}:MyTRPO", "trpo"]\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "in 3 worker tasks" in out
    assert f"{__name__}:MyTRPO runs one seed per worker ({__name__}.MyTRPO declares no lockstep update)" in out
    assert main(["run", "grid.toml", "--dry-run", "--seeds-per-worker", "1"]) == 0
    assert "worker tasks" not in capsys.readouterr().out


def test_a_pack_whose_networks_the_stack_cannot_hold_trains_each_member_alone_to_the_same_bits(tmp_path):
    runs = [resolve(RunSpec(f"{__name__}:WidePolicyPPO", "InvertedPendulum-v5", 512, s, SMALL)) for s in (0, 1)]
    ends = execute_pack(runs, [tmp_path / "pack-0", tmp_path / "pack-1"])
    assert [end["status"] for end in ends] == ["complete", "complete"]
    for run, seed in zip(runs, (0, 1)):
        execute_run(run, tmp_path / f"alone-{seed}")
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"pack-{seed}")


def test_packing_groups_runs_of_one_cell_in_order_of_their_first_run():
    runs = [
        resolve(RunSpec(algo, "InvertedPendulum-v5", 512, seed, {**SMALL, **extra}))
        for seed in range(5)
        for algo, extra in (("trpo", {}), ("ppo", {}), ("trpo", {"max_kl": 0.02}))
    ]
    seeds = [[r.spec.seed for r in p] for p in pack_runs(runs, 2)]
    # five seeds at two per worker: three packs, as even as possible, each cell's in seed order
    assert seeds == [[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [2, 3], [4], [4], [4]]
    assert all(len({r.config for r in p}) == 1 for p in pack_runs(runs, 2))
    assert [[r.spec.seed for r in p] for p in pack_runs(runs, 4)] == [
        [0, 1, 2],
        [0, 1, 2],
        [0, 1, 2],
        [3, 4],
        [3, 4],
        [3, 4],
    ]
    assert [len(p) for p in pack_runs(runs, 1)] == [1] * len(runs)
    assert [len(p) for p in pack_runs(runs, 8)] == [5, 5, 5]


def test_packs_are_made_smaller_rather_than_leave_workers_idle():
    runs = [resolve(RunSpec(algo, "InvertedPendulum-v5", 512, s, SMALL)) for algo in ("trpo", "ppo") for s in range(3)]
    assert [[len(p) for p in packs_for_slots(runs, 4, slots)[0]] for slots in (1, 2, 3, 4, 5, 6, 8)] == [
        [3, 3],
        [3, 3],
        [2, 1, 2, 1],  # 2 seeds per worker: each cell 2 + 1
        [2, 1, 2, 1],
        [1] * 6,
        [1] * 6,
        [1] * 6,
    ]
    assert [packs_for_slots(runs, 4, slots)[1] for slots in (1, 2, 3, 5)] == [4, 4, 2, 1]
    assert packs_for_slots(runs, 1, 1)[1] == 1


def test_the_runner_packs_seeds_into_one_worker_and_writes_what_one_seed_per_worker_writes(tmp_path, monkeypatch):
    hparams = "".join(f"{key} = {value}\n" for key, value in SMALL.items())
    (tmp_path / "grid.toml").write_text(
        'name = "packed"\nsteps = 512\nseeds = 3\nenvs = ["InvertedPendulum-v5"]\nalgos = ["ppo"]\n'
        f"seeds_per_worker = 3\n[hparams.all]\n{hparams}"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--out", "packed", "--workers", "1"]) == 0
    assert main(["run", "grid.toml", "--out", "alone", "--workers", "1", "--seeds-per-worker", "1"]) == 0
    folders = sorted((tmp_path / "alone" / "runs").iterdir())
    assert len(folders) == 3
    for folder in folders:
        assert_same_run(folder, tmp_path / "packed" / "runs" / folder.name)
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            p.name for p in (tmp_path / "packed" / "runs" / folder.name).iterdir()
        )


@pytest.mark.parametrize("value", ["0", "2.5", '"four"', "true"])
def test_a_bad_seeds_per_worker_is_one_line_naming_the_file_and_key(tmp_path, monkeypatch, capsys, value):
    (tmp_path / "grid.toml").write_text(
        f'steps = 512\nseeds = 2\nenvs = ["InvertedPendulum-v5"]\nalgos = ["trpo"]\nseeds_per_worker = {value}\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid.toml: seeds_per_worker: must be an integer >= 1" in err


def test_a_bad_seeds_per_worker_flag_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "grid.toml").write_text('steps = 512\nseeds = 2\nenvs = ["InvertedPendulum-v5"]\nalgos = ["trpo"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["run", "grid.toml", "--dry-run", "--seeds-per-worker", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds-per-worker: must be >= 1" in err
    assert not (tmp_path / "results").exists()


def test_a_lockstep_trpo_update_off_the_cpu_never_reads_a_value_back():
    """On the meta device tensors have shapes but no values, so any read in the lockstep update
    (``.item()``, ``float()``, ``bool()``, a Python ``if`` on a tensor) raises: the CPU check of
    what a GPU run needs, no host synchronisation inside CG or the line search, for S > 1."""
    config = TRPO.Config(linesearch_mode="batched")
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(TRPO(config, 11, 3, torch.device("meta"), torch.Generator().manual_seed(seed)))
    twin = TRPO.lockstep(members)
    shape = (3, 256)
    batch = Batch(
        obs=torch.empty((*shape, 11), device="meta"),
        actions=torch.empty((*shape, 3), device="meta"),
        log_probs=torch.empty(shape, device="meta"),
        advantages=torch.empty(shape, device="meta"),
        returns=torch.empty(shape, device="meta"),
        values=torch.empty(shape, device="meta"),
    )
    diagnostics = twin.update_policy(batch)
    assert diagnostics["linesearch_accepted"].device.type == "meta"
    assert diagnostics["linesearch_accepted"].shape == (3,) and diagnostics["cg_iterations"].shape == (3,)
    with pytest.raises(RuntimeError, match="meta"):  # the check can fail: reading is refused
        bool(diagnostics["linesearch_accepted"].all())
