"""The error tree drawn in schemas/errors.py's docstring is the tree of the code: every error class the
packages define is a TransientError or a TerminalError (not both), and the drawing names each one
once, with its module, its parent and its builtin bases, and names nothing else."""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import pytest

import schemas.errors
from schemas.errors import CivicnetError, TerminalError, TransientError

PACKAGES = ("schemas", "connectors", "quality", "warehouse", "civicnet")
BASES = (CivicnetError, TransientError, TerminalError)
# one line of the drawing: tree prefix, name, (module; also builtin bases): what a person does
ENTRY = re.compile(r"(?P<lead>(?:[│ ]   )*)(?P<branch>[├└]── )?(?P<name>[A-Za-z_]\w*) "
                   r"\((?P<module>[\w.]+)(?:; also (?P<also>\w+(?:, \w+)*))?\): \S.*")
ROOT = "CivicnetError ("


@dataclass(frozen=True)
class Drawn:
    """One class as the docstring draws it."""

    name: str
    module: str
    parent: str | None
    also: tuple[str, ...]

    def place(self) -> str:
        """Where the class sits: module, parent and builtin bases."""
        also = f", also {', '.join(self.also)}" if self.also else ""
        return f"({self.module}{also}) under {self.parent}"


def package_modules() -> list[str]:
    """Every module of the packages (not `__main__`: importing one runs its program)."""
    names = []
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names += [package, *(m.name for m in pkgutil.walk_packages(path, f"{package}."))]
    return [n for n in names if not n.endswith(".__main__")]


def error_classes(modules: list[str]) -> list[type[BaseException]]:
    """Every exception class defined (not merely imported) in the modules."""
    found = []
    for name in modules:
        module = importlib.import_module(name)
        found += [obj for obj in vars(module).values() if isinstance(obj, type)
                  and issubclass(obj, BaseException) and obj.__module__ == name]
    return found


def parse_tree(doc: str) -> tuple[list[Drawn], list[str]]:
    """The classes the drawing names (from the `CivicnetError (` line to the next blank line), and the
    lines of it that are not an entry under a drawn parent."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(ROOT)), len(lines))
    drawn: list[Drawn] = []
    stack: list[str] = []  # the names on the path from the root to the last line
    bad = [] if start < len(lines) else [f"no line starts with {ROOT!r}"]
    for line in lines[start:]:
        if not line.strip():
            break
        match = ENTRY.fullmatch(line)
        depth = (len(match["lead"]) // 4 + bool(match["branch"])) if match else -1
        if match is None or depth > len(stack) or (depth == 0) == bool(match["branch"]):
            bad.append(line)
            continue
        del stack[depth:]
        also = tuple(match["also"].split(", ")) if match["also"] else ()
        drawn.append(Drawn(match["name"], match["module"], stack[-1] if stack else None, also))
        stack.append(match["name"])
    return drawn, bad


def as_coded(cls: type[BaseException]) -> Drawn:
    """How the class should be drawn: its module, its civicnet parent, its other bases but Exception."""
    parent = next((b.__name__ for b in cls.__bases__ if issubclass(b, CivicnetError)), None)
    also = tuple(b.__name__ for b in cls.__bases__ if not issubclass(b, CivicnetError) and b is not Exception)
    return Drawn(cls.__name__, cls.__module__, parent, also)


def kind_problem(cls: type[BaseException]) -> str | None:
    """What is wrong with the class's kind, if anything: it must be transient or terminal, not both."""
    transient, terminal = issubclass(cls, TransientError), issubclass(cls, TerminalError)
    if cls in BASES or transient != terminal:
        return None
    kind = "both transient and terminal" if transient else "neither a TransientError nor a TerminalError"
    return f"{cls.__module__}.{cls.__name__} is {kind}"


def unique(items: list[Drawn], twice: str) -> tuple[dict[str, Drawn], list[str]]:
    """The items by name, and a problem for each name that comes again."""
    by_name: dict[str, Drawn] = {}
    problems = []
    for item in items:
        if item.name in by_name:
            problems.append(twice.format(item.name))
        by_name[item.name] = item
    return by_name, problems


def tree_problems(classes: list[type[BaseException]], doc: str) -> list[str]:
    """Everything in which the classes and the drawing disagree (nothing, when the drawing is right)."""
    problems = [p for p in map(kind_problem, classes) if p is not None]
    drawn, bad = parse_tree(doc)
    problems += [f"the drawing has a line that is not an entry under a drawn parent: {line!r}" for line in bad]
    coded, twice = unique([as_coded(c) for c in classes], "two error classes are named {}: the drawing cannot "
                                                          "tell them apart")
    shown, again = unique(drawn, "the drawing names {} twice")
    problems += twice + again
    problems += [f"{c.module}.{c.name} is not in the drawing" for n, c in coded.items() if n not in shown]
    problems += [f"the drawing names {d.module}.{d.name}, which no module defines" for d in drawn
                 if d.name not in coded]
    problems += [f"{d.name} is drawn {d.place()}, but the code has it {coded[d.name].place()}" for d in shown.values()
                 if d.name in coded and d != coded[d.name]]
    return problems


@pytest.fixture(scope="module")
def classes() -> list[type[BaseException]]:
    return error_classes(package_modules())


def test_the_drawing_is_the_tree_of_the_code(classes: list[type[BaseException]]) -> None:
    assert schemas.errors.__doc__ is not None
    problems = tree_problems(classes, schemas.errors.__doc__)
    assert not problems, "schemas/errors.py's drawing differs from the code:\n" + "\n".join(problems)


def test_every_module_of_the_packages_is_searched(classes: list[type[BaseException]]) -> None:
    names = {c.__name__ for c in classes}
    assert {"CivicnetError", "GatewayError", "QualityGateFailedError", "ReconciliationError",
            "NodeLockedError", "PayloadTooLargeError"} <= names
    assert len(classes) > 50


def planted(name: str, *bases: type[BaseException], module: str = "civicnet.planted") -> type[BaseException]:
    """An exception class made on the fly, as if a module defined it."""
    return type(name, bases, {"__module__": module})


PLANTED = [
    pytest.param(lambda: [planted("PlantedError", Exception)], "",
                 ["civicnet.planted.PlantedError is neither a TransientError nor a TerminalError",
                  "civicnet.planted.PlantedError is not in the drawing"], id="a plain Exception, undrawn"),
    pytest.param(lambda: [planted("PlantedError", TerminalError)], "",
                 ["civicnet.planted.PlantedError is not in the drawing"], id="a terminal error, undrawn"),
    pytest.param(lambda: [planted("PlantedError", TransientError, TerminalError)],
                 "\n    ├── PlantedError (civicnet.planted): nothing",
                 ["civicnet.planted.PlantedError is both transient and terminal",
                  "PlantedError is drawn (civicnet.planted) under TerminalError, but the code has it "
                  "(civicnet.planted) under TransientError"], id="both, drawn as terminal"),
    pytest.param(lambda: [], "\n    ├── GhostError (civicnet.gone): nothing",
                 ["the drawing names civicnet.gone.GhostError, which no module defines"], id="a drawn ghost"),
    pytest.param(lambda: [planted("PlantedError", TerminalError, module="quality.moved")],
                 "\n    ├── PlantedError (civicnet.planted): nothing",
                 ["PlantedError is drawn (civicnet.planted) under TerminalError, but the code has it "
                  "(quality.moved) under TerminalError"], id="a stale module"),
    pytest.param(lambda: [planted("PlantedError", TerminalError, KeyError)],
                 "\n    ├── PlantedError (civicnet.planted): nothing",
                 ["PlantedError is drawn (civicnet.planted) under TerminalError, but the code has it "
                  "(civicnet.planted, also KeyError) under TerminalError"], id="an undrawn builtin base"),
    pytest.param(lambda: [], "\n    ├── PageError (quality.page): again",
                 ["the drawing names PageError twice"], id="a class drawn twice"),
    pytest.param(lambda: [planted("PageError", TerminalError, module="quality.page")], "",
                 ["two error classes are named PageError: the drawing cannot tell them apart"], id="a name twice"),
    pytest.param(lambda: [], "\n    ├── PlantedError civicnet.planted: nothing",
                 ["the drawing has a line that is not an entry under a drawn parent: "
                  "'    ├── PlantedError civicnet.planted: nothing'"], id="a line that is not an entry"),
    pytest.param(lambda: [], "\n    │       ├── PlantedError (civicnet.planted): nothing",
                 ["the drawing has a line that is not an entry under a drawn parent: "
                  "'    │       ├── PlantedError (civicnet.planted): nothing'"], id="a line under no parent"),
]


@pytest.mark.parametrize(("plant", "line", "expected"), PLANTED)
def test_a_planted_difference_is_found(classes: list[type[BaseException]], plant: object, line: str,
                                       expected: list[str]) -> None:
    assert callable(plant)
    doc = schemas.errors.__doc__
    assert doc is not None
    last = doc.index("\n", doc.index("└── BadRequestError"))  # the drawing's last line: plant after it
    assert tree_problems(classes + plant(), doc[:last] + line + doc[last:]) == expected


def test_a_removed_line_is_found(classes: list[type[BaseException]]) -> None:
    doc = schemas.errors.__doc__
    assert doc is not None
    line = next(x for x in doc.splitlines() if "NodeLockedError (" in x)
    expected = ["warehouse.node.NodeLockedError is not in the drawing"]
    assert tree_problems(classes, doc.replace(line + "\n", "")) == expected
