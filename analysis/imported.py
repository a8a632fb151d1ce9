"""The report's account of imported runs: which library trained each imported arm, and what its
numbers are in that library's terms (from the source block `trbench import` writes into config.json).

Reads results only, like the rest of the analysis."""

from __future__ import annotations

import pandas as pd

from trbench.analysis.load import MISSING_REASONS, LoadedResults
from trbench.analysis.render import BulletList, Paragraph, Section, Table


def _distinct(values: list[str]) -> str:
    return "; ".join(dict.fromkeys(value for value in values if value)) or "not recorded"


def imported_section(loaded: LoadedResults, metric: str) -> Section | None:
    """None when every run was trained by trbench."""
    if not loaded.sources:
        return None
    runs = loaded.runs.set_index("run_id")
    by_arm: dict[str, list[dict]] = {}
    for run_id, source in loaded.sources.items():
        by_arm.setdefault(str(runs.loc[run_id, "algo"]), []).append(source)
    rows = []
    unknown = []
    for arm, sources in sorted(by_arm.items()):
        meanings = [source.get("meaning") or {} for source in sources]
        rows.append(
            {
                "arm": arm,
                "library": _distinct([str(source.get("library", "")) for source in sources]),
                "version": _distinct([str(source.get("version") or "") for source in sources]),
                "runs": len(sources),
                "final (final_eval_return)": _distinct([meaning.get("final_eval_return", "") for meaning in meanings]),
                "evaluation curve (eval_return)": _distinct([meaning.get("eval_return", "") for meaning in meanings]),
                "training return (train_return)": _distinct([meaning.get("train_return", "") for meaning in meanings]),
            }
        )
        fields = list(dict.fromkeys(item for source in sources for item in source.get("unknown") or []))
        if fields:
            unknown.append(f"{arm}: " + "; ".join(fields))
    imported_ids = set(loaded.sources)
    without = sorted({str(runs.loc[run_id, "algo"]) for run_id in imported_ids if pd.isna(runs.loc[run_id, metric])})
    blocks: list = [
        Paragraph(
            f"{len(imported_ids)} of the complete runs were trained by other libraries and imported with "
            "`trbench import`; each library is an arm of its own. Their numbers are what each library "
            "logged, named below in its own terms, and the same statistics apply to them."
        ),
        Table(pd.DataFrame(rows), "What the numbers of each imported arm are"),
    ]
    if without:
        blocks.append(
            Paragraph(
                f"No '{metric}' score for {', '.join(without)}: their logs have no {MISSING_REASONS[metric][1]} "
                "(the excluded runs below say why). `trbench report --metric last100` compares every arm on the "
                "mean return of its last 100 training episodes."
            )
        )
    if unknown:
        blocks += [Paragraph("Not in the imported logs:"), BulletList(unknown)]
    return Section("Imported runs", blocks)
