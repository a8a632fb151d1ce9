"""The report: the table as markdown, and bench.csv, bench.md and bench.json in the output folder."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict
from pathlib import Path

from trbench.base.files import atomic_write_json, atomic_write_text
from trbench.suites.execute import provenance

from .settings import SECTIONS, BenchReport


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "steps/s" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if unit != "s" else f"{value:.4f}"


def markdown(report: BenchReport) -> str:
    s = report.settings
    lines = [
        "# trbench bench",
        "",
        f"{s.num_envs} envs, {s.steps_per_iteration} steps per iteration, networks "
        f"{'x'.join(map(str, s.hidden))}, device {s.device}, {s.torch_threads} torch thread(s), "
        f"env backend {s.env_backend}, acting backend {s.acting_backend}, median of {s.repeats} rounds (ratio range in the range column); load average "
        f"{report.samples.get('load_average_before')} before, {report.samples.get('load_average_after')} after "
        f"on {os.cpu_count()} cores.",
        "",
    ]
    titles = {
        "throughput": "Throughput (ratio to raw stepping in the same round)",
        "trpo_update": "TRPO update split (ratio = share of the whole update)",
        "update": "TRPO update by device (ratio = share of the whole update)",
        "lockstep": "Seeds in lockstep: one worker, all its seeds together (ratio to raw stepping in the same round)",
        "lockstep_memory": "Memory of one worker against the seeds it trains in lockstep",
        "lockstep_update": "The lockstep TRPO update of S members by device (synthetic batches)",
        "grid": "Suite runner (ratio to one worker)",
        "memory": "Memory of one worker",
        "checkpoint": "Checkpoints (ratio to one training iteration)",
    }
    for section in SECTIONS:
        rows = [r for r in report.rows if r.section == section]
        if not rows:
            continue
        lines += [
            f"## {titles[section]}",
            "",
            "| env / device | measure | value | unit | ratio | range | ratio (CPU time) | note |",
            "|---|---|---:|---|---:|---|---:|---|",
        ]
        for r in rows:
            spread = f"{r.ratio_min:.2f}-{r.ratio_max:.2f}" if r.ratio_min is not None else ""
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
            ratio_cpu = f"{r.ratio_cpu:.2f}" if r.ratio_cpu is not None else ""
            lines.append(
                f"| {r.env} | {r.measure} | {_fmt(r.value, r.unit)} | {r.unit} | {ratio} | {spread} "
                f"| {ratio_cpu} | {r.note} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_report(report: BenchReport, out: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(report.rows[0]).keys()) if report.rows else ["section"])
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    atomic_write_text(out / "bench.csv", buffer.getvalue())
    atomic_write_text(out / "bench.md", markdown(report) + "\n")
    atomic_write_json(
        out / "bench.json",
        {
            "settings": asdict(report.settings),
            "rows": [asdict(r) for r in report.rows],
            "samples": report.samples,
            **provenance(report.settings.env_backend),
        },
    )
