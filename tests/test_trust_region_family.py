"""The defining properties of the PPO family's update rules (PPO-KL, SPO, Truly PPO, MDPO), each
against an exact reference: a truth table, autograd, a closed form, a dense grid."""

from __future__ import annotations

import math

import pytest
import torch

from trbench.algos.config import PPOConfig
from trbench.algos.mdpo import MDPO, MDPOConfig
from trbench.algos.minibatch_policy import PolicyMinibatch
from trbench.algos.networks import gaussian_kl, gaussian_log_prob
from trbench.algos.ppo import PPO
from trbench.algos.ppo_kl import PPOKL, PPOKLConfig, next_beta
from trbench.algos.projections import project, trust_region_regression
from trbench.algos.registry import BUILTIN, resolve_algorithm
from trbench.algos.rollout import Batch
from trbench.algos.spo import SPO, SPOConfig, spo_objective
from trbench.algos.trpl import TRPL, TRPLConfig
from trbench.algos.truly_ppo import TrulyPPO, TrulyPPOConfig, rollback_objective
from trbench.cli import main
from trbench.suites.execute import execute_run
from trbench.suites.run_spec import RunSpec, resolve

SMALL_NETS = {"policy_hidden": (8,), "value_hidden": (8,)}


def _algorithm(cls, config):
    torch.manual_seed(0)
    algo = cls(config, 3, 2, torch.device("cpu"), torch.Generator().manual_seed(0))
    algo.policy.double()
    return algo


def _minibatch(algo, n: int = 64, seed: int = 1) -> PolicyMinibatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions, log_probs = algo.policy.act(obs, g)
        old_mean, old_log_std = algo.policy(obs)
    advantages = torch.randn(n, generator=g, dtype=torch.float64)
    return PolicyMinibatch(obs, actions, log_probs, advantages, old_mean, old_log_std)


def _gradient(loss, policy) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(policy.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


# --- what every member of the family shares ---------------------------------------------------------


@pytest.mark.parametrize(
    "cls,config",
    [
        (PPO, PPOConfig(**SMALL_NETS)),
        (PPOKL, PPOKLConfig(**SMALL_NETS, beta_init=3.0)),
        (SPO, SPOConfig(**SMALL_NETS)),
        (TrulyPPO, TrulyPPOConfig(**SMALL_NETS)),
        (MDPO, MDPOConfig(**SMALL_NETS)),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_at_the_old_policy_every_surrogate_has_the_vanilla_policy_gradient(cls, config):
    algo = _algorithm(cls, config)
    if cls is PPOKL:
        algo.beta = torch.tensor(config.beta_init, dtype=torch.float64)
    algo.progress = 0.5
    mb = _minibatch(algo)
    loss, log_ratio, _ = algo.surrogate(mb)
    assert log_ratio.abs().max() < 1e-12  # at the behaviour policy r = 1
    surrogate_gradient = _gradient(loss, algo.policy)
    vanilla = -(algo.policy.log_prob(mb.obs, mb.actions).exp() / mb.old_log_probs.exp() * mb.advantages).mean()
    torch.testing.assert_close(surrogate_gradient, _gradient(vanilla, algo.policy), rtol=1e-10, atol=1e-12)


def test_gaussian_kl_is_the_closed_form_and_a_mean_shift_is_symmetric():
    g = torch.Generator().manual_seed(0)
    m_p, m_q = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    s_p, s_q = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Independent(torch.distributions.Normal(m_p, s_p.exp()), 1),
        torch.distributions.Independent(torch.distributions.Normal(m_q, s_q.exp()), 1),
    )
    torch.testing.assert_close(gaussian_kl(m_p, s_p, m_q, s_q), reference, rtol=1e-12, atol=1e-12)
    shift = torch.randn(5, 3, generator=g, dtype=torch.float64)
    expected = 0.5 * (shift / s_p.exp()).pow(2).sum(-1)
    torch.testing.assert_close(gaussian_kl(m_p, s_p, m_p + shift, s_p), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_kl(m_p + shift, s_p, m_p, s_p), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(gaussian_kl(m_p, s_p, m_p, s_p), torch.zeros(5, dtype=torch.float64))


# --- PPO-KL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "d_over_target,factor",
    [(0.5, 0.5), (2.0, 2.0), (1.0, 1.0), (1.2, 1.0), (1 / 1.5, 1.0), (1.5, 1.0), (0.01, 0.5), (100.0, 2.0)],
)
def test_the_adaptive_beta_rule_as_a_truth_table(d_over_target, factor):
    cfg = PPOKLConfig()
    beta = torch.tensor(3.0)
    d = torch.tensor(cfg.kl_target * d_over_target, dtype=torch.float64)
    # the boundaries d_targ / 1.5 and 1.5 d_targ leave beta unchanged: the paper's inequalities are strict
    if d_over_target == 1 / 1.5:
        d = torch.tensor(cfg.kl_target / cfg.beta_band, dtype=torch.float64)
    assert next_beta(beta, d, cfg).item() == 3.0 * factor


def test_beta_stays_within_its_guard():
    cfg = PPOKLConfig()
    assert next_beta(torch.tensor(cfg.beta_min), torch.tensor(0.0), cfg).item() == pytest.approx(cfg.beta_min)
    assert next_beta(torch.tensor(cfg.beta_max), torch.tensor(1.0), cfg).item() == pytest.approx(cfg.beta_max)


def test_ppo_kl_penalty_has_no_gradient_at_the_old_policy_and_weighs_beta_times_the_mean_kl():
    algo = _algorithm(PPOKL, PPOKLConfig(**SMALL_NETS))
    mb = _minibatch(algo)
    mean, log_std = algo.policy(mb.obs)
    kl = gaussian_kl(mb.old_mean, mb.old_log_std, mean, log_std).mean()
    assert _gradient(kl, algo.policy).abs().max() == 0.0
    with torch.no_grad():
        algo.policy.log_std += 0.1  # now away from the old policy
    algo.beta = torch.tensor(2.5, dtype=torch.float64)
    loss, log_ratio, _ = algo.surrogate(mb)
    mean, log_std = algo.policy(mb.obs)
    expected = (
        -(log_ratio.exp() * mb.advantages).mean() + 2.5 * gaussian_kl(mb.old_mean, mb.old_log_std, mean, log_std).mean()
    )
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)


# --- SPO -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("advantage", [2.0, -0.7])
@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.3])
def test_spo_per_sample_optimum_lies_on_the_clip_boundary(advantage, epsilon):
    adv = torch.tensor(advantage, dtype=torch.float64)
    grid = torch.linspace(0.0, 2.0, 200_001, dtype=torch.float64)
    values = spo_objective(grid, adv, epsilon)
    optimum = 1 + math.copysign(epsilon, advantage)
    assert grid[values.argmax()].item() == pytest.approx(optimum, abs=1e-5)
    at_optimum = spo_objective(torch.tensor(optimum, dtype=torch.float64), adv, epsilon)
    assert at_optimum.item() == pytest.approx(advantage + epsilon * abs(advantage) / 2, rel=1e-12)
    r = torch.tensor([0.5, 1.0, 1.4], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(spo_objective(r, adv, epsilon).sum(), r)
    expected = advantage - abs(advantage) / epsilon * (r.detach() - 1)
    torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-12)
    assert gradient[1].item() == pytest.approx(advantage)  # PPO's and VPG's gradient at r = 1


def test_spo_objective_vanishes_without_advantage():
    r = torch.linspace(0.1, 3.0, 50, dtype=torch.float64)
    assert torch.equal(
        spo_objective(r, torch.zeros(50, dtype=torch.float64), 0.2), torch.zeros(50, dtype=torch.float64)
    )


# --- Truly PPO ----------------------------------------------------------------------------------------------


def test_rollback_gradient_is_minus_alpha_a_once_triggered_and_a_otherwise():
    delta, alpha = 0.03, 0.05
    ratio = torch.tensor([1.3, 1.3, 0.7, 0.7, 1.3, 0.7, 1.0], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    kl = torch.tensor([0.05, 0.05, 0.05, 0.05, 0.01, 0.01, 0.05], dtype=torch.float64)
    objective, triggered = rollback_objective(ratio, adv, kl, delta, alpha)
    # outside the region and improved (r A > A) -> rolled back, of either sign of A
    assert triggered.tolist() == [True, False, True, False, False, False, False]
    (gradient,) = torch.autograd.grad(objective.sum(), ratio)
    expected = torch.where(triggered, -alpha * adv, adv)
    assert torch.equal(gradient, expected)


def test_truly_ppo_surrogate_triggers_on_the_per_state_kl_in_trpos_direction():
    cfg = TrulyPPOConfig(**SMALL_NETS, kl_trigger=0.02)
    algo = _algorithm(TrulyPPO, cfg)
    mb = _minibatch(algo, n=256)
    with torch.no_grad():
        algo.policy.log_std -= 0.3  # KL(old || new) at every state: 2 * (e^0.6 - 1 - 0.6) / 2 > 0.02
    loss, log_ratio, stats = algo.surrogate(mb)
    ratio = log_ratio.exp()
    state_kl = gaussian_kl(mb.old_mean, mb.old_log_std, *algo.policy(mb.obs))
    assert (state_kl >= cfg.kl_trigger).all()
    expected_fraction = (ratio * mb.advantages > mb.advantages).double().mean()
    assert stats["trigger_fraction"].item() == pytest.approx(expected_fraction.item())
    assert 0 < stats["trigger_fraction"].item() < 1
    assert stats["ratio_max"].item() == ratio.max().item()


# --- MDPO ------------------------------------------------------------------------------------------------------


def test_mdpo_kl_coefficient_follows_the_annealed_step_size():
    algo = _algorithm(MDPO, MDPOConfig(**SMALL_NETS, step_size_init=0.5))
    for progress in (0.0, 0.25, 0.9):
        algo.progress = progress
        assert algo.kl_coefficient() == pytest.approx(1 / (0.5 * (1 - progress)), rel=1e-15)
    constant = _algorithm(MDPO, MDPOConfig(**SMALL_NETS, anneal_step_size=False))
    constant.progress = 0.9
    assert constant.kl_coefficient() == 1.0


def test_mdpo_penalises_the_reverse_kl_with_its_coefficient():
    algo = _algorithm(MDPO, MDPOConfig(**SMALL_NETS))
    algo.progress = 0.5
    mb = _minibatch(algo)
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.05)
    loss, log_ratio, _ = algo.surrogate(mb)
    mean, log_std = algo.policy(mb.obs)
    reverse = gaussian_kl(mean, log_std, mb.old_mean, mb.old_log_std).mean()
    forward = gaussian_kl(mb.old_mean, mb.old_log_std, mean, log_std).mean()
    assert abs(reverse.item() - forward.item()) > 1e-6  # the two directions differ here
    torch.testing.assert_close(loss, -(log_ratio.exp() * mb.advantages).mean() + 2.0 * reverse, rtol=1e-12, atol=0)


def test_mirror_descent_step_on_a_bandit_converges_to_the_exponentiated_closed_form():
    """The subproblem MDPO approximates: over the simplex, E_pi[A] - (1/t) KL(pi || pi_k) is
    maximised by pi_k exp(t A) / Z. Gradient ascent on softmax logits reaches it."""
    t = 0.7
    old = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    advantages = torch.tensor([1.0, -0.5, 0.3, 0.0], dtype=torch.float64)
    logits = old.log().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(3000):
        pi = logits.softmax(-1)
        objective = (pi * advantages).sum() - (pi * (pi.log() - old.log())).sum() / t
        optimizer.zero_grad()
        (-objective).backward()
        optimizer.step()
    closed_form = old * (t * advantages).exp()
    torch.testing.assert_close(logits.softmax(-1), closed_form / closed_form.sum(), rtol=1e-6, atol=1e-8)


# --- TRPL (the layers themselves: tests/test_projections.py) ---------------------------------------------


@pytest.mark.parametrize("projection", ["kl", "w2", "frobenius"])
def test_trpl_trains_the_projected_policy_and_writes_the_projected_std_back(projection):
    cfg = TRPLConfig(**SMALL_NETS, projection=projection, mean_bound=1e-3, cov_bound=1e-5)
    algo = _algorithm(TRPL, cfg)
    mb = _minibatch(algo, n=128)
    with torch.no_grad():
        algo.policy.log_std -= 0.2  # both the mean and the covariance leave their bounds
        for p in algo.policy.mean_net.parameters():
            p.add_(0.05)
    loss, log_ratio, stats = algo.surrogate(mb)
    mean, log_std = algo.policy(mb.obs)
    layer = project(projection, mean, log_std, mb.old_mean, mb.old_log_std, 1e-3, 1e-5)
    expected_log_ratio = gaussian_log_prob(layer.mean, layer.log_std, mb.actions) - mb.old_log_probs
    torch.testing.assert_close(log_ratio, expected_log_ratio, rtol=0, atol=0)
    regression = trust_region_regression(mean, log_std, layer.mean, layer.log_std, projection).mean()
    torch.testing.assert_close(loss, -(expected_log_ratio.exp() * mb.advantages).mean() + regression, rtol=0, atol=0)
    assert stats["mean_projected"].item() > 0.5
    if projection == "kl":
        # the KL layer keeps KL(projected || old) <= mean_bound + cov_bound at every state
        reverse = gaussian_kl(layer.mean, layer.log_std, mb.old_mean, mb.old_log_std)
        assert reverse.max().item() <= (1e-3 + 1e-5) * (1 + 1e-9)
        assert cfg.nominal_kl() == 1e-3 + 1e-5
    else:
        assert cfg.nominal_kl() is None and cfg.trust_region_record()["measure"] == "other"
    diagnostics = algo.after_epochs(_batch_of(mb), mb.old_mean, mb.old_log_std)
    assert torch.equal(algo.policy.log_std.detach(), layer.log_std[0].detach())
    assert diagnostics["cov_projected"].item() == 1.0
    assert diagnostics["cov_constraint"].item() <= 1e-5 * (1 + 1e-6)
    assert diagnostics["cov_constraint_before"].item() > 1e-5


def _batch_of(mb: PolicyMinibatch) -> Batch:
    n = mb.obs.size(0)
    zeros = torch.zeros(n, dtype=mb.obs.dtype)
    return Batch(
        obs=mb.obs,
        actions=mb.actions,
        log_probs=mb.old_log_probs,
        advantages=mb.advantages,
        returns=zeros,
        values=zeros,
    )


def test_trpl_entropy_control_keeps_the_projected_entropy_on_its_decaying_bound():
    cfg = TRPLConfig(**SMALL_NETS, entropy_control=True, cov_bound=10.0, entropy_target=-1.0)
    algo = _algorithm(TRPL, cfg)
    algo.progress = 0.3
    k = 2
    initial = k * (cfg.log_std_init + 0.5 * math.log(2 * math.pi * math.e))
    bound = -k + (initial + k) * 0.5 ** (10 * 0.3)
    assert algo.entropy_bound(k) == pytest.approx(bound, rel=1e-12)
    mb = _minibatch(algo)
    with torch.no_grad():
        algo.policy.log_std -= 3.0  # far below the bound, and inside the (loose) covariance bound
    mean, log_std = algo.policy(mb.obs)
    layer = algo.projected(mean, log_std, mb.old_mean, mb.old_log_std)
    entropy = layer.log_std.sum(-1) + 0.5 * k * math.log(2 * math.pi * math.e)
    torch.testing.assert_close(entropy, torch.full_like(entropy, bound), rtol=1e-12, atol=1e-12)


# --- what the run folder and the command line say about each method ---------------------------------


def test_every_registered_algorithm_says_what_plays_delta_and_config_json_records_it():
    records = {name: resolve_algorithm(name).Config().trust_region_record() for name in BUILTIN}
    assert records["vpg"] is None
    assert records["trpo"] == {
        "setting": "max_kl",
        "radius": 0.01,
        "default": 0.01,
        "measure": "kl_old_new",
        "scope": "mean",
        "kl_radius": 0.01,
    }
    assert records["ppo"]["kl_radius"] is None and records["ppo"]["setting"] == "clip_range"
    assert records["ppo_kl"]["setting"] == "kl_target" and records["truly_ppo"]["scope"] == "per_state"
    changed = PPOKLConfig(kl_target=0.03).trust_region_record()
    assert changed["radius"] == 0.03 and changed["default"] == 0.01 and changed["kl_radius"] == 0.03
    for name, record in records.items():
        if record is not None:
            assert record["setting"] in resolve_algorithm(name).Config.field_names(), name


def test_trbench_config_without_an_algorithm_lists_every_one_with_its_paper(capsys):
    assert main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in BUILTIN:
        cls = resolve_algorithm(name)
        assert cls.summary and cls.paper, name
        assert f"{name}: {cls.summary} [{cls.paper}]" in lines


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo,overrides",
    [
        ("ppo_kl", {}),
        ("spo", {}),
        ("truly_ppo", {}),
        # ten full-batch Adam steps of 3e-4 per update (the paper's) move the policy by a KL of
        # about 2e-4: 81 after this budget; ten times the step size learns it
        ("mdpo", {"policy_lr": 3e-3}),
        ("trpl", {}),
        ("trpl", {"projection": "w2"}),
        ("trpl", {"projection": "frobenius"}),
    ],
)
def test_learns_inverted_pendulum(tmp_path, algo, overrides):
    # each reached the maximum return, 1000, at this seed and budget
    result = execute_run(
        resolve(RunSpec(algo, "InvertedPendulum-v5", 24_576, 0, {"eval_interval_steps": 0, **overrides})),
        tmp_path / algo,
    )
    assert result["status"] == "complete"
    assert result["final_eval_return"] >= 900
