"""Bad input to `trbench run` stops before anything runs: exit code 2, one line on stderr naming
the file, the key and what is allowed, and nothing written."""

from __future__ import annotations

import json
import textwrap

import pytest

from trbench.cli import main

VALID = """
name = "bad"
steps = 512
seeds = [0, 1]
envs = ["InvertedPendulum-v5"]
algos = ["trpo", "ppo"]

[hparams.trpo]
max_kl = 0.01
"""


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


CASES = {
    "malformed TOML": (VALID + "\nmax_kl = = 3\n", ["malformed TOML", "line"]),
    "not UTF-8": (None, ["malformed TOML", "UTF-8"]),
    "unknown top-level key": (
        VALID.replace('name = "bad"', 'name = "bad"\nseed = 3'),
        ["seed: unknown key", "allowed here: name"],
    ),
    "unknown hyperparameter": (
        edit("max_kl = 0.01", "max_kll = 0.01"),
        ["hparams.trpo.max_kll: unknown setting for trpo", "max_kl"],
    ),
    "hyperparameter no arm has": (
        VALID + "[hparams.all]\nclip_rang = 0.2\n",
        ["hparams.all.clip_rang: unknown setting", "clip_range"],
    ),
    "env the chosen backend lacks": (
        edit('envs = ["InvertedPendulum-v5"]', 'envs = ["Pendulum-v1"]') + '[hparams.all]\nenv_backend = "envpool"\n',
        ["env_backend = 'envpool', env Pendulum-v1", "envpool"],
    ),
    "unknown env backend": (VALID + '[hparams.all]\nenv_backend = "brax"\n', ["env_backend", "gymnasium, envpool"]),
    "unknown algorithm": (
        edit('"ppo"]', '"ppo", "sac"]'),
        ["algos[2]: unknown algorithm or variant 'sac'", "trpo", "trpo+", "module:Class"],
    ),
    "unknown variant base": (
        VALID + '[variants.mine]\nalgo = "trpp"\n',
        ["variants.mine.algo: unknown algorithm or variant 'trpp'"],
    ),
    "variant of a variant": (VALID + '[variants.mine]\nalgo = "trpo+"\n', ["variants.mine.algo: 'trpo+' is a variant"]),
    "redefined built-in variant": (
        VALID + '[variants."trpo+"]\nalgo = "trpo"\n',
        ["variants.trpo+: 'trpo+' is a built-in variant"],
    ),
    "import path that does not import": (
        edit('"ppo"]', '"ppo", "no_such_module:Algo"]'),
        ["algos[2]: cannot import 'no_such_module'"],
    ),
    "unknown env": (
        edit('["InvertedPendulum-v5"]', '["InvertedPendulum-v5", "Hoper-v5"]'),
        ["envs[1]: unknown gymnasium env id 'Hoper-v5'", "Hopper-v5"],
    ),
    "env without Box actions": (
        edit('["InvertedPendulum-v5"]', '["CartPole-v1"]'),
        ["envs[0]:", "Discrete action space", "only Box"],
    ),
    "env table for an env not in envs": (
        VALID + "[env.Hopper-v5]\nsteps = 10\n",
        ["env.Hopper-v5: not one of envs", "InvertedPendulum-v5"],
    ),
    "unknown key in env table": (
        VALID + "[env.InvertedPendulum-v5]\nseeds = 3\n",
        ["env.InvertedPendulum-v5.seeds: unknown key", "steps, hparams"],
    ),
    "hparams for an arm not in algos": (
        VALID + "[hparams.npg]\nmax_kl = 0.02\n",
        ["hparams.npg: no arm 'npg' in algos", "all, trpo, ppo"],
    ),
    "steps of the wrong type": (edit("steps = 512", 'steps = "many"'), ["steps: must be an integer >= 1", "'many'"]),
    "per-env steps of the wrong type": (
        VALID + "[env.InvertedPendulum-v5]\nsteps = -5\n",
        ["env.InvertedPendulum-v5.steps: must be an integer >= 1"],
    ),
    "seeds of the wrong type": (edit("seeds = [0, 1]", 'seeds = "0-9"'), ["seeds: must be a list"]),
    "negative seed": (edit("seeds = [0, 1]", "seeds = [0, -1]"), ["seeds[1]: must be an integer >= 0"]),
    "envs not a list": (
        edit('envs = ["InvertedPendulum-v5"]', 'envs = "InvertedPendulum-v5"'),
        ["envs: must be a list of gymnasium env ids"],
    ),
    "hyperparameter of the wrong type": (
        edit("max_kl = 0.01", 'max_kl = "large"'),
        ["hparams.trpo.max_kl: expected a number, got 'large'"],
    ),
    "hyperparameter out of range": (edit("max_kl = 0.01", "max_kl = -1"), ["hparams.trpo.max_kl: must be > 0, got -1"]),
    "out of range inside an axis": (
        edit("max_kl = 0.01", "max_kl = [0.01, 0]"),
        ["hparams.trpo.max_kl: must be > 0, got 0"],
    ),
    "hyperparameter as a table": (
        edit("max_kl = 0.01", "max_kl = { value = 0.01 }"),
        ["hparams.trpo.max_kl: must be a value or a list of values"],
    ),
    "cross-field check": (
        VALID + "[hparams.all]\nnum_envs = 3\n",
        ["steps_per_iteration: must be a multiple of num_envs=3"],
    ),
    "empty envs": (edit('envs = ["InvertedPendulum-v5"]', "envs = []"), ["envs: is empty, so the grid is empty"]),
    "empty algos": (edit('algos = ["trpo", "ppo"]', "algos = []"), ["algos: is empty, so the grid is empty"]),
    "empty seeds": (edit("seeds = [0, 1]", "seeds = []"), ["seeds: is empty, so the grid is empty"]),
    "zero seed count": (edit("seeds = [0, 1]", "seeds = 0"), ["seeds: a count must be >= 1"]),
    "empty axis": (edit("max_kl = 0.01", "max_kl = []"), ["hparams.trpo.max_kl: is an empty list"]),
    "duplicate seeds": (edit("seeds = [0, 1]", "seeds = [0, 1, 0]"), ["seeds[2]: duplicate seed 0"]),
    "duplicate envs": (
        edit('envs = ["InvertedPendulum-v5"]', 'envs = ["InvertedPendulum-v5", "InvertedPendulum-v5"]'),
        ["envs[1]: duplicate entry"],
    ),
    "duplicate algos": (
        edit('algos = ["trpo", "ppo"]', 'algos = ["trpo", "ppo", "trpo"]'),
        ["algos[2]: duplicate entry 'trpo'"],
    ),
    "duplicate axis value": (
        edit("max_kl = 0.01", "max_kl = [0.01, 0.02, 0.01]"),
        ["hparams.trpo.max_kl[2]: duplicate value 0.01"],
    ),
    "missing envs": (edit('envs = ["InvertedPendulum-v5"]', ""), ["envs: missing"]),
    "missing steps": (edit("steps = 512", ""), ["steps: missing"]),
    "bad name": (edit('name = "bad"', 'name = "../elsewhere"'), ["name: must be letters"]),
}


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_suite_exits_2_with_one_line_naming_file_and_key(tmp_path, monkeypatch, capsys, case):
    text, expected = CASES[case]
    suite = tmp_path / "suites" / "bad.toml"
    suite.parent.mkdir()
    if text is None:
        suite.write_bytes(VALID.encode() + b'\ndescription = "\xff\xfe"\n')
    else:
        suite.write_text(textwrap.dedent(text))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", "suites/bad.toml", "--workers", "1"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trbench: error: suites/bad.toml: "), err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert out == ""
    assert not (tmp_path / "results").exists()


def test_the_valid_base_suite_passes_the_dry_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "ok.toml").write_text(VALID)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", "ok.toml", "--dry-run"], capsys)
    assert code == 0 and err == ""
    assert "4 runs" in out


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--workers", "0"], "--workers: must be >= 1, got 0"),
        (["--address", "auto"], "--address: only used with --executor ray"),
        (["--executor", "ray", "--address", "ray://head:10001"], "Ray Client (ray://) cannot stream"),
    ],
)
def test_bad_options_exit_2_before_anything_is_written(tmp_path, monkeypatch, capsys, extra, expected):
    (tmp_path / "ok.toml").write_text(VALID)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", "ok.toml", *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "results").exists()


def test_missing_suite_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["run", "suites/none.toml"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "suites/none.toml: cannot read suite file" in err


def test_results_folder_of_another_suite_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "ok.toml").write_text(VALID)
    out = tmp_path / "results" / "bad"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"suite": "other", "runs": []}))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["run", "ok.toml"], capsys)
    assert code == 2 and "holds the results of suite 'other'" in err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_non_empty_folder_without_manifest_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "ok.toml").write_text(VALID)
    (tmp_path / "notes.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["run", "ok.toml", "--out", "."], capsys)
    assert code == 2 and "is not empty and holds no suite results" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "ok.toml"]


def test_ray_executor_without_ray_is_a_usage_error(tmp_path, monkeypatch, capsys):
    import trbench.suites.runner as runner

    monkeypatch.setattr(runner, "ray_available", lambda: False)
    (tmp_path / "ok.toml").write_text(VALID)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["run", "ok.toml", "--executor", "ray"], capsys)
    assert code == 2 and "ray is not installed" in err and "trbench[ray]" in err
    assert not (tmp_path / "results").exists()
