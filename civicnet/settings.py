"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state."""

    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME, else ./var; always absolute."""
        chosen = home if home is not None else os.environ.get("CIVICNET_HOME", "var")
        return cls(home=Path(chosen).resolve())
