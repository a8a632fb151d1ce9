"""Suite files expand into the intended grid, with settings layered as documented and run ids
that stay put unless a run's own settings change."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from trbench.algos.registry import BUILTIN
from trbench.suites.grid import builtin_variants, load_suite

TINY = """
[hparams.all]
steps_per_iteration = 256
eval_interval_steps = 0
final_eval_episodes = 10
critic_minibatch_size = 64
"""


def write_suite(folder: Path, body: str, name: str = "suite.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def by_label(suite) -> dict[str, list]:
    groups: dict[str, list] = {}
    for run in suite.runs:
        groups.setdefault(run.spec.arm, []).append(run)
    return groups


def test_grid_counts_arms_envs_seeds_and_axes(tmp_path):
    path = write_suite(
        tmp_path,
        """
        name = "grid"
        steps = 512
        seeds = 3
        envs = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5"]
        algos = ["trpo", "ppo", "vpg"]
        [hparams.trpo]
        max_kl = [0.01, 0.02]
        damping = [0.1, 0.01]
        [hparams.ppo]
        clip_range = [0.1, 0.2, 0.3]
    """,
    )
    suite = load_suite(path)
    # trpo: 2 x 2 points, ppo: 3, vpg: 1; each on 2 envs with 3 seeds
    assert len(suite.runs) == (4 + 3 + 1) * 2 * 3
    assert suite.seeds == (0, 1, 2)
    assert len({run.run_id for run in suite.runs}) == len(suite.runs)
    labels = Counter(run.spec.arm for run in suite.runs)
    assert labels["trpo[damping=0.01,max_kl=0.02]"] == 6
    assert labels["ppo[clip_range=0.3]"] == 6
    assert labels["vpg"] == 6
    assert suite.total_steps == 2048 * len(suite.runs)  # each 512-step budget is one iteration of 2048
    # seeds outermost, so a partial grid covers every arm and env for the first seeds
    assert [run.spec.seed for run in suite.runs] == sorted(run.spec.seed for run in suite.runs)


def test_seed_list_is_taken_as_given(tmp_path):
    path = write_suite(
        tmp_path,
        """
        steps = 512
        seeds = [7, 3]
        envs = ["InvertedPendulum-v5"]
        algos = ["npg"]
    """,
    )
    suite = load_suite(path)
    assert sorted(run.spec.seed for run in suite.runs) == [3, 7]
    assert suite.name == "suite"  # the file's stem when name is not given


def test_settings_layer_from_all_to_variant_to_arm_to_env(tmp_path):
    path = write_suite(
        tmp_path,
        """
        name = "layers"
        steps = 1000
        seeds = [0]
        envs = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5"]
        algos = ["trpo", "trpo+", "vpg"]
        [hparams.all]
        gamma = 0.95
        value_clip = 0.5
        policy_lr = 0.001
        [hparams."trpo+"]
        max_kl = 0.05
        [env.InvertedDoublePendulum-v5]
        steps = 2000
        [env.InvertedDoublePendulum-v5.hparams.all]
        gae_lambda = 0.9
        [env.InvertedDoublePendulum-v5.hparams.trpo]
        gamma = 0.999
    """,
    )
    runs = {(run.spec.arm, run.spec.env_id): run for run in load_suite(path).runs}
    plain = runs["trpo", "InvertedPendulum-v5"]
    assert plain.spec.steps == 1000 and plain.config.gamma == 0.95 and plain.config.value_clip == 0.5
    assert plain.config.normalize_reward is False
    plus = runs["trpo+", "InvertedPendulum-v5"]
    assert plus.spec.algorithm == "trpo"
    # the variant beats [hparams.all] on the keys it defines; the arm's own table beats both
    assert plus.config.value_clip == builtin_variants()["trpo+"].settings["value_clip"].values[0]
    assert plus.config.normalize_reward is True and plus.config.max_kl == 0.05 and plus.config.gamma == 0.95
    # policy_lr in [hparams.all] reaches the arms that have it and leaves the others alone
    assert runs["vpg", "InvertedPendulum-v5"].config.policy_lr == 0.001
    assert not hasattr(plain.config, "policy_lr")
    double = runs["trpo", "InvertedDoublePendulum-v5"]
    assert double.spec.steps == 2000 and double.config.gamma == 0.999 and double.config.gae_lambda == 0.9
    assert runs["vpg", "InvertedDoublePendulum-v5"].config.gamma == 0.95
    assert runs["trpo+", "InvertedDoublePendulum-v5"].config.gae_lambda == 0.9


def test_suite_variants_and_builtin_variants_are_separate_arms(tmp_path):
    path = write_suite(
        tmp_path,
        """
        steps = 512
        seeds = 2
        envs = ["InvertedPendulum-v5"]
        algos = ["ppo", "ppo-m", "ppo-wide"]
        [variants.ppo-wide]
        algo = "ppo"
        description = "PPO with wider networks"
        [variants.ppo-wide.hparams]
        policy_hidden = [128, 128]
        clip_range = [0.1, 0.3]
    """,
    )
    groups = by_label(load_suite(path))
    assert set(groups) == {"ppo", "ppo-m", "ppo-wide[clip_range=0.1]", "ppo-wide[clip_range=0.3]"}
    minimal = groups["ppo-m"][0]
    assert minimal.spec.algorithm == "ppo"
    assert (minimal.config.normalize_obs, minimal.config.init, minimal.config.policy_max_grad_norm) == (
        False,
        "default",
        0.0,
    )
    wide = groups["ppo-wide[clip_range=0.3]"][0]
    assert wide.config.policy_hidden == (128, 128) and wide.config.clip_range == 0.3
    assert groups["ppo"][0].config.policy_hidden == (64, 64)


def test_list_valued_settings_are_values_and_lists_of_lists_are_axes(tmp_path):
    path = write_suite(
        tmp_path,
        """
        steps = 512
        seeds = [0]
        envs = ["InvertedPendulum-v5"]
        algos = ["vpg", "npg"]
        [hparams.vpg]
        policy_hidden = [32, 32]
        [hparams.npg]
        value_hidden = [[16], [32, 32]]
    """,
    )
    groups = by_label(load_suite(path))
    assert groups["vpg"][0].config.policy_hidden == (32, 32)
    assert {run.config.value_hidden for label in groups if label.startswith("npg") for run in groups[label]} == {
        (16,),
        (32, 32),
    }
    assert "npg[value_hidden=32x32]" in groups


BASE = """
name = "ids"
steps = 1024
seeds = [0, 1]
envs = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5"]
algos = ["trpo", "ppo"]
[hparams.all]
gamma = 0.99
[hparams.trpo]
max_kl = 0.01
"""


def ids_by_arm(path: Path) -> dict[tuple[str, str, int], str]:
    return {(run.spec.arm, run.spec.env_id, run.spec.seed): run.run_id for run in load_suite(path).runs}


def test_run_ids_are_stable_and_change_only_where_settings_change(tmp_path):
    base = ids_by_arm(write_suite(tmp_path, BASE, "a.toml"))
    assert ids_by_arm(write_suite(tmp_path, BASE, "b.toml")) == base

    changed = ids_by_arm(write_suite(tmp_path, BASE.replace("max_kl = 0.01", "max_kl = 0.02"), "c.toml"))
    for key, run_id in base.items():
        assert (changed[key] != run_id) == (key[0] == "trpo"), key

    shared = ids_by_arm(write_suite(tmp_path, BASE.replace("gamma = 0.99", "gamma = 0.98"), "d.toml"))
    assert all(shared[key] != run_id for key, run_id in base.items())

    per_env = BASE + "[env.InvertedDoublePendulum-v5]\nsteps = 2048\n"
    env_changed = ids_by_arm(write_suite(tmp_path, per_env, "e.toml"))
    for key, run_id in base.items():
        assert (env_changed[key] != run_id) == (key[1] == "InvertedDoublePendulum-v5"), key

    # a setting written explicitly at its default value is the same run
    explicit = ids_by_arm(
        write_suite(tmp_path, BASE.replace("gamma = 0.99", "gamma = 0.99\ngae_lambda = 0.95"), "f.toml")
    )
    assert explicit == base

    more_seeds = ids_by_arm(write_suite(tmp_path, BASE.replace("seeds = [0, 1]", "seeds = 3"), "g.toml"))
    assert {k: v for k, v in more_seeds.items() if k[2] < 2} == base


def test_adding_a_value_to_an_axis_keeps_the_ids_of_the_existing_points(tmp_path):
    one = BASE.replace("max_kl = 0.01", "max_kl = [0.01]")
    two = BASE.replace("max_kl = 0.01", "max_kl = [0.01, 0.03]")
    before = ids_by_arm(write_suite(tmp_path, one, "one.toml"))
    after = ids_by_arm(write_suite(tmp_path, two, "two.toml"))
    assert set(before.items()) <= set(after.items())
    assert len(after) == len(before) + 4


def test_manifest_lists_every_run_with_its_identity(tmp_path):
    suite = load_suite(write_suite(tmp_path, BASE + TINY.replace("[hparams.all]", "")))
    manifest = suite.manifest()
    assert manifest["suite"] == "ids"
    assert [entry["run_id"] for entry in manifest["runs"]] == [run.run_id for run in suite.runs]
    entry = manifest["runs"][0]
    assert set(entry) == {"run_id", "algo", "algorithm", "env_id", "seed", "steps", "overrides"}
    assert entry["overrides"]["steps_per_iteration"] == 256


def test_shipped_suites_load(request):
    suites_dir = Path(request.config.rootpath) / "suites"
    quickstart = load_suite(suites_dir / "quickstart.toml")
    assert {run.spec.env_id for run in quickstart.runs} == {"InvertedPendulum-v5"}
    assert {run.spec.algorithm for run in quickstart.runs} == {"trpo", "npg", "vpg", "ppo"}
    mujoco = load_suite(suites_dir / "mujoco.toml")
    assert len(mujoco.runs) == 4 * 5 * 10
    assert {run.spec.steps for run in mujoco.runs} == {1_000_000}
    assert {run.spec.env_id for run in mujoco.runs} == {
        "Hopper-v5",
        "HalfCheetah-v5",
        "Walker2d-v5",
        "Swimmer-v5",
        "Ant-v5",
    }


def test_the_trust_region_suites_hold_every_registered_method(request):
    suites_dir = Path(request.config.rootpath) / "suites"
    family = load_suite(suites_dir / "trust_region_family.toml")
    assert {run.spec.algorithm for run in family.runs} == set(BUILTIN)
    assert {run.spec.env_id for run in family.runs} == {"Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"}
    assert {run.spec.steps for run in family.runs} == {1_000_000} and {run.spec.seed for run in family.runs} == set(
        range(5)
    )
    sweep = load_suite(suites_dir / "trust_region_sensitivity.toml")
    assert {run.spec.algorithm for run in sweep.runs} == set(BUILTIN) - {"vpg"}  # VPG has no radius
    for run in family.runs:
        if run.spec.arm == "vpg" or run.spec.seed or run.spec.env_id != "Hopper-v5":
            continue
        record = run.config.trust_region_record()
        # a grid axis names its arms <arm>[<setting>=<value>]
        runs = [r for r in sweep.runs if r.spec.arm.startswith(f"{run.spec.arm}[{record['setting']}=")]
        ratios = sorted({run.config.trust_region_record()["radius"] / record["default"] for run in runs})
        # five log-spaced values, a quarter to four times the default
        assert ratios == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0]), run.spec.arm
        assert {run.spec.seed for run in runs} == {0, 1, 2}


@pytest.mark.parametrize("name", sorted(builtin_variants()))
def test_builtin_variants_resolve(tmp_path, name):
    path = write_suite(
        tmp_path,
        f"""
        steps = 512
        seeds = [0]
        envs = ["InvertedPendulum-v5"]
        algos = ["{name}"]
    """,
    )
    (run,) = load_suite(path).runs
    variant = builtin_variants()[name]
    assert run.spec.arm == name and run.spec.algorithm == variant.algorithm
    for key, setting in variant.settings.items():
        assert getattr(run.config, key) == setting.values[0]
