"""Guard: our generic top-level package names resolve to this repository, not to something installed.

Which package may import which is guarded by tests/test_imports.py.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["civicnet", "connectors", "quality", "schemas", "warehouse"])
def test_package_resolves_to_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None, f"{name} is a namespace package; its __init__.py is missing"
    assert Path(module.__file__).resolve().parent == REPO / name
