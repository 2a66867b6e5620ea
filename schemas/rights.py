"""Who may write a dataset, and which of its rows (DESIGN.md invariant 5, "one data, one source").

Only the dataset's owner department (its contract's `owner`) may write it whole; where the
dataset's feed lets community work stations write too, each writes only the rows anchored in its
own community. One pure function says so for a pushed file (the gateway) and a pulled feed (when
feeds load) alike.

A community work station writes as the department `community:<its community code>`
(`community_department`, read back by `community_of`): the one encoding of a community as a
sender department, in the sender registry, batch manifests and ledgers, and quarantine.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from schemas.contract import Contract
from schemas.divisions import validate_code
from schemas.errors import TerminalError

WriterKind = Literal["department", "community"]
# who a dataset's feed lets write: its owner department, and/or community work stations (own rows)
Permit = Literal["owner", "community"]
OWNER_PERMIT: tuple[Permit, ...] = ("owner",)  # a pulled feed: its department writes the whole dataset, or nothing
COMMUNITY_PREFIX = "community:"  # a community work station's department: community:<code>


def community_department(code: str) -> str:
    """The department a community work station writes as: `community:<its 12-digit code>`."""
    return f"{COMMUNITY_PREFIX}{validate_code(code)}"


def community_of(department: str) -> str | None:
    """The community code of a community work station's department, None for any other department."""
    code = department.removeprefix(COMMUNITY_PREFIX)
    return code if code != department and code else None


@dataclass(frozen=True)
class Writer:
    """Who wants to write: a sender of the push gateway, or the department a pulled feed belongs to."""

    name: str  # how a message names it: a sender id, a feed's slug
    kind: WriterKind
    department: str  # a community's is `community:<code>`
    division: str | None = None  # a community's own community code


class WriteRefusedError(TerminalError):
    """A writer may not write a dataset at all (the gateway answers 403)."""

    def __init__(self, message: str, dataset: str, owner: str) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.owner = owner


def writable_scope(contract: Contract, writer: Writer, permits: Collection[Permit] = OWNER_PERMIT) -> str | None:
    """The rows of `contract`'s dataset that `writer` may write: None for all of them (the owner
    department), a community code for that community's own rows (a community work station); raise
    WriteRefusedError, naming the owner, if it may write none. `permits` is what the feed allows."""
    owner = contract.owner
    if writer.kind == "department" and writer.department == owner and "owner" in permits:
        return None
    if writer.kind == "community" and writer.division is not None and "community" in permits:
        return writer.division
    who = " and ".join([*(["its owner department"] if "owner" in permits else []),
                        *(["community work stations (their own rows)"] if "community" in permits else [])])
    raise WriteRefusedError(f"dataset {contract.name!r} is owned by department {owner!r}: only {who} may push it, "
                            f"and sender {writer.name!r} ({writer.department}) is not one; send the file "
                            f"to {owner!r} instead", contract.name, owner)
