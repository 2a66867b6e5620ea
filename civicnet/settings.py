"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import TerminalError

DEFAULT_HOME = "var"


class EmptyHomeError(TerminalError):
    """--home was given as an empty string (often an unset shell variable)."""


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state."""

    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME (unless empty), else ./var; always absolute.

        An empty `home` is refused rather than taken as the current folder: `--home "$TYPO"`
        must not make a home of wherever the shell happens to be."""
        if home is not None and not str(home).strip():
            raise EmptyHomeError("--home is empty (an unset shell variable?); give the path of a civicnet home, "
                                 f"or leave --home out for $CIVICNET_HOME or ./{DEFAULT_HOME}")
        chosen = home if home is not None else (os.environ.get("CIVICNET_HOME") or DEFAULT_HOME)
        return cls(home=Path(chosen).resolve())
