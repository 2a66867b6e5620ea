"""The gateway's sender registry: tokens stored only as hashes, authentication, community divisions."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from civicnet.context import registry
from connectors.push.senders import (
    SenderError,
    add_sender,
    authenticate,
    list_senders,
    registry_path,
    revoke_sender,
)

COMMUNITY = registry().by_tier("community")[0].code
STREET = registry().by_tier("street")[0].code


def test_token_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    token = add_sender(tmp_path, "ca", "department", "civil_affairs")

    text = registry_path(tmp_path).read_text("utf-8")
    assert token not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text
    assert len(token) >= 43  # 32 random bytes, URL-safe base64


def test_registry_is_private_to_its_owner(tmp_path: Path) -> None:
    add_sender(tmp_path, "ca", "department", "civil_affairs")

    assert stat.S_IMODE(registry_path(tmp_path).stat().st_mode) == 0o600


def test_authenticate_right_and_wrong_token(tmp_path: Path) -> None:
    token = add_sender(tmp_path, "ca", "department", "civil_affairs")
    other = add_sender(tmp_path, "ps", "department", "public_security")

    found = authenticate(tmp_path, token)
    assert found is not None and (found.sender_id, found.department) == ("ca", "civil_affairs")
    second = authenticate(tmp_path, other)
    assert second is not None and second.sender_id == "ps"
    assert authenticate(tmp_path, token + "x") is None
    assert authenticate(tmp_path, "") is None


def test_revoked_token_stops_working(tmp_path: Path) -> None:
    token = add_sender(tmp_path, "ca", "department", "civil_affairs")
    revoke_sender(tmp_path, "ca")

    assert authenticate(tmp_path, token) is None
    with pytest.raises(SenderError, match="no sender 'ca'"):
        revoke_sender(tmp_path, "ca")


def test_community_sender_is_its_community(tmp_path: Path) -> None:
    add_sender(tmp_path, "station", "community", None, COMMUNITY)

    (sender,) = list_senders(tmp_path)
    assert (sender.kind, sender.department, sender.division) == ("community", f"community:{COMMUNITY}", COMMUNITY)


@pytest.mark.parametrize("division", [None, STREET, "440300999999", "not-a-code"],
                         ids=["missing", "a-street", "unknown-code", "malformed"])
def test_community_sender_needs_a_community_code(tmp_path: Path, division: str | None) -> None:
    with pytest.raises(SenderError, match="community code"):
        add_sender(tmp_path, "station", "community", None, division)
    assert not registry_path(tmp_path).exists()


@pytest.mark.parametrize(("sender_id", "kind", "department", "division", "message"), [
    ("../x", "department", "civil_affairs", None, "sender id"),
    ("ca", "department", "Civil Affairs", None, "department slug"),
    ("ca", "department", None, None, "department slug"),
    ("ca", "department", "civil_affairs", COMMUNITY, "--division applies to a community sender only"),
    ("station", "community", "civil_affairs", COMMUNITY, "--department applies to a department sender only"),
    ("ca", "street", "civil_affairs", None, "kind 'street'"),
], ids=["bad-id", "bad-department", "no-department", "department-with-division",
        "community-with-department", "unknown-kind"])
def test_invalid_senders_are_refused(tmp_path: Path, sender_id: str, kind: str, department: str | None,
                                     division: str | None, message: str) -> None:
    with pytest.raises(SenderError, match=message):
        add_sender(tmp_path, sender_id, kind, department, division)


def test_an_id_is_issued_once(tmp_path: Path) -> None:
    first = add_sender(tmp_path, "ca", "department", "civil_affairs")
    with pytest.raises(SenderError, match="already exists"):
        add_sender(tmp_path, "ca", "department", "civil_affairs")

    assert authenticate(tmp_path, first) is not None


def test_listing_shows_no_digest(tmp_path: Path) -> None:
    token = add_sender(tmp_path, "ca", "department", "civil_affairs")

    listed = repr(list_senders(tmp_path))
    assert "ca" in listed
    assert hashlib.sha256(token.encode()).hexdigest() not in listed and token not in listed
