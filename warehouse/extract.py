"""Extracts: each node published as a DuckDB file analysts open (DuckDB 1.4 or newer).

The node files are already written in the v1.4 storage format; publishing is an atomic copy
of a detached, checkpointed node, so an analyst never opens a half-written file and never
holds a lock that blocks the next sync.
"""

from __future__ import annotations

from pathlib import Path

from schemas.homefiles import copy_atomic
from schemas.layout import extract_file
from warehouse.node import node_errors
from warehouse.stores import node_path


def extract_path(home: Path, code: str) -> Path:
    """Where a node's extract is published: <home>/extracts/<tier>/<code>.duckdb."""
    return extract_file(home, code)


def extract_is_stale(home: Path, code: str) -> bool:
    """True if the node file was written after its extract was published (or there is none yet),
    including when a run was killed between a node's sync and its publication."""
    extract = extract_path(home, code)
    if not extract.exists():
        return True
    return extract.stat().st_mtime_ns <= node_path(home, code).stat().st_mtime_ns


def publish_extract(home: Path, code: str) -> Path:
    """Copy a (detached) node file to its extract path atomically; returns the path."""
    source, target = node_path(home, code), extract_path(home, code)
    with node_errors(target):  # a full disk is said as such; the old extract stays whole
        return copy_atomic(source, target)
