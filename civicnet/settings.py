"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import TerminalError
from schemas.homefiles import OWNER_ONLY, Modes, secure_home, shared, use_modes
from schemas.layout import SECRET_FILES

DEFAULT_HOME = "var"
DEFAULT_AIRFLOW_URL = "http://127.0.0.1:8080"  # where `civicnet airflow` serves Airflow's API and UI
SHARE_GROUP_ENV = "CIVICNET_SHARE_GROUP"


class EmptyHomeError(TerminalError):
    """--home was given as an empty string (often an unset shell variable)."""


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state, who besides its owner may read it, and how the gateway reaches
    Airflow's API (the password is kept out of repr, so it never reaches a log)."""

    home: Path
    # a group whose members (analysts) may read the home: files 0640, folders 0750; None: owner-only
    share_group: str | None = None
    airflow_url: str = DEFAULT_AIRFLOW_URL
    airflow_username: str | None = None
    airflow_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None, share_group: str | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME (unless empty), else ./var (always absolute); the share
        group if given, else $CIVICNET_SHARE_GROUP, else none; Airflow's API from $CIVICNET_AIRFLOW_URL,
        $CIVICNET_AIRFLOW_USERNAME and $CIVICNET_AIRFLOW_PASSWORD.

        An empty `home` is refused rather than taken as the current folder: `--home "$TYPO"`
        must not make a home of wherever the shell happens to be."""
        if home is not None and not str(home).strip():
            raise EmptyHomeError("--home is empty (an unset shell variable?); give the path of a civicnet home, "
                                 f"or leave --home out for $CIVICNET_HOME or ./{DEFAULT_HOME}")
        chosen = home if home is not None else (os.environ.get("CIVICNET_HOME") or DEFAULT_HOME)
        group = share_group if share_group is not None else os.environ.get(SHARE_GROUP_ENV) or None
        return cls(home=Path(chosen).resolve(), share_group=group,
                   airflow_url=os.environ.get("CIVICNET_AIRFLOW_URL") or DEFAULT_AIRFLOW_URL,
                   airflow_username=os.environ.get("CIVICNET_AIRFLOW_USERNAME") or None,
                   airflow_password=os.environ.get("CIVICNET_AIRFLOW_PASSWORD") or None)

    def file_modes(self) -> Modes:
        """The modes of what civicnet writes under the home."""
        return shared(self.share_group) if self.share_group else OWNER_ONLY

    def apply_file_modes(self) -> Modes:
        """Make this process write the home with `file_modes` (umask included), and bring an existing
        home to them (a home written world-readable by an older civicnet is closed here)."""
        modes = self.file_modes()
        use_modes(modes)
        secure_home(self.home, modes, SECRET_FILES)
        return modes
