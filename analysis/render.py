"""A tiny document model rendered to Markdown, self-contained HTML and LaTeX booktabs tables.

The report is built once as a list of sections; each renderer walks the same list, so the
Markdown and HTML versions cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

Formatter = Callable[[Any], str]


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: Sequence[str]


@dataclass(frozen=True)
class Preformatted:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    formats: Mapping[str, Formatter] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    relative_png: str  # relative to the report folder
    caption: str


Block = Paragraph | BulletList | Preformatted | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def format_number(value: object, digits: int = 4) -> str:
    """Plain, compact numbers: '' for missing values, general format otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    try:
        number = float(value)  # type: ignore[arg-type]  # numpy scalars; anything else raises
    except (TypeError, ValueError):
        return str(value)
    if float(number).is_integer() and "int" in type(value).__name__:
        return str(int(number))
    return format_number(number, digits)


def p_value(value: object) -> str:
    return format_number(value, 3)


def _cells(table: Table) -> list[list[str]]:
    rows = []
    for record in table.frame.itertuples(index=False, name=None):
        row = []
        for column, value in zip(table.frame.columns, record):
            formatter = table.formats.get(column, format_number)
            row.append(formatter(value))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Markdown


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    header = [str(column) for column in table.frame.columns]
    lines = [
        "| " + " | ".join(_markdown_escape(cell) for cell in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_markdown_escape(c) for c in row) + " |" for row in _cells(table)]
    if table.caption:
        lines = [f"*{table.caption}*", ""] + lines
    return "\n".join(lines)


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(block.text)
            elif isinstance(block, BulletList):
                parts.append("\n".join(f"- {item}" for item in block.items))
            elif isinstance(block, Preformatted):
                parts.append("```\n" + block.text.rstrip("\n") + "\n```")
            elif isinstance(block, Table):
                parts.append(markdown_table(block))
            elif isinstance(block, Figure):
                parts.append(f"![{block.caption}]({block.relative_png})\n\n*{block.caption}*")
            parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# HTML

_HTML_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 72em;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { padding: 0.25em 0.7em; text-align: right; }
th { border-bottom: 1.5px solid #222; } tr:last-child td { border-bottom: 1.5px solid #222; }
thead tr th { border-top: 1.5px solid #222; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; font-size: 0.9em; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in _cells(table))
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(title: str, sections: Sequence[Section], report_dir: Path) -> str:
    """One self-contained page: figures are embedded as base64 PNG read from ``report_dir``."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_HTML_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Paragraph):
                parts.append(f"<p>{html.escape(block.text)}</p>")
            elif isinstance(block, BulletList):
                items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
                parts.append(f"<ul>{items}</ul>")
            elif isinstance(block, Preformatted):
                parts.append(f"<pre>{html.escape(block.text)}</pre>")
            elif isinstance(block, Table):
                parts.append(html_table(block))
            elif isinstance(block, Figure):
                encoded = base64.b64encode((report_dir / block.relative_png).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(block.caption)}" '
                    f'src="data:image/png;base64,{encoded}">'
                    f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# LaTeX

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


def latex_booktabs(table: Table, label: str, text_columns: int = 1) -> str:
    """A ``table`` float with a booktabs tabular: the first ``text_columns`` columns are
    left-aligned, the others right-aligned. Needs ``\\usepackage{booktabs}``."""
    n_columns = len(table.frame.columns)
    alignment = "l" * min(text_columns, n_columns) + "r" * max(n_columns - text_columns, 0)
    header = " & ".join(latex_escape(str(column)) for column in table.frame.columns) + r" \\"
    body = [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in _cells(table)]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
    ]
    if table.caption:
        lines.append(r"\caption{" + latex_escape(table.caption) + "}")
    lines += [
        r"\label{" + label + "}",
        r"\begin{tabular}{" + alignment + "}",
        r"\toprule",
        header,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
