"""Every `civicnet` command first makes the process write the home owner-only (or for the share group),
and closes a home an older civicnet left world-readable."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import share_group

from civicnet.cli import main
from schemas.homefiles import OWNER_ONLY, current_modes, shared, using_modes


@pytest.fixture
def restored() -> Iterator[None]:
    """Whatever main() sets, the test process gets its modes and umask back."""
    with using_modes(OWNER_ONLY):
        yield


def old_home(root: Path) -> Path:
    """A home as civicnet 0.3.0 wrote it: folders 0755, files 0644."""
    (root / "nodes" / "city").mkdir(parents=True)
    (root / "nodes" / "city" / "440300000000.duckdb").write_bytes(b"")
    for p in (root, root / "nodes", root / "nodes" / "city"):
        os.chmod(p, 0o755)
    os.chmod(root / "nodes" / "city" / "440300000000.duckdb", 0o644)
    return root


def modes_under(home: Path) -> set[int]:
    return {stat.S_IMODE(p.lstat().st_mode) for p in (home, *home.rglob("*"))}


def test_a_command_closes_the_home_and_sets_the_umask(restored: None, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVICNET_SHARE_GROUP", raising=False)
    home = old_home(tmp_path / "var")
    os.umask(0o022)

    assert main(["gateway", "senders", "--home", str(home)]) == 0

    umask = os.umask(0o077)
    assert umask == 0o077 and current_modes() == OWNER_ONLY
    assert modes_under(home) == {0o700, 0o600}


def test_the_share_group_setting_opens_the_home_to_the_group_for_reading(restored: None, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICNET_SHARE_GROUP", share_group())
    home = old_home(tmp_path / "var")
    (home / "gateway").mkdir()
    (home / "gateway" / "senders.json").write_text('{"senders": {}}')

    assert main(["gateway", "senders", "--home", str(home)]) == 0

    assert current_modes() == shared(share_group()) and os.umask(0o077) == 0o027
    assert stat.S_IMODE((home / "gateway" / "senders.json").stat().st_mode) == 0o600  # token hashes: owner only
    (home / "gateway" / "senders.json").unlink()
    assert modes_under(home) == {0o2750, 0o640}
    assert {p.lstat().st_gid for p in (home, *home.rglob("*"))} == {shared(share_group()).gid}


def test_an_unknown_share_group_stops_the_command_with_the_fix(restored: None, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CIVICNET_SHARE_GROUP", "civicnet-no-such-group")
    home = old_home(tmp_path / "var")

    assert main(["gateway", "senders", "--home", str(home)]) == 2

    assert "groupadd civicnet-no-such-group" in capsys.readouterr().err
    assert modes_under(home) == {0o755, 0o644}  # nothing changed on a refused setting
