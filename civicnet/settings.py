"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import TerminalError
from schemas.homefiles import OWNER_ONLY, Modes, secure_home, shared, use_modes

DEFAULT_HOME = "var"
SHARE_GROUP_ENV = "CIVICNET_SHARE_GROUP"
# files under the home that hold credentials: owner-only even when the home is shared
SECRET_FILES = ("gateway/senders.json", "demo/secrets.json")


class EmptyHomeError(TerminalError):
    """--home was given as an empty string (often an unset shell variable)."""


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state, and who besides its owner may read it."""

    home: Path
    # a group whose members (analysts) may read the home: files 0640, folders 0750; None: owner-only
    share_group: str | None = None

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None, share_group: str | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME (unless empty), else ./var (always absolute); the share
        group if given, else $CIVICNET_SHARE_GROUP, else none.

        An empty `home` is refused rather than taken as the current folder: `--home "$TYPO"`
        must not make a home of wherever the shell happens to be."""
        if home is not None and not str(home).strip():
            raise EmptyHomeError("--home is empty (an unset shell variable?); give the path of a civicnet home, "
                                 f"or leave --home out for $CIVICNET_HOME or ./{DEFAULT_HOME}")
        chosen = home if home is not None else (os.environ.get("CIVICNET_HOME") or DEFAULT_HOME)
        group = share_group if share_group is not None else os.environ.get(SHARE_GROUP_ENV) or None
        return cls(home=Path(chosen).resolve(), share_group=group)

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
