"""`pip install .` gives a CLI with its DAGs: the wheel ships dags/ and an installed copy finds them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel (about 6 s)

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
SOURCES = ("civicnet", "connectors", "quality", "schemas", "warehouse", "dags")
DAG_FILES = sorted(p.name for p in (REPO / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the source tree (building in place would leave build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = src / "dist"
    subprocess.run([str(UV), "build", "-q", "--wheel", "--out-dir", str(dist), str(src)], check=True, timeout=300)
    (built,) = dist.glob("civicnet-*.whl")
    return built


def test_the_wheel_holds_every_dag_file(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.endswith(".py") and Path(n).parent.name == "civicnet_dags")
    assert DAG_FILES and shipped == DAG_FILES
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_an_installed_copy_finds_its_dags(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([str(UV), "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("CIVICNET_DAGS_FOLDER", "PYTHONPATH")}
    # -S: no site-packages, so neither this checkout nor an editable install can answer
    found = subprocess.run(
        [sys.executable, "-S", "-c", "import civicnet.pipeline.runner as r; print(r.__file__); print(r.dags_folder())"],
        env=env | {"PYTHONPATH": str(site)}, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()

    module, folder = Path(found[0]), Path(found[1])
    assert module.is_relative_to(site) and folder.is_relative_to(site)
    assert sorted(p.name for p in folder.glob("*.py")) == DAG_FILES
    assert (folder / "ingest.py").read_text("utf-8") == (REPO / "dags" / "ingest.py").read_text("utf-8")
