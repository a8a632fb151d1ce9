"""`trbench tune` input checking: bad search spaces and settings are one line, exit 2, nothing written."""

import argparse

import pytest

from trbench.algos.config import TRPOConfig
from trbench.algos.registry import resolve_algorithm
from trbench.base.errors import UsageError
from trbench.cli import main
from trbench.tune.settings import build_settings
from trbench.tune.space import DEFAULT_SPACE_TEXT, parse_param, parse_space


def run_tune(tmp_path, *extra):
    out = tmp_path / "tune"
    code = main(["tune", "--env", "InvertedPendulum-v5", "--trials", "2", "--steps", "1024", "--out", str(out), *extra])
    return code, out


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("max_kl=0.1:0.01", "max_kl=0.1:0.01: low must be < high, got low=0.1 >= high=0.01"),
        ("max_kl=0.01:0.01", "low must be < high"),
        ("max_lk=0.001:0.1", "unknown setting 'max_lk' for TRPOConfig; allowed: "),
        ("damping=0:1:log", "damping=0:1:log: a log range needs low > 0, got low=0"),
        ("damping=-1:1:log", "a log range needs low > 0"),
        ("max_kl=0.001", "expected name=low:high or name=low:high:log"),
        ("max_kl=0.001:0.1:lg", "expected name=low:high or name=low:high:log"),
        ("=0.001:0.1", "expected name=low:high"),
        ("max_kl=a:0.1", "low 'a' is not a number"),
        ("max_kl=0:0.1", "max_kl=0:0.1: bound 0 is not allowed: must be > 0"),
        ("gae_lambda=0.5:1.5", "gae_lambda=0.5:1.5: bound 1.5 is not allowed: must be >= 0 and <= 1"),
        ("activation=1:2", "activation is not a numeric setting"),
        ("cg_iters=1.5:10", "cg_iters is an integer setting"),
    ],
)
def test_bad_search_space_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, param, expected):
    code, out = run_tune(tmp_path, "--param", param)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trbench: error: --param ")
    assert expected in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--param", "max_kl=1e-3:1e-1:log", "--param", "max_kl=1e-2:1e-1"], "max_kl: given more than once"),
        (["--set", "max_kl=0.01"], "--set max_kl: also searched by --param"),
        (["--algo", "vpg"], "VPGConfig has no trust-region radius and no max_kl or damping, so there is no default"),
        (["--env", "InvertedPendulum-v5", "--env", "Pendulum-v1"], "--env Pendulum-v1: no normalisation constants"),
        (["--set", "num_envs=3"], "steps_per_iteration: must be a multiple of num_envs=3"),
        (["--storage", "not-a-url"], "--storage: 'not-a-url' is not a storage URL"),
        (
            ["--heartbeat-interval", "10", "--heartbeat-grace", "10"],
            "--heartbeat-grace: must be > --heartbeat-interval",
        ),
    ],
)
def test_bad_settings_exit_2_and_write_nothing(tmp_path, capsys, extra, expected):
    out = tmp_path / "tune"
    argv = ["tune", "--trials", "2", "--steps", "1024", "--out", str(out), *extra]
    if "--env" not in extra:
        argv += ["--env", "InvertedPendulum-v5"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert expected in err
    assert not out.exists()


def test_default_space_is_log_uniform_max_kl_and_damping():
    space = parse_space([], TRPOConfig)
    assert [(p.name, p.low, p.high, p.log) for p in space] == [
        ("max_kl", 1e-3, 1e-1, True),
        ("damping", 1e-4, 1.0, True),
    ]
    assert len(DEFAULT_SPACE_TEXT) == 2


def test_a_method_without_max_kl_and_damping_searches_its_radius_by_default():
    # two decades around each registered method's default radius, log-uniform
    expected = {
        "ppo": ("clip_range", 0.02, 2.0),
        "ppo_kl": ("kl_target", 0.001, 0.1),
        "spo": ("ratio_epsilon", 0.02, 2.0),
        "truly_ppo": ("kl_trigger", 0.003, 0.3),
        "mdpo": ("step_size_init", 0.1, 10.0),
        "trpl": ("mean_bound", 0.003, 0.3),
        "acktr": ("max_kl", 0.0005, 0.05),  # its damping is K-FAC's, not TRPO's
    }
    for name, (setting, low, high) in expected.items():
        config_cls = resolve_algorithm(name).Config
        assert config_cls.radius is not None and config_cls.radius.setting == setting
        (param,) = parse_space([], config_cls)
        assert (param.name, param.log, param.integer) == (setting, True, False)
        assert param.low == pytest.approx(low, rel=1e-12) and param.high == pytest.approx(high, rel=1e-12)
    assert [p.name for p in parse_space([], resolve_algorithm("npg").Config)] == ["max_kl", "damping"]


def test_integer_settings_are_sampled_as_integers():
    param = parse_param("cg_iters=5:20", TRPOConfig)
    assert param.integer and (param.low, param.high) == (5, 20)
    assert type(param.distribution()).__name__ == "IntDistribution"


def _args(**overrides):
    defaults = dict(
        algo=None,
        envs=[],
        trials=None,
        seeds=None,
        steps=None,
        params=[],
        overrides=[],
        suite=None,
        storage=None,
        study_name=None,
        workers=1,
        pruner="patient",
        pruner_startup_trials=5,
        pruner_warmup_steps=None,
        patience=2,
        sampler="tpe",
        sampler_startup_trials=10,
        sampler_seed=None,
        out=None,
        reevaluate=0,
        top_k=3,
        heartbeat_interval=30,
        heartbeat_grace=120,
    )
    defaults.update(overrides)
    return argparse.Namespace(**defaults)


SUITE_WITH_TUNE = """
name = "pendulum"
steps = 4096
seeds = 5
envs = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5"]
algos = ["trpo", "ppo"]

[hparams.all]
eval_interval_steps = 0

[hparams.trpo]
cg_iters = 15

[env.InvertedDoublePendulum-v5.hparams.trpo]
gae_lambda = 0.97

[tune]
algo = "trpo"
trials = 7
seeds = 2
params = ["max_kl=1e-3:1e-1:log", "gae_lambda=0.9:0.99"]
"""


def test_suite_tune_section_gives_space_budget_and_fixed_settings(tmp_path):
    suite = tmp_path / "pendulum.toml"
    suite.write_text(SUITE_WITH_TUNE)
    settings = build_settings(_args(suite=suite, out=tmp_path / "out"))
    assert settings.algorithm == "trpo" and settings.trials == 7 and settings.seeds == 2 and settings.steps == 4096
    assert settings.envs == ("InvertedPendulum-v5", "InvertedDoublePendulum-v5")
    assert [p.text for p in settings.space] == ["max_kl=0.001:0.1:log", "gae_lambda=0.9:0.99"]
    assert settings.fixed == {"eval_interval_steps": 0, "cg_iters": 15}
    assert settings.env_fixed == {"InvertedDoublePendulum-v5": {"gae_lambda": 0.97}}
    # a tuned setting wins over the suite's fixed value for that env
    assert settings.overrides("InvertedDoublePendulum-v5", {"gae_lambda": 0.91})["gae_lambda"] == 0.91
    # the command line wins over the file
    settings = build_settings(_args(suite=suite, out=tmp_path / "out", trials=3, envs=["InvertedPendulum-v5"]))
    assert settings.trials == 3 and settings.envs == ("InvertedPendulum-v5",)


def test_suite_tune_section_errors_name_the_file_and_key(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE_WITH_TUNE.replace('algo = "trpo"\n', "").replace("cg_iters = 15", "cg_iters = [10, 15]"))
    with pytest.raises(UsageError, match=r"bad\.toml: tune\.algo: the suite lists 2 arms"):
        build_settings(_args(suite=suite))
    with pytest.raises(UsageError, match="a grid axis .* cannot be tuned"):
        build_settings(_args(suite=suite, algo="trpo"))
    suite.write_text(SUITE_WITH_TUNE.replace("trials = 7", "trails = 7"))
    with pytest.raises(UsageError, match=r"tune\.trails: unknown key; allowed here: algo, trials, seeds, params"):
        build_settings(_args(suite=suite))
