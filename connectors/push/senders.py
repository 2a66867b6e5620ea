"""Who may push to the gateway: departments and community work stations, each with a bearer token.

The registry is `<home>/gateway/senders.json` (mode 0600, replaced atomically). It stores for
each sender its kind, department and division, and the sha256 of its token — never the token.
A token is shown once, when the sender is added; a lost token is replaced by revoking the
sender and adding it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import TerminalError
from schemas.homefiles import make_folder, secret_modes, write_atomic
from schemas.layout import senders_file
from schemas.rights import Writer, WriterKind, community_department

SenderKind = WriterKind
KINDS: tuple[SenderKind, ...] = ("department", "community")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEPARTMENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SenderError(TerminalError):
    """A sender cannot be added or removed as asked."""


@dataclass(frozen=True)
class Sender:
    """An authenticated sender. A community's department is `community:<code>`."""

    sender_id: str
    kind: SenderKind
    department: str
    division: str | None

    def writer(self) -> Writer:
        """This sender as schemas.rights sees a writer."""
        return Writer(self.sender_id, self.kind, self.department, self.division)


def registry_path(home: Path) -> Path:
    """Where the sender registry lives."""
    return senders_file(home)


def token_digest(token: str) -> str:
    """The sha256 hex of a token: what the registry keeps instead of the token.

    A fast hash is enough here, unlike for passwords: a token carries 256 random bits, so there
    is no dictionary to try and no slow hash could make a search of 2**256 values any less hopeless."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _read(home: Path) -> dict[str, dict[str, Any]]:
    path = registry_path(home)
    if not path.exists():
        return {}
    senders: dict[str, dict[str, Any]] = json.loads(path.read_text("utf-8"))["senders"]
    return senders


def _write(home: Path, senders: dict[str, dict[str, Any]]) -> None:
    """Replace the registry atomically and durably; the file is readable by its owner only."""
    text = json.dumps({"senders": senders}, ensure_ascii=False, indent=1, sort_keys=True)
    write_atomic(registry_path(home), text, modes=secret_modes(), durable=True)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One read-modify-write of the registry at a time (two `add-sender` commands at once)."""
    folder = make_folder(registry_path(home).parent)
    with (folder / ".senders.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _community_code(division: str | None) -> str:
    """The division of a community sender, checked against the network's registry."""
    from schemas.divisions import load_registry  # the registry the network is built on (vintage 2020)

    registry = load_registry()
    communities = {d.code for d in registry.by_tier("community")}
    if division is None or division not in communities:
        raise SenderError(f"a community sender needs --division set to a community code of the {registry.vintage} "
                          f"division registry (12 digits, e.g. {min(communities)}); got {division!r}")
    return division


def _record(kind: str, department: str | None, division: str | None) -> tuple[str, str | None]:
    """The department and division stored for a new sender, validated."""
    if kind == "community":
        if department is not None:
            raise SenderError(f"--department applies to a department sender only; a community sender's department is "
                              f"always community:<its --division>, so leave --department out (got {department!r})")
        code = _community_code(division)
        return community_department(code), code
    if kind != "department":
        raise SenderError(f"sender kind {kind!r} is not one of {list(KINDS)}")
    if department is None or not _DEPARTMENT.match(department):
        raise SenderError(f"department {department!r} must be a department slug such as civil_affairs "
                          "(lower-case letters, digits and _), the owner name the dataset contracts use")
    if division is not None:
        raise SenderError("--division applies to a community sender only (its community's code); leave it out "
                          "for a department sender")
    return department, None


def add_sender(home: Path, sender_id: str, kind: str, department: str | None, division: str | None = None) -> str:
    """Register a sender and return its new token (the only time the token exists in the clear).

    A community sender's department is always `community:<division>`, so that it can write only
    what the gateway lets communities write: a `department` given for one is refused, not ignored."""
    if not _ID.match(sender_id):
        raise SenderError(f"sender id {sender_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    stored_department, stored_division = _record(kind, department, division)
    token = secrets.token_urlsafe(32)
    with _locked(home):
        senders = _read(home)
        if sender_id in senders:
            raise SenderError(f"sender {sender_id!r} already exists; revoke it first to issue a new token")
        senders[sender_id] = {"kind": kind, "department": stored_department, "division": stored_division,
                              "token_sha256": token_digest(token)}
        _write(home, senders)
    return token


def revoke_sender(home: Path, sender_id: str) -> None:
    """Remove a sender: its token stops working at the next request."""
    with _locked(home):
        senders = _read(home)
        if sender_id not in senders:
            raise SenderError(f"no sender {sender_id!r}; `civicnet gateway senders` lists them")
        del senders[sender_id]
        _write(home, senders)


def list_senders(home: Path) -> list[Sender]:
    """Every registered sender, by id (without token digests)."""
    return [_sender(sid, rec) for sid, rec in sorted(_read(home).items())]


def _sender(sender_id: str, rec: dict[str, Any]) -> Sender:
    return Sender(sender_id, rec["kind"], rec["department"], rec["division"])


def authenticate(home: Path, token: str) -> Sender | None:
    """The sender a token belongs to, or None. Every digest is compared in constant time."""
    digest = token_digest(token)
    found = None
    for sender_id, rec in _read(home).items():
        if hmac.compare_digest(digest, str(rec["token_sha256"])):
            found = _sender(sender_id, rec)
    return found
