"""Draw trbench's layer graph from the imports of its source files.

    python scripts/module_graph.py            # layer -> layer edges with import counts
    python scripts/module_graph.py --modules  # module -> module edges inside the project

Every import counts, those inside functions too (they are listed apart), so the graph is what
the code does, not what the tops of files say. tests/test_architecture.py checks the layer rules
on the same reading.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGE_DIRS = {
    "base": "trbench.base",
    "algos": "trbench.algos",
    "suites": "trbench.suites",
    "analysis": "trbench.analysis",
    "trbench": "trbench",
}
LAYERS = ("base", "algos", "suites", "analysis", "commands")
# what each layer may import of the project (besides itself)
ALLOWED = {
    "base": set(),
    "algos": {"base"},
    "suites": {"base", "algos"},
    "analysis": {"base"},
    "commands": {"base", "algos", "suites", "analysis"},
}


@dataclass(frozen=True)
class ProjectImport:
    source: str  # importing module, e.g. trbench.suites.runner
    target: str  # imported module, e.g. trbench.base.run_folder
    file: Path
    line: int
    at_top: bool  # at module level, not inside a function or class body


def source_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every source module of the installed packages."""
    modules = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def layer_of(module: str) -> str | None:
    """The layer of a project module (None for a module outside the project)."""
    parts = module.split(".")
    if parts[0] != "trbench":
        return None
    if len(parts) > 1 and parts[1] in ("base", "algos", "suites", "analysis"):
        return parts[1]
    return "commands"


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    if not node.level:
        return [f"{node.module}.{alias.name}" for alias in node.names] + [node.module or ""]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    stem = ".".join(base + ([node.module] if node.module else []))
    return [f"{stem}.{alias.name}" for alias in node.names] + [stem]


def project_imports(root: Path = ROOT) -> list[ProjectImport]:
    """Every import of a project module by a project module."""
    modules = source_files(root)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                candidates = _resolve(module, path, node)
                # `from pkg import name`: the module pkg.name if there is one, else pkg
                names = [next((c for c in candidates if c in modules), candidates[-1])]
            else:
                continue
            for name in names:
                if layer_of(name) is not None and name != module:
                    found.append(ProjectImport(module, name, path, node.lineno, id(node) in top_level))
    return found


def layer_edges(imports: list[ProjectImport]) -> tuple[Counter, Counter]:
    """(edges at module level, edges inside functions) between different layers, with counts.
    Importing the root package ``trbench`` (its version) is not an edge."""
    top, inner = Counter(), Counter()
    for found in imports:
        source, target = layer_of(found.source), layer_of(found.target)
        if found.target == "trbench" or source == target:
            continue
        (top if found.at_top else inner)[(source, target)] += 1
    return top, inner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="module-level edges instead of layers")
    args = parser.parse_args(argv)
    imports = project_imports()
    if args.modules:
        for edge in sorted({(i.source, i.target) for i in imports}):
            print(f"{edge[0]} -> {edge[1]}")
        return 0
    top, inner = layer_edges(imports)
    for source, target in sorted(set(top) | set(inner), key=lambda e: (LAYERS.index(e[0]), LAYERS.index(e[1]))):
        rule = "" if target in ALLOWED[source] else "   <- against the layer rules"
        counts = f"{top[(source, target)]:3d} at the top"
        if inner[(source, target)]:
            counts += f", {inner[(source, target)]} inside functions"
        print(f"{source:>9} -> {target:<9} {counts}{rule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
