"""Dataset contracts: Frictionless Table Schema plus civicnet properties, loaded and checked.

A contract file is the one place a dataset's columns, types, owner, anchor and tiers are
written. Everything else (Arrow schemas, DuckDB DDL, quality suites) is derived from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from schemas.divisions import TIERS, Tier
from schemas.errors import ContractError
from schemas.reporting import ReportingRule, rule_from_mapping
from schemas.sql import IDENTIFIER_RULE, identifier_problem

FieldType = Literal["string", "integer", "number", "date", "datetime", "boolean"]
HistoryMode = Literal["scd2", "snapshot", "events"]
Cadence = Literal["hourly", "daily", "weekly", "monthly", "quarterly", "yearly"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)
HISTORY_MODES: tuple[str, ...] = get_args(HistoryMode)
CADENCES: tuple[str, ...] = get_args(Cadence)
KNOWN_CONSTRAINTS = {"required", "unique", "pattern", "enum", "minimum", "maximum", "minLength", "maxLength"}
KNOWN_CHECKS = {"gb11643"}
ANCHOR_FIELD = "division_code"
# the column an accepted batch carries beside the contract fields: true on a tombstone (a source delete)
DELETED_COLUMN = "_deleted"
# ... and, for a batch confined to one division (a community's push), each row's line in the file and its
# values as sent (JSON): the merge may still quarantine such a row (a key another division holds)
LINE_COLUMN = "_line"
RAW_COLUMN = "_raw"
_REQUIRED_KEYS = ("name", "version", "owner", "anchor", "anchor_tier", "history", "cadence",
                  "reaches", "primaryKey", "fields")


@dataclass(frozen=True)
class Field:
    """One column of a dataset contract."""

    name: str
    type: FieldType
    title: str
    constraints: Mapping[str, Any] = field(default_factory=dict)
    pii: bool = False
    checks: tuple[str, ...] = ()
    measure: bool = False

    @property
    def required(self) -> bool:
        """True if the field may not be empty."""
        return bool(self.constraints.get("required", False))


@dataclass(frozen=True)
class Contract:
    """The unified schema of one dataset."""

    name: str
    title: str
    description: str
    version: str
    owner: str
    anchor: str
    anchor_tier: Tier | Literal["any"]
    history: HistoryMode
    cadence: Cadence
    reaches: tuple[Tier, ...]
    pii_tiers: tuple[Tier, ...]
    primary_key: tuple[str, ...]
    fields: tuple[Field, ...]
    source: str
    reporting: ReportingRule | None = None  # a periodic report: who owes it, for which periods, by when

    @property
    def field_names(self) -> list[str]:
        """Column names in contract order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        """The field called `name`."""
        for f in self.fields:
            if f.name == name:
                return f
        raise ContractError(f"{self.source}: contract {self.name!r} has no field {name!r}")

    def fields_for_tier(self, tier: Tier) -> tuple[Field, ...]:
        """The fields a node of this tier may hold: PII only where pii_tiers allows."""
        return tuple(f for f in self.fields if not f.pii or tier in self.pii_tiers)


def _fail(source: str, where: str, problem: str, fix: str) -> ContractError:
    return ContractError(f"{source}: {where}: {problem}; {fix}")


def _check_name(source: str, where: str, what: str, name: object) -> None:
    """Refuse a dataset or field name that breaks IDENTIFIER_RULE (it is quoted in SQL all the same)."""
    problem = identifier_problem(name)
    if problem is not None:
        raise _fail(source, where, f"{what} {name!r} {problem}", f"rename it: {IDENTIFIER_RULE}")


def _parse_field(raw: Any, source: str, index: int) -> Field:
    where = f"fields[{index}]"
    if not isinstance(raw, dict) or "name" not in raw:
        raise _fail(source, where, "a field must be a mapping with a 'name'", "add 'name: <column>'")
    _check_name(source, where, "field name", raw["name"])
    where = f"field {raw['name']!r}"
    ftype = raw.get("type")
    if ftype not in FIELD_TYPES:
        raise _fail(source, where, f"type {ftype!r} is not one of {list(FIELD_TYPES)}",
                    "set 'type' to a Table Schema type civicnet supports")
    constraints = raw.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise _fail(source, where, f"constraints must be a mapping, not {type(constraints).__name__}",
                    "write them as 'constraints: {required: true, ...}'")
    unknown = set(constraints) - KNOWN_CONSTRAINTS
    if unknown:
        raise _fail(source, where, f"unknown constraints {sorted(unknown)}",
                    f"use only {sorted(KNOWN_CONSTRAINTS)}")
    checks = tuple(raw.get("checks") or ())
    if set(checks) - KNOWN_CHECKS:
        raise _fail(source, where, f"unknown checks {sorted(set(checks) - KNOWN_CHECKS)}",
                    f"use only {sorted(KNOWN_CHECKS)}")
    if "title" not in raw:
        raise _fail(source, where, "has no title", "give every field a Chinese 'title' for analysts")
    return Field(name=str(raw["name"]), type=ftype, title=str(raw["title"]),
                 constraints=dict(constraints), pii=bool(raw.get("pii", False)), checks=checks,
                 measure=bool(raw.get("measure", False)))


def _tiers(raw: Any, source: str, key: str) -> tuple[Tier, ...]:
    values = raw if isinstance(raw, list) else None
    if values is None or any(v not in TIERS for v in values):
        raise _fail(source, key, f"{raw!r} is not a list of tiers", f"use a subset of {list(TIERS)}")
    return tuple(values)


def contract_from_mapping(raw: Any, source: str) -> Contract:
    """Build and check a contract from parsed YAML; errors name the file, the key and the fix."""
    if not isinstance(raw, dict):
        raise _fail(source, "top level", "a contract must be a mapping", "see schemas/datasets/residents.yaml")
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise _fail(source, key, "is missing", f"add '{key}:' (see schemas/datasets/residents.yaml)")
    _check_name(source, "name", "dataset name", raw["name"])
    fields = tuple(_parse_field(f, source, i) for i, f in enumerate(raw["fields"] or []))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise _fail(source, "fields", "a field name repeats", "give every field a unique name")
    if raw["anchor"] != ANCHOR_FIELD or ANCHOR_FIELD not in names:
        raise _fail(source, "anchor", f"anchor must be a field called {ANCHOR_FIELD!r}",
                    f"name the division code column {ANCHOR_FIELD!r} and set 'anchor: {ANCHOR_FIELD}'")
    if "vintage" not in names or fields[names.index("vintage")].type != "integer":
        raise _fail(source, "fields", "has no integer field 'vintage'",
                    "keep the division vintage on every row: add a required integer field 'vintage'")
    missing_pk = [k for k in raw["primaryKey"] or [] if k not in names]
    if not raw["primaryKey"] or missing_pk:
        raise _fail(source, "primaryKey", f"names no field or unknown fields {missing_pk}",
                    "list one or more existing field names")
    if raw["history"] not in HISTORY_MODES:
        raise _fail(source, "history", f"{raw['history']!r} is not one of {list(HISTORY_MODES)}", "pick one")
    if raw["cadence"] not in CADENCES:
        raise _fail(source, "cadence", f"{raw['cadence']!r} is not one of {list(CADENCES)}", "pick one")
    if raw["anchor_tier"] not in (*TIERS, "any"):
        raise _fail(source, "anchor_tier", f"{raw['anchor_tier']!r} is not a tier",
                    f"use one of {list(TIERS)} or 'any'")
    return Contract(
        name=str(raw["name"]), title=str(raw.get("title", raw["name"])),
        description=str(raw.get("description", "")), version=str(raw["version"]),
        owner=str(raw["owner"]), anchor=ANCHOR_FIELD, anchor_tier=raw["anchor_tier"],
        history=raw["history"], cadence=raw["cadence"],
        reaches=_tiers(raw["reaches"], source, "reaches"),
        pii_tiers=_tiers(raw.get("pii_tiers", []), source, "pii_tiers"),
        primary_key=tuple(raw["primaryKey"]), fields=fields, source=source,
        reporting=_reporting(raw, fields, source),
    )


def _reporting(raw: dict[str, Any], fields: tuple[Field, ...], source: str) -> ReportingRule | None:
    """The contract's `reporting:` block (schemas/reporting.py), if any: its units are the anchor's tier."""
    if "reporting" not in raw:
        return None
    try:
        rule = rule_from_mapping(raw["reporting"], {f.name: f.type for f in fields}, "reporting")
    except ValueError as err:
        raise ContractError(f"{source}: {err}") from None
    if rule.unit_tier != raw["anchor_tier"]:
        raise _fail(source, "reporting.unit_tier", f"{rule.unit_tier!r} is not the anchor's tier "
                    f"{raw['anchor_tier']!r}", "a report is owed by the unit its rows are anchored at")
    return rule


def load_contract(path: Path | str, shown: str | None = None) -> Contract:
    """Load one contract file (YAML or JSON). `shown` is how messages name the file (its `source`):
    the path itself unless given; shipped contracts are named by their path in the repository, so a
    message that reaches a remote sender never reveals where the server keeps its files."""
    path = Path(path)
    source = shown if shown is not None else str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ContractError(f"{source}: is not valid YAML ({err}); fix the syntax") from None
    except UnicodeDecodeError as err:
        raise ContractError(f"{source}: is not UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8") from None
    contract = contract_from_mapping(raw, source)
    if contract.name != path.stem:
        raise _fail(source, "name", f"{contract.name!r} differs from the file name",
                    f"rename the file to {contract.name}.yaml or fix 'name'")
    return contract


def load_contracts() -> dict[str, Contract]:
    """All shipped contracts, by dataset slug."""
    folder = resources.files("schemas") / "datasets"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            contract = load_contract(Path(str(entry)), f"schemas/datasets/{entry.name}")
            out[contract.name] = contract
    return out
