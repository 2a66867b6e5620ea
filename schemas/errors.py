"""The one error hierarchy of civicnet: transient (retry may help) or terminal (a person must act)."""

from __future__ import annotations


class CivicnetError(Exception):
    """Base of every error civicnet raises on purpose."""

    transient = False


class TransientError(CivicnetError):
    """A retry may help: a timeout, a 5xx, a locked node."""

    transient = True


class TerminalError(CivicnetError):
    """A person must act: bad config, a contract violation, a failed quality gate."""


class ContractError(TerminalError):
    """A dataset contract file is malformed."""


class UnknownDivisionError(TerminalError):
    """A division code is not in the registry of its vintage."""


class InvalidDivisionCodeError(TerminalError):
    """A string is not a well-formed 12-digit division code."""
