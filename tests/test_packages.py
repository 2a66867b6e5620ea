"""Guard: our generic top-level package names resolve to this repository, not to something installed."""

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


def test_schemas_imports_nothing_of_ours() -> None:
    for path in (REPO / "schemas").glob("*.py"):
        text = path.read_text("utf-8")
        for other in ("civicnet", "connectors", "quality", "warehouse", "airflow"):
            assert f"from {other}" not in text and f"import {other}" not in text, f"{path} imports {other}"


@pytest.mark.parametrize("package", ["connectors", "quality", "warehouse", "schemas", "civicnet"])
def test_no_package_imports_dags_or_airflow(package: str) -> None:
    for path in (REPO / package).glob("*.py"):
        text = path.read_text("utf-8")
        assert "from dags" not in text and "import dags" not in text, f"{path} imports dags/"
        if package != "civicnet":
            assert "import airflow" not in text and "from airflow" not in text, f"{path} imports Airflow"
