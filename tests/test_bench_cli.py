"""`trbench bench`: bad input, the tables it writes, and the CUDA update path (skipped without CUDA)."""

from __future__ import annotations

import csv

import pytest
import torch

from trbench.cli import main

TINY = [
    "--env",
    "InvertedPendulum-v5",
    "--num-envs",
    "2",
    "--steps-per-iteration",
    "64",
    "--repeats",
    "2",
    "--warmup",
    "0",
    "--hidden",
    "8,8",
]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--num-envs", "0"], "--num-envs"),
        (["--num-envs", "3", "--steps-per-iteration", "64"], "--steps-per-iteration"),
        (["--repeats", "0"], "--repeats"),
        (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env", "CartPole-v1"], "Discrete"),
        (["--hidden", "0"], "--hidden"),
        (["--grid", "--grid-workers", "1"], "--grid-workers"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, expected):
    out = tmp_path / "bench"
    assert main(["bench", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    assert main(["bench", "--device", "cuda", "--update-only", "--out", str(tmp_path / "b")]) == 2
    assert "CUDA" in capsys.readouterr().err


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_bench_writes_ratios_to_raw_stepping_and_the_trpo_split(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--algo", "trpo", "--algo", "vpg", "--out", str(out)]) == 0
    rows = _rows(out / "bench.csv")
    measures = {(r["section"], r["measure"]) for r in rows}
    assert ("throughput", "raw stepping (random actions)") in measures
    assert ("throughput", "raw stepping (trbench's stepping)") in measures
    for algo in ("trpo", "vpg"):
        assert ("throughput", f"end-to-end {algo}") in measures
        assert ("throughput", f"rollout phase ({algo} policy)") in measures
        assert ("throughput", f"env stepping inside the rollout ({algo} policy)") in measures
        assert ("throughput", f"rollout work besides env stepping ({algo} policy)") in measures
    assert not any("npg" in m for _, m in measures)
    for phase in (
        "gradient_and_kl_graph",
        "fvp",
        "cg_algebra",
        "linesearch (sequential)",
        "linesearch (batched)",
        "critic",
        "update_total",
    ):
        assert ("trpo_update", phase) in measures
    for r in rows:
        if r["section"] == "throughput" and r["unit"] == "us per vector step":
            assert float(r["value"]) > 0 and r["ratio"] == "" and r["repeats"] == "2"
        elif r["section"] == "throughput":
            assert float(r["value"]) > 0 and float(r["ratio"]) > 0 and float(r["ratio_cpu"]) > 0
            # each algorithm has its own rounds, and the reference is measured once more than they
            # are (before the first and after each); the table pools both algorithms' reference
            # and backend samples
            expected = {
                "raw stepping (random actions)": "6",
                "raw stepping (trbench's stepping)": "4",
                "rollout phase (all policies)": "4",
            }
            assert r["repeats"] == expected.get(r["measure"], "2")
        if r["section"] == "trpo_update" and r["measure"] == "update_total":
            assert float(r["ratio"]) == 1.0
    value = {r["measure"]: float(r["value"]) for r in rows if r["section"] == "throughput"}
    for algo in ("trpo", "vpg"):  # env stepping is part of the rollout, so it is faster than the whole
        assert value[f"env stepping inside the rollout ({algo} policy)"] > value[f"rollout phase ({algo} policy)"]
    pooled = next(r for r in rows if r["measure"] == "rollout phase (all policies)")
    per_policy = [
        float(r["ratio"]) for r in rows if r["measure"] in ("rollout phase (trpo policy)", "rollout phase (vpg policy)")
    ]
    assert min(per_policy) <= float(pooled["ratio"]) <= max(per_policy)
    assert "95% bootstrap CI of the median ratio" in pooled["note"]
    text = (out / "bench.md").read_text()
    assert "| InvertedPendulum-v5 | end-to-end trpo |" in text and "ratio (CPU time)" in text
    assert "end-to-end vpg" in capsys.readouterr().out
    assert (out / "bench.json").exists()


@pytest.mark.slow
def test_checkpoint_mode_times_a_write_against_an_iteration_of_the_same_run(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--algo", "trpo", "--checkpoint", "--out", str(out)]) == 0
    rows = {r["measure"]: r for r in _rows(out / "bench.csv") if r["section"] == "checkpoint"}
    write, size = rows["checkpoint write"], rows["checkpoint size"]
    (share,) = (r for m, r in rows.items() if m.startswith("share of run time at checkpoint_interval_steps="))
    assert write["repeats"] == size["repeats"] == share["repeats"] == "2"  # the warm-up round is not counted
    assert float(write["value"]) > 0 and float(write["ratio"]) > 0 and float(size["value"]) > 0
    # a write per 50,000 steps of 64-step iterations: its share is the write's ratio over ~780 iterations
    assert 0 < float(share["value"]) < 100 * float(write["ratio_max"]) / 700


@pytest.mark.slow
def test_update_only_times_the_cpu_update(tmp_path):
    out = tmp_path / "bench"
    assert (
        main(
            ["bench", "--update-only", "--update-batch", "300", "--hidden", "8,8", "--repeats", "1", "--out", str(out)]
        )
        == 0
    )
    rows = _rows(out / "bench.csv")
    assert {r["env"] for r in rows} == {"cpu"}
    assert {"fvp", "critic", "update_total", "linesearch (batched)"} <= {r["measure"] for r in rows}


def _update_pieces(device_name: str):
    from trbench.algos import trust_region as tr
    from trbench.bench import BenchSettings, synthetic_trpo

    device = torch.device(device_name)
    algorithm, batch = synthetic_trpo(4096, BenchSettings(hidden=(64, 64)), device)
    cfg = algorithm.config
    params = list(algorithm.policy.parameters())
    objectives = algorithm.objectives(batch)
    surrogate, surrogate_and_kl = objectives.surrogate, objectives.surrogate_and_kl
    mean_old, log_std_old = objectives.mean_old, objectives.log_std_old
    gradient = tr.flat_gradient(surrogate(), params, retain_graph=False)
    fvp = tr.FisherVectorProduct(algorithm.mean_kl_from(batch.obs, mean_old, log_std_old), params, cfg.damping)
    return tr, cfg, params, gradient, fvp, surrogate, surrogate_and_kl


def test_cg_and_batched_line_search_never_read_a_value_back():
    """On the meta device tensors have shapes but no values, so any read inside CG or the batched
    line search (``.item()``, ``float()``, ``bool()``, a Python ``if`` on a tensor) raises: the CPU
    check, run everywhere, of what the CUDA test below checks with the sync debug mode."""
    tr, cfg, params, gradient, fvp, surrogate, surrogate_and_kl = _update_pieces("meta")
    before = surrogate().detach()
    cg = tr.conjugate_gradient(fvp, gradient, cfg.cg_iters, cfg.cg_tol)
    beta, _, valid = tr.trust_region_step_size(cg.solution, fvp(cg.solution), cfg.max_kl)
    full_step = torch.where(valid, beta * cg.solution, torch.zeros_like(cg.solution))
    result = tr.batched_line_search(
        params,
        full_step,
        surrogate_and_kl,
        before,
        torch.dot(gradient, full_step),
        cfg.max_kl,
        cfg.backtrack_coeff,
        cfg.backtrack_iters,
        cfg.accept_ratio,
    )
    assert result.accepted.device.type == "meta" and cg.iterations.device.type == "meta"
    with pytest.raises(RuntimeError, match="meta"):  # the check can fail: reading is refused
        bool(result.accepted)


@pytest.mark.cuda
def test_cg_and_batched_line_search_never_synchronise_with_the_host():
    tr, cfg, params, gradient, fvp, surrogate, surrogate_and_kl = _update_pieces("cuda")
    before = surrogate().detach()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        cg = tr.conjugate_gradient(fvp, gradient, cfg.cg_iters, cfg.cg_tol)
        beta, _, valid = tr.trust_region_step_size(cg.solution, fvp(cg.solution), cfg.max_kl)
        full_step = torch.where(valid, beta * cg.solution, torch.zeros_like(cg.solution))
        result = tr.batched_line_search(
            params,
            full_step,
            surrogate_and_kl,
            before,
            torch.dot(gradient, full_step),
            cfg.max_kl,
            cfg.backtrack_coeff,
            cfg.backtrack_iters,
            cfg.accept_ratio,
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert result.accepted.device.type == "cuda"


@pytest.mark.cuda
def test_batched_line_search_on_cuda_matches_the_sequential_one():
    tr, cfg, params, gradient, fvp, surrogate, surrogate_and_kl = _update_pieces("cuda")
    step = tr.natural_gradient_step(
        surrogate(), surrogate_and_kl()[1], params, cfg.max_kl, cfg.damping, cfg.cg_iters, cfg.cg_tol
    )
    old = tr.flat_parameters(params).clone()
    sequential = tr.backtracking_line_search(
        params,
        step.full_step,
        surrogate_and_kl,
        float(step.surrogate_before),
        float(step.expected_improvement),
        cfg.max_kl,
        cfg.backtrack_coeff,
        cfg.backtrack_iters,
        cfg.accept_ratio,
    )
    after_sequential = tr.flat_parameters(params).clone()
    tr.assign_flat_parameters(params, old)
    batched = tr.batched_line_search(
        params,
        step.full_step,
        surrogate_and_kl,
        step.surrogate_before,
        step.expected_improvement,
        cfg.max_kl,
        cfg.backtrack_coeff,
        cfg.backtrack_iters,
        cfg.accept_ratio,
    )
    assert bool(batched.accepted) == sequential.accepted and int(batched.backtracks) == sequential.backtracks
    assert torch.equal(tr.flat_parameters(params), after_sequential)


@pytest.mark.cuda
@pytest.mark.slow
def test_update_only_benchmark_runs_on_cuda(tmp_path):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                "--update-only",
                "--device",
                "cuda",
                "--update-batch",
                "2000",
                "--hidden",
                "32,32",
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = _rows(out / "bench.csv")
    assert {"cpu", "cuda:0"} <= {r["env"] for r in rows} or {"cpu", "cuda"} <= {r["env"] for r in rows}
    assert any(r["measure"] == "speed-up of the update over the CPU" for r in rows)


@pytest.mark.slow
def test_grid_mode_runs_the_suite_runner_on_one_and_two_workers(tmp_path):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "bench",
                *TINY,
                "--algo",
                "trpo",
                "--repeats",
                "1",
                "--grid",
                "--grid-runs",
                "2",
                "--grid-steps",
                "64",
                "--grid-repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = {r["measure"]: r for r in _rows(out / "bench.csv") if r["section"] == "grid"}
    assert set(rows) == {"1 worker", "2 workers", "1 worker, per CPU-second", "2 workers, per CPU-second"}
    assert all(float(r["value"]) > 0 for r in rows.values())
    assert float(rows["2 workers"]["ratio"]) > 0


@pytest.mark.slow
def test_envpool_backend_adds_its_raw_stepping_and_trains_on_it(tmp_path):
    pytest.importorskip("envpool")
    import json

    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--algo", "trpo", "--env-backend", "envpool", "--out", str(out)]) == 0
    rows = {r["measure"]: r for r in _rows(out / "bench.csv") if r["section"] == "throughput"}
    assert float(rows["raw stepping (envpool)"]["ratio"]) > 0
    assert rows["raw stepping (envpool)"]["repeats"] == "2"
    assert rows["raw stepping (random actions)"]["note"].startswith("SyncVectorEnv")
    saved = json.loads((out / "bench.json").read_text())
    assert saved["settings"]["env_backend"] == "envpool"
    assert saved["versions"]["envpool"] == "1.2.5"
    assert len(saved["samples"]["throughput/InvertedPendulum-v5/envpool"]["raw"]) == 2


def test_envpool_backend_refuses_a_task_it_does_not_have(tmp_path, capsys):
    pytest.importorskip("envpool")
    assert main(["bench", "--env", "Pendulum-v1", "--env-backend", "envpool", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "env_backend=envpool" in err


def test_median_ci_is_reproducible_and_matches_the_asymptotic_interval_of_the_median():
    import math

    import numpy as np

    from trbench.bench import median_ci

    sample = list(np.random.default_rng(5).normal(size=2000))
    low, high = median_ci(sample)
    assert (low, high) == median_ci(sample)
    assert low < float(np.median(sample)) < high and low < 0.0 < high
    # the median of n standard normals has standard error sqrt(pi / 2) / sqrt(n)
    asymptotic_width = 2 * 1.959964 * math.sqrt(math.pi / 2) / math.sqrt(len(sample))
    assert 0.75 * asymptotic_width < high - low < 1.25 * asymptotic_width
    assert median_ci([0.9]) == (0.9, 0.9) and median_ci([0.9, 0.9, 0.9]) == (0.9, 0.9)


@pytest.mark.slow
def test_bench_lockstep_times_any_built_in_alone_and_packed_with_its_memory(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--algo", "acktr", "--algo", "trpl", "--lockstep", "1,2", "--out", str(out)]) == 0
    rows = {(row["section"], row["measure"]): row for row in _rows(out / "bench.csv")}
    for algo in ("acktr", "trpl"):
        for what in ("alone (the lone trainer)", "1 seed per worker", "2 seeds per worker"):
            row = rows[("lockstep", f"{algo}, {what}")]
            assert float(row["value"]) > 0 and float(row["ratio"]) > 0
        for seeds in ("1 seed", "2 seeds"):
            peak = float(rows[("lockstep_memory", f"{algo}, {seeds} per worker: peak RSS")]["value"])
            held = float(rows[("lockstep_memory", f"{algo}, {seeds} per worker: RSS with the pack")]["value"])
            assert 0 < held <= peak
