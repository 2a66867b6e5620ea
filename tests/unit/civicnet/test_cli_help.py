"""Every command and option of `civicnet` says what it does, and every default is shown in --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from civicnet.cli import parser


def walk(p: argparse.ArgumentParser, path: tuple[str, ...] = ("civicnet",)) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The parser and every subparser under it, with its command path."""
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


PARSERS = dict((" ".join(path), p) for path, p in walk(parser()))


def options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's own arguments (not -h, not the subcommand selector)."""
    return [a for a in p._actions
            if not isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction)]


def test_there_is_more_than_one_command() -> None:
    assert {"civicnet status", "civicnet gateway add-sender", "civicnet feeds", "civicnet datasets",
            "civicnet init"} <= set(PARSERS)


@pytest.mark.parametrize("name", PARSERS)
def test_every_subcommand_has_help(name: str) -> None:
    for action in PARSERS[name]._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            assert set(helps) == set(action.choices), f"{name}: a subcommand has no help"
            assert all(helps.values()), f"{name}: subcommands without help: {helps}"


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_has_help(name: str) -> None:
    missing = [a.option_strings or a.dest for a in options(PARSERS[name]) if not (a.help or "").strip()]
    assert missing == [], f"{name}: options without help"


@pytest.mark.parametrize("name", PARSERS)
def test_every_default_is_shown(name: str) -> None:
    p = PARSERS[name]
    text = " ".join(p.format_help().split())
    for a in options(p):
        if a.default in (None, False, argparse.SUPPRESS) or a.required:
            continue
        shown = ", ".join(a.default) if isinstance(a.default, list) else str(a.default)
        assert f"default: {shown})" in text, f"{name} {a.option_strings}: default {a.default!r} not in its help"


@pytest.mark.parametrize("name", PARSERS)
def test_an_option_without_a_default_says_what_happens_without_it(name: str) -> None:
    """An optional value option with no default says in its help what applies when it is left out."""
    for a in options(PARSERS[name]):
        if a.option_strings and a.default is None and not a.required and a.nargs != 0:
            assert "default" in (a.help or "") or "only" in (a.help or ""), \
                f"{name} {a.option_strings}: say what applies without it"
