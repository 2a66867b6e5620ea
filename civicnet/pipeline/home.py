"""What makes a folder a civicnet home: the one owner of "this is a home".

A home is a folder holding the marker file `civicnet-home.json` (written by `civicnet init`,
`civicnet demo` and `civicnet ingest`, the commands that make a home) or the city node (homes
built by the pipeline functions directly, and homes older than the marker). Every other command
refuses a folder that is neither, before it writes anything, so a mistyped `--home` creates nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from schemas.errors import TerminalError
from schemas.homefiles import write_atomic
from schemas.layout import marker_file

# the commands' sentences (one place, so they can be translated together)
NO_HOME = ("no civicnet home at {home}: make one with `civicnet init --home {home}` (an empty home), "
           "`civicnet demo --home {home}` (a demo Shenzhen) or `civicnet ingest <feed> --home {home}`, "
           "or point --home (or $CIVICNET_HOME) at an existing home")
NOT_EMPTY = ("{home} is not empty and not a civicnet home; choose a new or empty folder for `civicnet init`, "
             "or point --home at an existing home")


class NoHomeError(TerminalError):
    """A command that needs an existing civicnet home was pointed at a folder that is not one."""


class HomeNotEmptyError(TerminalError):
    """A new home was asked for in a folder that already holds other files."""


def marker_path(home: Path) -> Path:
    """Where the marker of a home is."""
    return marker_file(home)


def is_home(home: Path) -> bool:
    """True if `home` is a civicnet home: it holds the marker or the city node."""
    from civicnet.context import city_code  # the registry's root: read only when asked
    from warehouse.stores import node_path

    return marker_path(home).is_file() or node_path(home, city_code()).is_file()


def require_home(home: Path) -> Path:
    """`home`, if it is a civicnet home; otherwise a NoHomeError saying how to make one."""
    if not is_home(home):
        raise NoHomeError(NO_HOME.format(home=home))
    return home


def create_home(home: Path, version: str) -> bool:
    """Make `home` a civicnet home (the folder and its marker); False if it was one already.

    Only a new or empty folder becomes a home, so `init` never claims a folder of other files."""
    if is_home(home):
        if not marker_path(home).exists():
            _write_marker(home, version)
        return False
    if home.exists() and any(home.iterdir()):
        raise HomeNotEmptyError(NOT_EMPTY.format(home=home))
    home.mkdir(parents=True, exist_ok=True)
    _write_marker(home, version)
    return True


def ensure_home(home: Path, version: str) -> None:
    """Mark `home` as a home for a command that builds one in place (`demo`, `ingest`), whatever
    it holds already (a demo's generated feeds, a department's drop folders under it)."""
    if not is_home(home):
        home.mkdir(parents=True, exist_ok=True)
        _write_marker(home, version)


def _write_marker(home: Path, version: str) -> None:
    marker = {"civicnet_home": 1, "created_by": f"civicnet {version}",
              "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    write_atomic(marker_path(home), json.dumps(marker) + "\n")
