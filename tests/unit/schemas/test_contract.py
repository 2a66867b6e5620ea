"""Dataset contracts: the shipped ones load as designed; a broken file is refused with a fix."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.contract import Contract, load_contract, load_contracts
from schemas.errors import ContractError, TerminalError

RESIDENTS: dict[str, Any] = yaml.safe_load(
    (resources.files("schemas") / "datasets" / "residents.yaml").read_text(encoding="utf-8"))
ALL_TIERS = ("city", "district", "street", "community")
DROP = object()  # an override value that removes the key instead of setting it


def make_contract(**overrides: Any) -> dict[str, Any]:
    """The shipped residents contract as a dict, with top-level keys replaced (or DROPped)."""
    raw = copy.deepcopy(RESIDENTS)
    for key, value in overrides.items():
        if value is DROP:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def fields_with(field_name: str, /, **changes: Any) -> list[dict[str, Any]]:
    """The residents fields with one field's keys replaced (or DROPped)."""
    fields = copy.deepcopy(RESIDENTS["fields"])
    (target,) = [f for f in fields if f["name"] == field_name]
    for key, value in changes.items():
        if value is DROP:
            target.pop(key)
        else:
            target[key] = value
    return fields


def fields_without(name: str) -> list[dict[str, Any]]:
    return [f for f in copy.deepcopy(RESIDENTS["fields"]) if f["name"] != name]


def write_contract(folder: Path, raw: Any, file_name: str = "residents.yaml") -> Path:
    path = folder / file_name
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped contracts ---------------------------------------------------------------------

def test_shipped_contracts_are_exactly_the_demo_datasets() -> None:
    assert sorted(load_contracts()) == ["community_expenditures", "divisions", "facilities", "health_stations",
                                        "mediation_committees", "residents"]


@pytest.mark.parametrize(
    ("name", "owner", "primary_key", "anchor_tier", "pii_tiers"),
    [
        ("divisions", "statistics", ("division_code",), "any", ()),
        ("mediation_committees", "justice", ("committee_id",), "community", ("city", "district")),
        ("health_stations", "health", ("station_id",), "community", ()),
        ("community_expenditures", "civil_affairs", ("expenditure_id",), "community", ()),
        ("residents", "public_security", ("citizen_id",), "community", ALL_TIERS),
        ("facilities", "civil_affairs", ("facility_id",), "community", ()),
    ],
)
def test_shipped_contract_properties(name: str, owner: str, primary_key: tuple[str, ...],
                                     anchor_tier: str, pii_tiers: tuple[str, ...]) -> None:
    contract = load_contracts()[name]
    assert contract.name == name
    assert contract.owner == owner
    assert contract.primary_key == primary_key
    assert contract.anchor == "division_code"
    assert "division_code" in contract.field_names
    assert contract.anchor_tier == anchor_tier
    assert contract.reaches == ALL_TIERS
    assert contract.pii_tiers == pii_tiers
    assert contract.field("vintage").type == "integer"
    assert contract.field("vintage").required
    assert contract.source.endswith(f"{name}.yaml")


def test_residents_pii_fields_and_citizen_id_check() -> None:
    contract = load_contracts()["residents"]
    assert {f.name for f in contract.fields if f.pii} == {"citizen_id", "name", "address", "phone"}
    assert contract.field("citizen_id").checks == ("gb11643",)
    assert contract.field("sex").constraints["enum"] == ["1", "2"]
    assert contract.field("name").title == "姓名"


def test_every_field_has_a_title() -> None:
    for contract in load_contracts().values():
        assert all(f.title for f in contract.fields), contract.name


def test_unknown_field_name_is_a_contract_error_naming_the_field() -> None:
    contract = load_contracts()["residents"]
    with pytest.raises(ContractError, match="no field 'passport'"):
        contract.field("passport")


def test_the_factory_without_overrides_loads(tmp_path: Path) -> None:
    # Guard for the breakage cases below: every failure there comes from the one mutation.
    contract = load_contract(write_contract(tmp_path, make_contract()))
    assert isinstance(contract, Contract)
    assert contract.field_names == [f["name"] for f in RESIDENTS["fields"]]


# --- malformed contracts -----------------------------------------------------------------------

# (contract as dict or raw YAML text, the key/field the message must name, a fragment of the fix)
BROKEN: dict[str, tuple[Any, str, str]] = {
    "not_a_mapping": (["name", "residents"], "top level", "see schemas/datasets/residents.yaml"),
    "empty_file": ("", "top level", "see schemas/datasets/residents.yaml"),
    "missing_owner": (make_contract(owner=DROP), "owner", "add 'owner:'"),
    "missing_fields": (make_contract(fields=DROP), "fields", "add 'fields:'"),
    "missing_primary_key": (make_contract(primaryKey=DROP), "primaryKey", "add 'primaryKey:'"),
    "missing_anchor": (make_contract(anchor=DROP), "anchor", "add 'anchor:'"),
    "missing_version": (make_contract(version=DROP), "version", "add 'version:'"),
    "field_not_a_mapping": (make_contract(fields=["citizen_id", *RESIDENTS["fields"][1:]]),
                            "fields[0]", "add 'name: <column>'"),
    "field_without_name": (make_contract(fields=fields_with("phone", name=DROP)),
                           "fields[7]", "add 'name: <column>'"),
    "unknown_type": (make_contract(fields=fields_with("name", type="text")),
                     "field 'name'", "set 'type' to a Table Schema type"),
    "missing_type": (make_contract(fields=fields_with("phone", type=DROP)),
                     "field 'phone'", "set 'type' to a Table Schema type"),
    "unknown_constraint": (make_contract(fields=fields_with("phone", constraints={"regex": "^1"})),
                           "field 'phone'", "use only ["),
    "unknown_check": (make_contract(fields=fields_with("citizen_id", checks=["luhn"])),
                      "field 'citizen_id'", "use only ['gb11643']"),
    "field_without_title": (make_contract(fields=fields_with("address", title=DROP)),
                            "field 'address'", "give every field a Chinese 'title'"),
    "duplicate_field": (make_contract(fields=[*RESIDENTS["fields"], RESIDENTS["fields"][1]]),
                        "fields", "give every field a unique name"),
    "anchor_not_division_code": (make_contract(anchor="household_id"),
                                 "anchor", "set 'anchor: division_code'"),
    "anchor_field_renamed": (make_contract(anchor="community_code",
                                           fields=fields_with("division_code", name="community_code")),
                             "anchor", "name the division code column 'division_code'"),
    "no_vintage_field": (make_contract(fields=fields_without("vintage")),
                         "fields", "add a required integer field 'vintage'"),
    "vintage_not_integer": (make_contract(fields=fields_with("vintage", type="string")),
                            "fields", "add a required integer field 'vintage'"),
    "pk_unknown_field": (make_contract(primaryKey=["id_number"]), "primaryKey",
                         "list one or more existing field names"),
    "pk_empty": (make_contract(primaryKey=[]), "primaryKey", "list one or more existing field names"),
    "bad_history": (make_contract(history="full"), "history", "pick one"),
    "bad_cadence": (make_contract(cadence="fortnightly"), "cadence", "pick one"),
    "bad_anchor_tier": (make_contract(anchor_tier="province"), "anchor_tier",
                        "use one of ['city', 'district', 'street', 'community'] or 'any'"),
    "bad_reaches_tier": (make_contract(reaches=["city", "province"]), "reaches", "use a subset of"),
    "reaches_not_a_list": (make_contract(reaches="city"), "reaches", "use a subset of"),
    "bad_pii_tier": (make_contract(pii_tiers=["village"]), "pii_tiers", "use a subset of"),
    "invalid_yaml": ("name: [residents\nowner: public_security\n", "is not valid YAML",
                     "fix the syntax"),
    "constraints_not_a_mapping": (make_contract(fields=fields_with("phone", constraints=["required"])),
                                  "field 'phone'", "constraints"),
    # names: checked once here, so SQL built from them never meets a surprise (schemas/sql.py)
    "dataset_name_upper_case": (make_contract(name="Residents"), "dataset name 'Residents'",
                                "rename it: a lower-case ASCII letter first"),
    "field_name_upper_case": (make_contract(fields=fields_with("phone", name="Phone")),
                              "fields[7]: field name 'Phone' is not plain lower-case ASCII", "rename it: "),
    "field_name_reserved_prefix": (make_contract(fields=fields_with("phone", name="_line")),
                                   "field name '_line' starts with '_'", "rename it: "),
    "field_name_with_a_quote": (make_contract(fields=fields_with("phone", name='phone" text, "x')),
                                "fields[7]: field name", "then lower-case letters, digits or '_'"),
    "field_name_chinese": (make_contract(fields=fields_with("phone", name="电话")),
                           "field name '电话'", "rename it: "),
    "field_name_too_long": (make_contract(fields=fields_with("phone", name="p" * 64)),
                            "is 64 characters long", "at most 63 characters"),
    "field_name_a_number": (make_contract(fields=fields_with("phone", name=7)),
                            "field name 7 is a int, not text", "rename it: "),
}


@pytest.mark.parametrize(("raw", "key", "fix"), list(BROKEN.values()), ids=list(BROKEN))
def test_malformed_contract_is_refused_naming_file_key_and_fix(tmp_path: Path, raw: Any, key: str,
                                                               fix: str) -> None:
    path = write_contract(tmp_path, raw)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    message = str(caught.value)
    assert str(path) in message
    assert key in message
    assert fix in message


def test_name_differing_from_file_name_is_refused(tmp_path: Path) -> None:
    path = write_contract(tmp_path, make_contract(), file_name="people.yaml")
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    message = str(caught.value)
    assert str(path) in message
    assert "name: 'residents' differs from the file name" in message
    assert "rename the file to residents.yaml" in message


def test_contract_not_in_utf8_is_refused_with_a_contract_error(tmp_path: Path) -> None:
    # A contract saved by an editor in GB18030 (the titles are Chinese) must be refused like any
    # other malformed file, not crash with a bare UnicodeDecodeError.
    path = tmp_path / "residents.yaml"
    path.write_bytes(yaml.safe_dump(make_contract(), allow_unicode=True).encode("gb18030"))
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    assert str(path) in str(caught.value)


def test_contract_errors_are_terminal() -> None:
    assert issubclass(ContractError, TerminalError)
    assert not ContractError.transient


def test_every_text_field_is_bounded() -> None:
    """Free text without a maxLength would let one value be megabytes long (it reaches every tier)."""
    unbounded = [f"{c.name}.{f.name}" for c in load_contracts().values() for f in c.fields
                 if f.type == "string" and not {"maxLength", "pattern", "enum"} & set(f.constraints)]
    assert unbounded == []


def test_shipped_contracts_are_named_by_their_repository_path() -> None:
    """Messages (a gateway's 422 included) name a contract without the server's directories."""
    for name, contract in load_contracts().items():
        assert contract.source == f"schemas/datasets/{name}.yaml"
