"""The layer rules as import checks, read from the source files (scripts/module_graph.py).

base imports nothing of the project; algos only base; suites base and algos; analysis only base
(it reads run folders, never the code that writes them); the commands anything. Imports inside
functions count too: a rule that a function-level import could dodge would be no rule.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 450  # a module longer than this holds more than one job


def _load_module_graph():
    spec = importlib.util.spec_from_file_location("module_graph", ROOT / "scripts" / "module_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("module_graph", module)
    spec.loader.exec_module(module)
    return module


graph = _load_module_graph()
IMPORTS = graph.project_imports()
ALLOWED_WITH_SELF = {layer: allowed | {layer} for layer, allowed in graph.ALLOWED.items()}


@pytest.mark.parametrize("layer", graph.LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer):
    offending = [
        f"{found.file.relative_to(ROOT)}:{found.line} imports {found.target}"
        for found in IMPORTS
        if graph.layer_of(found.source) == layer
        and found.target != "trbench"
        and graph.layer_of(found.target) not in ALLOWED_WITH_SELF[layer]
    ]
    assert not offending, f"{layer} may import only {sorted(graph.ALLOWED[layer])}:\n" + "\n".join(offending)


def test_the_root_package_imports_nothing():
    # every layer imports trbench/__init__.py first, so it must not pull a layer in
    tree = ast.parse((ROOT / "trbench" / "__init__.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_the_reader_sees_every_layer():
    # a rename of a folder or package would leave the rules above checking nothing
    layers_seen = {graph.layer_of(module) for module in graph.source_files()}
    assert layers_seen == set(graph.LAYERS)
    edges = {(graph.layer_of(i.source), graph.layer_of(i.target)) for i in IMPORTS}
    assert {("algos", "base"), ("suites", "algos"), ("analysis", "base"), ("commands", "suites")} <= edges


def test_a_forbidden_import_is_caught(tmp_path):
    # the check itself can fail: a copy of the layout where analysis imports suites
    for folder in graph.PACKAGE_DIRS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "analysis" / "bad.py").write_text("def f():\n    from trbench.suites import runner\n")
    (tmp_path / "suites" / "runner.py").write_text("")
    found = graph.project_imports(tmp_path)
    assert [(i.source, i.target, i.at_top) for i in found] == [("trbench.analysis.bad", "trbench.suites.runner", False)]
    assert "suites" not in graph.ALLOWED["analysis"]


def test_no_source_module_holds_more_than_one_job():
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in graph.source_files().values()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
