"""Who may write a dataset, and which rows: the owner department all of them, a community work
station its own community's rows where the feed lets communities write, anyone else none."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from schemas.contract import load_contracts
from schemas.errors import TerminalError
from schemas.rights import Permit, Writer, WriteRefusedError, writable_scope

CONTRACT = load_contracts()["community_expenditures"]  # owner: civil_affairs
COMMUNITY = "440304001001"
OWNER = Writer("ca", "department", "civil_affairs")
OTHER = Writer("ps", "department", "public_security")
STATION = Writer("station", "community", f"community:{COMMUNITY}", COMMUNITY)
BOTH: tuple[Permit, ...] = ("owner", "community")


def refusal(writer: Writer, permits: Collection[Permit]) -> str:
    with pytest.raises(WriteRefusedError) as caught:
        writable_scope(CONTRACT, writer, permits)
    assert isinstance(caught.value, TerminalError)  # a person must act: no retry
    assert (caught.value.dataset, caught.value.owner) == ("community_expenditures", "civil_affairs")
    return str(caught.value)


def test_the_owner_department_may_write_the_whole_dataset() -> None:
    assert CONTRACT.owner == "civil_affairs"
    assert writable_scope(CONTRACT, OWNER) is None
    assert writable_scope(CONTRACT, OWNER, BOTH) is None


def test_a_community_may_write_only_its_own_community_where_the_feed_allows() -> None:
    assert writable_scope(CONTRACT, STATION, ("community",)) == COMMUNITY
    assert writable_scope(CONTRACT, STATION, BOTH) == COMMUNITY


def test_another_department_is_refused_with_the_owner_named() -> None:
    message = refusal(OTHER, BOTH)
    assert message == ("dataset 'community_expenditures' is owned by department 'civil_affairs': only its owner "
                       "department and community work stations (their own rows) may push it, and sender 'ps' "
                       "(public_security) is not one; send the file to 'civil_affairs' instead")


def test_a_community_is_refused_where_the_feed_allows_the_owner_only() -> None:
    message = refusal(STATION, ("owner",))
    assert "only its owner department may push it" in message
    assert "'station'" in message and f"community:{COMMUNITY}" in message


def test_the_owner_is_refused_where_the_feed_allows_communities_only() -> None:
    assert "only community work stations (their own rows) may push it" in refusal(OWNER, ("community",))


def test_a_community_without_its_division_writes_nothing() -> None:
    refusal(Writer("station", "community", f"community:{COMMUNITY}", None), BOTH)


def test_a_department_named_like_a_community_is_still_a_department() -> None:
    # the kind decides, not the department text: a department sender may not pass for a station
    refusal(Writer("x", "department", f"community:{COMMUNITY}", COMMUNITY), ("community",))
