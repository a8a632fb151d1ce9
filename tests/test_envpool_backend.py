"""The optional envpool backend: same SAME_STEP semantics as gymnasium, reproducible seeding,
recorded provenance, clear errors. Skipped where the envpool extra is not installed; CI installs
it, so these run there."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("envpool")

from trbench.algos.envpool_backend import EnvpoolVectorEnv, _int32_seed, supported_env_ids
from trbench.algos.rollout import make_vector_env
from trbench.base.errors import UsageError
from trbench.suites.execute import execute_run
from trbench.suites.run_spec import RunSpec, resolve

SMALL = {
    "steps_per_iteration": 512,
    "num_envs": 4,
    "critic_minibatch_size": 128,
    "eval_interval_steps": 1024,
    "eval_episodes": 2,
    "final_eval_episodes": 10,
    "env_backend": "envpool",
}


def drive(env, steps, seed=0):
    """Step with seeded random actions; return per-step observations, rewards and infos."""
    rng = np.random.default_rng(seed)
    dim = env.single_action_space.shape[0]
    trace = []
    for _ in range(steps):
        obs, rew, term, trunc, info = env.step(rng.uniform(-1, 1, (env.num_envs, dim)))
        trace.append((obs.copy(), rew.copy(), term.copy(), trunc.copy(), info))
    return trace


def test_episode_ends_give_the_reset_observation_at_once_and_the_last_one_in_final_obs():
    limit = 18  # random actions topple the hopper in about 15-20 steps, so both kinds of end occur
    env = EnvpoolVectorEnv("Hopper-v5", 4, max_episode_steps=limit)
    env.reset(seed=3)
    lengths = np.zeros(4, dtype=int)
    ends = terminations = truncations = 0
    for obs, _, term, trunc, info in drive(env, 120):
        lengths += 1
        done = term | trunc
        # truncation happens at the limit and only there; every episode ends by the limit
        assert np.all(lengths[trunc] == limit)
        assert np.all(done[lengths == limit])
        if done.any():
            ends += int(done.sum())
            terminations += int(term.sum())
            truncations += int(trunc.sum())
            assert np.array_equal(info["_final_obs"], done)
            for i in np.flatnonzero(done):
                last = info["final_obs"][i]
                assert last is not None and last.shape == obs[i].shape
                # the returned observation starts a new episode: Hopper resets to z = 1.25 with
                # noise of scale 0.005, while a terminated hopper has fallen below 0.7 or tipped over
                assert abs(obs[i][0] - 1.25) < 0.01
                assert not np.array_equal(last, obs[i])
            for i in np.flatnonzero(~done):
                assert info["final_obs"][i] is None
            lengths[done] = 0
        else:
            assert "final_obs" not in info
    assert ends >= 4 * (120 // limit)
    assert terminations > 0 and truncations > 0


def test_same_seed_repeats_bit_for_bit_and_a_seeded_reset_rebuilds_the_pool():
    a, b = EnvpoolVectorEnv("HalfCheetah-v5", 3), EnvpoolVectorEnv("HalfCheetah-v5", 3)
    first_a, _ = a.reset(seed=7)
    first_b, _ = b.reset(seed=7)
    assert np.array_equal(first_a, first_b)
    trace_a, trace_b = drive(a, 30), drive(b, 30)
    for (oa, ra, *_), (ob, rb, *_) in zip(trace_a, trace_b):
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb)
    # reseeding mid-way restarts from the same initial states; another seed does not
    again, _ = a.reset(seed=7)
    assert np.array_equal(again, first_a)
    other, _ = a.reset(seed=8)
    assert not np.array_equal(other, first_a)
    # a list of per-env seeds follows gymnasium's rule seed + i for an int seed
    listed, _ = b.reset(seed=[7, 8, 9])
    assert np.array_equal(listed, first_a)


def test_evaluation_seeds_fold_into_int32_without_meeting_training_seeds():
    assert _int32_seed(5) == 5
    assert _int32_seed(2**30 - 1) == 2**30 - 1
    assert _int32_seed(2**31) == 2**30
    assert _int32_seed(2**31 + 2**30 - 1) == 2**31 - 1
    with pytest.raises(ValueError):
        _int32_seed(-1)


def test_spaces_match_gymnasium_for_every_supported_task():
    for env_id in ("Hopper-v5", "HalfCheetah-v4", "Walker2d-v4", "InvertedPendulum-v5"):
        assert env_id in supported_env_ids()
        ours, theirs = EnvpoolVectorEnv(env_id, 2), gym.make(env_id)
        assert ours.single_observation_space.shape == theirs.observation_space.shape
        assert np.array_equal(ours.single_action_space.low, theirs.action_space.low)
        assert np.array_equal(ours.single_action_space.high, theirs.action_space.high)
        assert ours.max_episode_steps == theirs.spec.max_episode_steps
        ours.close()
        theirs.close()


def test_unsupported_env_and_unknown_backend_are_usage_errors():
    with pytest.raises(UsageError, match="not available with env_backend=envpool; allowed: .*Hopper-v5"):
        make_vector_env("Pendulum-v1", 2, "envpool")
    with pytest.raises(UsageError, match="env_backend: must be one of gymnasium, envpool"):
        make_vector_env("Hopper-v5", 2, "brax")


def read_progress(folder):
    with open(folder / "progress.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    timing = {"wall_time_s", "steps_per_second", "rollout_time_s", "update_time_s"}
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


@pytest.mark.slow
def test_an_envpool_run_is_repeatable_and_records_its_backend(tmp_path):
    run = resolve(RunSpec("trpo", "Hopper-v5", 2048, 4, dict(SMALL)))
    default = resolve(RunSpec("trpo", "Hopper-v5", 2048, 4, {k: v for k, v in SMALL.items() if k != "env_backend"}))
    assert run.run_id != default.run_id  # a different backend is a different experiment
    a, b = tmp_path / "a", tmp_path / "b"
    assert execute_run(run, a)["status"] == "complete"
    assert execute_run(run, b)["status"] == "complete"
    assert read_progress(a) == read_progress(b)
    config = json.loads((a / "config.json").read_text())
    assert config["env_backend"] == "envpool"
    assert config["config"]["env_backend"] == "envpool"
    assert config["versions"]["envpool"] == "1.2.5"
    assert config["versions"]["envpool_mujoco"] == "3.6.0"
    # every batch held 512 real transitions: episodes ended inside it and were counted
    assert sum(int(r["train_episodes"]) for r in read_progress(a)) > 0


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v4"])
def test_envpool_dynamics_follow_gymnasium_from_the_same_start_state(env_id):
    """With reset noise off both backends start from the model's initial state; the same actions
    must then give the same trajectory up to floating-point differences between the two MuJoCo
    builds, and the episode must end on the same step."""
    import envpool

    ours = gym.make(env_id, reset_noise_scale=0.0)
    theirs = envpool.make_gymnasium(env_id, num_envs=1, seed=0, reset_noise_scale=0.0)
    obs_g, _ = ours.reset(seed=0)
    obs_p, _ = theirs.reset()
    assert np.array_equal(obs_g, obs_p[0])
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = rng.uniform(-0.3, 0.3, ours.action_space.shape)
        obs_g, rew_g, term_g, trunc_g, _ = ours.step(action)
        obs_p, rew_p, term_p, trunc_p, _ = theirs.step(action[None])
        np.testing.assert_allclose(obs_p[0], obs_g, rtol=0, atol=1e-6)
        np.testing.assert_allclose(rew_p[0], rew_g, rtol=1e-6, atol=1e-6)  # envpool's rewards are float32
        assert (term_g, trunc_g) == (bool(term_p[0]), bool(trunc_p[0]))
        if term_g or trunc_g:
            break
    ours.close()
    theirs.close()


def test_each_env_of_the_adapter_follows_its_own_envpool_env_with_the_reset_steps_removed():
    """Env i of the adapter, seeded s + i, against a one-env envpool pool seeded s + i and driven
    the NEXT_STEP way: the same actions, and after each episode end one extra step that resets
    it. Observations, rewards, flags and last observations must agree exactly."""
    import envpool

    num_envs, seed, limit = 3, 21, 15
    ours = EnvpoolVectorEnv("Hopper-v5", num_envs, max_episode_steps=limit)
    first, _ = ours.reset(seed=seed)
    singles = [
        envpool.make_gymnasium(
            "Hopper-v5", num_envs=1, seed=seed + i, env_seed=[seed + i], max_episode_steps=limit, num_threads=1
        )
        for i in range(num_envs)
    ]
    for i, single in enumerate(singles):
        assert np.array_equal(single.reset()[0][0], first[i])
    rng = np.random.default_rng(5)
    ends = 0
    for _ in range(80):
        actions = rng.uniform(-1, 1, (num_envs, 3))
        obs, rew, term, trunc, info = ours.step(actions)
        for i, single in enumerate(singles):
            o, r, te, tr, _ = single.step(actions[i : i + 1])
            assert (rew[i], term[i], trunc[i]) == (r[0], te[0], tr[0])
            if te[0] or tr[0]:
                ends += 1
                assert np.array_equal(info["final_obs"][i], o[0])
                o, *_ = single.step(np.zeros((1, 3)))  # the reset step, which the adapter hides
            assert np.array_equal(obs[i], o[0])
    assert ends >= num_envs
