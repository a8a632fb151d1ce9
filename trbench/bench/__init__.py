"""`trbench bench`: training throughput as a ratio to raw env stepping, and where the time goes.

Modules by job: :mod:`.settings` (what a benchmark depends on, its rows and their statistics),
:mod:`.throughput` (raw stepping, rollouts, end-to-end iterations), :mod:`.update` (the TRPO
update phase by phase, timed by the update's own phase hook), :mod:`.runs` (the suite runner,
a worker's memory, checkpoints), :mod:`.report` (bench.csv, bench.md, bench.json) and
:mod:`.cli` (the command, which ``trbench.cli`` registers through :func:`add_parser`).
"""

from .cli import add_parser, run_bench, run_command
from .report import markdown, write_report
from .settings import BenchReport, BenchSettings, Row, median_ci
from .update import synthetic_trpo, trpo_update_phases

__all__ = [
    "BenchReport",
    "BenchSettings",
    "Row",
    "add_parser",
    "markdown",
    "median_ci",
    "run_bench",
    "run_command",
    "synthetic_trpo",
    "trpo_update_phases",
    "write_report",
]
