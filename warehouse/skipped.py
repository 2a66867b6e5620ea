"""Nodes a walk could not open: which, why, and how a caller fails for them.

A sync or verify walk that finds a node locked (another process holds it) or damaged skips it
and goes on; the caller then raises naming every skipped node with its cause and fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.divisions import tier_of
from warehouse.node import NodeCorruptError, NodeLayoutError, NodeLockedError

Cause = Literal["locked", "corrupt"]
# What stops one node but not its neighbours: a held lock (retry), a damaged or foreign-layout file (rebuild).
UNAVAILABLE = (NodeLockedError, NodeCorruptError, NodeLayoutError)



@dataclass(frozen=True)
class SkippedNode:
    """A node a sync or verify could not open, why, and what to do (the error's message)."""

    code: str
    cause: Cause
    message: str


def skipped_node(code: str, err: Exception) -> SkippedNode:
    """The report of a node skipped because of `err` (one of UNAVAILABLE)."""
    return SkippedNode(code, "locked" if isinstance(err, NodeLockedError) else "corrupt", str(err))


def raise_for_skipped(skipped: list[SkippedNode], done: str) -> None:
    """Raise, naming every skipped node with its cause and fix, if any was skipped: a
    NodeCorruptError (terminal: a person must rebuild) if any is damaged, else a NodeLockedError
    (transient: a retry may find the lock released). `done` says what was done meanwhile."""
    if not skipped:
        return
    # one line (the CLI shows an error's first line only): every node with its cause and fix
    causes = " | ".join(f"{s.cause} {tier_of(s.code)} {s.code}: {' '.join(s.message.split())}" for s in skipped)
    text = f"{len(skipped)} nodes skipped, {done}: {causes}"
    if any(s.cause == "corrupt" for s in skipped):
        raise NodeCorruptError(text)
    raise NodeLockedError(text)
