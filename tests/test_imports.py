"""Guard: imports point one way (CONVENTIONS.md, "Dependencies point one way") and form no cycle.

Every module of our packages is parsed with `ast`; every `import` anywhere in it counts, lazy imports
inside functions included (they hide cycles), except those under `if TYPE_CHECKING:`. A dags/ file
imports its siblings as top-level names (Airflow puts dags/ on sys.path); `civicnet_dags` is the name
the wheel ships dags/ under. Importing a module counts as an edge to that module only, not to the
packages above it. The checker is a function over a root path, so the negative tests plant bad trees.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# ---- the rule table -------------------------------------------------------------------------------
PACKAGES = ("civicnet", "connectors", "quality", "warehouse", "schemas", "dags")
ALIASES = {"civicnet_dags": "dags"}
# the modules that run Airflow in-process; one that only starts the `airflow` command imports nothing
AIRFLOW_RUNNERS = ("civicnet.pipeline.runner", "civicnet.gateway.airflow_api")
# importer prefix -> prefixes of our modules it may import; the longest matching importer prefix wins.
# Anything not ours (stdlib, third party) is free, except what RESTRICTED names.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "dags": ("dags", "civicnet.pipeline"),
    "civicnet": ("civicnet", "connectors", "quality", "warehouse", "schemas"),
    # pipeline is the bottom of civicnet: not cli, gateway, demo or bench
    "civicnet.pipeline": ("civicnet.pipeline", "civicnet.context", "civicnet.settings",
                          "connectors", "quality", "warehouse", "schemas"),
    "connectors": ("connectors", "schemas"),
    "quality": ("quality", "schemas"),
    "warehouse": ("warehouse", "schemas"),
    "schemas": ("schemas",),
}
# imported name prefix -> the only importer prefixes allowed to import it
RESTRICTED: dict[str, tuple[str, ...]] = {
    "airflow": ("dags", *AIRFLOW_RUNNERS),
    "dags": ("dags",),
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# ---- the checker ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    """One import: `importer` (a module of ours, in `path` at `line`) imports `imported`."""

    path: str
    line: int
    importer: str
    imported: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} → {self.imported}"


def _modules(root: Path) -> dict[str, Path]:
    """Every module of our packages under `root`, by dotted name (a package by its `__init__.py`)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import below `node`, in functions too, skipping the body of `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _import_nodes(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _absolute(name: str, importer: str, siblings: set[str]) -> str:
    """`name` as our dotted module name: dags/ siblings get their `dags.` prefix, aliases resolved."""
    top, dot, rest = name.partition(".")
    if _under(importer, "dags") and top in siblings:
        return f"dags.{name}"
    return ALIASES.get(top, top) + dot + rest


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
             known: dict[str, Path], siblings: set[str]) -> Iterator[str]:
    """The modules one import statement loads: `from a import b` means `a.b` when that is a module."""
    if isinstance(node, ast.Import):
        yield from (_absolute(alias.name, importer, siblings) for alias in node.names)
        return
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = _absolute(node.module or "", importer, siblings)
    for alias in node.names:
        yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module


def import_edges(root: Path) -> list[Edge]:
    """Every import of every module of ours under `root`."""
    known = _modules(root)
    siblings = {p.relative_to(root / "dags").parts[0].removesuffix(".py") for p in known.values()
                if p.is_relative_to(root / "dags")}
    edges = []
    for importer, path in known.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        rel, is_package = path.relative_to(root).as_posix(), path.name == "__init__.py"
        for node in _import_nodes(tree):
            targets = dict.fromkeys(_targets(node, importer, is_package, known, siblings))
            edges += [Edge(rel, node.lineno, importer, target) for target in targets]
    return edges


def _broken_rule(edge: Edge) -> str | None:
    """The rule `edge` breaks, in words, or None when it keeps them all."""
    for imported, importers in RESTRICTED.items():
        if _under(edge.imported, imported) and not any(_under(edge.importer, p) for p in importers):
            return f"only {', '.join(importers)} may import {imported}"
    if edge.imported.split(".")[0] not in PACKAGES:
        return None
    owner = max((p for p in MAY_IMPORT if _under(edge.importer, p)), key=len)
    if any(_under(edge.imported, p) for p in MAY_IMPORT[owner]):
        return None
    return f"{owner} may import only {', '.join(MAY_IMPORT[owner])} of ours"


def direction_violations(root: Path) -> list[str]:
    """Every import under `root` that breaks the rule table, as `file:line: importer → imported (rule)`."""
    return [f"{edge.where()} ({rule})" for edge in import_edges(root)
            if (rule := _broken_rule(edge)) is not None]


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest prefix of `name` that is one of our modules (`import a.b.c` loads module `a.b`)."""
    parts = name.split(".")
    return next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known), None)


def _reachable(graph: dict[str, dict[str, Edge]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def import_cycles(root: Path) -> list[list[Edge]]:
    """The imports inside each strongly connected component of more than one module."""
    known = set(_modules(root))
    graph: dict[str, dict[str, Edge]] = {module: {} for module in sorted(known)}
    for edge in import_edges(root):
        target = _resolve(edge.imported, known)
        if target is not None and target != edge.importer:
            graph[edge.importer].setdefault(target, edge)
    reach = {module: _reachable(graph, module) for module in graph}
    components = {frozenset({m, *(n for n in reach[m] if m in reach[n])}) for m in graph}
    return [[e for m in sorted(c) for t, e in sorted(graph[m].items()) if t in c]
            for c in sorted(components, key=sorted) if len(c) > 1]


# ---- the guard on this repository -----------------------------------------------------------------
def test_imports_point_one_way() -> None:
    violations = direction_violations(REPO)
    assert not violations, (f"{len(violations)} imports break the dependency direction "
                            "(rule table at the top of tests/test_imports.py):\n" + "\n".join(violations))


def test_no_import_cycles() -> None:
    cycles = [f"{', '.join(sorted({e.importer for e in cycle}))}:\n    " + "\n    ".join(e.where() for e in cycle)
              for cycle in import_cycles(REPO)]
    assert not cycles, (f"{len(cycles)} import cycles (lazy imports count); break each by moving the shared "
                        "piece down into the lower module or into civicnet/context.py:\n" + "\n".join(cycles))


def test_checker_sees_every_package() -> None:
    assert {name.split(".")[0] for name in _modules(REPO)} == set(PACKAGES)


# ---- the checker fails on planted bad imports -----------------------------------------------------
def plant(root: Path, files: dict[str, str]) -> Path:
    """A fake repository under `root`: every package with an `__init__.py` (not dags/), plus `files`."""
    for name, text in ({f"{package}/__init__.py": "" for package in PACKAGES if package != "dags"} | files).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, "utf-8")
    return root


BAD = {
    "sideways": ({"warehouse/x.py": "import os\nfrom quality.y import rule\n", "quality/y.py": ""},
                 "warehouse/x.py:2: warehouse.x → quality.y (warehouse may import only warehouse, schemas"),
    "schemas-up": ({"schemas/z.py": "import connectors\n"},
                   "schemas/z.py:1: schemas.z → connectors (schemas may import only schemas"),
    "airflow": ({"quality/q.py": "def f() -> None:\n    import airflow\n"},
                "quality/q.py:2: quality.q → airflow (only dags, civicnet.pipeline.runner"),
    "dags-skip-pipeline": ({"dags/feed.py": "from task_policy import x\n\ndef t():\n    from warehouse import merge\n",
                            "dags/task_policy.py": "", "warehouse/merge.py": ""},
                           "dags/feed.py:4: dags.feed → warehouse.merge (dags may import only dags, civicnet.pipeline"),
    "imports-dags": ({"civicnet/cli.py": "import civicnet_dags.ingest\n"},
                     "civicnet/cli.py:1: civicnet.cli → dags.ingest (only dags may import dags)"),
    "pipeline-up": ({"civicnet/pipeline/steps.py": "from .. import cli\n", "civicnet/cli.py": ""},
                    "civicnet/pipeline/steps.py:1: civicnet.pipeline.steps → civicnet.cli (civicnet.pipeline may"),
}


@pytest.mark.parametrize("files, expected", BAD.values(), ids=BAD.keys())
def test_checker_reports_planted_bad_import(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    violations = direction_violations(plant(tmp_path, files))
    assert len(violations) == 1 and violations[0].startswith(expected), violations


def test_checker_reports_every_violation_not_only_the_first(tmp_path: Path) -> None:
    root = plant(tmp_path, {"schemas/z.py": "import connectors\nimport quality\n", "warehouse/w.py": "import dags.x\n"})
    assert len(direction_violations(root)) == 3


def test_checker_reports_a_cycle_of_lazy_imports(tmp_path: Path) -> None:
    root = plant(tmp_path, {"warehouse/a.py": "def f():\n    from warehouse import b\n",
                            "warehouse/b.py": "def g():\n    from . import a\n",
                            "warehouse/c.py": "from warehouse import a\n"})
    (cycle,) = import_cycles(root)
    assert [e.where() for e in cycle] == ["warehouse/a.py:2: warehouse.a → warehouse.b",
                                          "warehouse/b.py:2: warehouse.b → warehouse.a"]
    assert direction_violations(root) == []


def test_type_checking_imports_and_a_good_tree_report_nothing(tmp_path: Path) -> None:
    root = plant(tmp_path, {
        "quality/gate.py": "from typing import TYPE_CHECKING\nimport schemas.contract\n"
                           "if TYPE_CHECKING:\n    from warehouse.merge import Batch\n    import airflow\n"
                           "else:\n    import json\n",
        "warehouse/merge.py": "import typing\nif typing.TYPE_CHECKING:\n    from quality import gate\n",
        "schemas/contract.py": "import yaml\n",
        "civicnet/pipeline/__init__.py": "from civicnet.pipeline import steps\n",
        "civicnet/pipeline/steps.py": "from civicnet import context\nimport quality.gate, warehouse.merge\n",
        "civicnet/pipeline/runner.py": "import airflow.sdk\n",
        "civicnet/context.py": "import schemas.contract\n",
        "civicnet/cli.py": "from civicnet.pipeline import steps\nfrom civicnet import context\n",
        "dags/task_policy.py": "import airflow.sdk\n",
        "dags/ingest.py": "from airflow.sdk import dag\nfrom task_policy import x\n\n"
                          "def t():\n    from civicnet import pipeline\n",
    })
    assert direction_violations(root) == []
    assert import_cycles(root) == []
    edges = {(e.importer, e.imported) for e in import_edges(root)}
    assert {b for a, b in edges if a == "quality.gate"} == {"typing", "schemas.contract", "json"}
    assert ("dags.ingest", "dags.task_policy") in edges and ("dags.ingest", "civicnet.pipeline") in edges
