"""Each hop's rollups of a periodic report, checked, and their delivery to the departments that
subscribe to them (issue 13, items 5 and 6): `civicnet reports rollup --period P [--deliver]`,
and the network DAG's `deliver_rollups` task after each run.

Every node of the network (city, districts, streets, communities) is read through its store (a
server node's local copy, brought level with the server first when it is behind). Its rollup for
the period (warehouse/rollups.py) is checked against its children's own rollups; a mismatch
names the child.

A delivery goes only to the report's `subscribers` (the contract's reporting block: finance for
the expenditure reports), and only when every hop checks. It lands in the subscriber's outbox:
`outbox/<department>/<report>/rollup-<period>.json` and `.csv` (UTF-8, Chinese headers from the
contract's titles, the cells a spreadsheet would run quoted). Each delivery is recorded in
`deliveries.json` beside them: the period, the content's sha256 and when it was delivered. A
second delivery of the same content changes nothing; changed content (a correction) is delivered
again and recorded as a new entry.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from civicnet import context
from civicnet.pipeline.obligations import latest_period, reports, submitted_units
from quality.rejection import outbox_dir
from schemas.contract import Contract
from schemas.csvsafe import safe_cell
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from schemas.reporting import ReportingError, parse_period
from warehouse.node import attach, connect, detach, node_errors
from warehouse.rollups import NodeRollup, check, measures, rollup
from warehouse.stores import store_of

TIER_NAMES = {"city": "市", "district": "区", "street": "街道", "community": "社区"}


class RollupMismatchError(TerminalError):
    """A hop's rollup does not equal the sum of its children's: nothing is delivered."""


def node_rollups(home: Path, contract: Contract, label: str) -> dict[str, NodeRollup]:
    """The rollup of every node that exists, by code (a node not yet synced has none)."""
    period = parse_period(label)
    contracts = context.contracts()
    out = {}
    con = connect()
    try:
        for division in context.registry().walk():
            store = store_of(home, division.code)
            if not store.exists():
                continue
            with node_errors(store.local):
                store.ready(contracts)  # a server node's copy, brought level with the server if behind
                attach(con, store.local, "n", read_only=True)
            try:
                out[division.code] = rollup(con, "n", division.code, contract, period)
            finally:
                detach(con, "n")
    finally:
        con.close()
    return out


def checked_rollups(home: Path, label: str, report: str | None = None) -> list[dict[str, Any]]:
    """Each report's rollups for the period at every hop, with the mismatches the check found."""
    period = parse_period(label)
    chosen = [c for c in reports() if report in (None, c.name) and c.reporting and c.reporting.period == period.kind]
    if report is not None and not chosen:
        raise ReportingError(f"{report!r} is not a periodic report reported per {period.kind}; the reports are "
                             f"{', '.join(c.name for c in reports())}")
    registry = context.registry()
    out = []
    for contract in chosen:
        assert contract.reporting is not None
        found = node_rollups(home, contract, period.label)
        mismatches = [m for code, r in found.items() for m in
                      check(r, {c.code: found[c.code] for c in registry.children(code) if c.code in found})]
        names = [*contract.reporting.rollup_by, *measures(contract)]
        out.append({"report": contract.name, "title": contract.title, "period": period.label,
                    "by": list(contract.reporting.rollup_by), "measures": measures(contract),
                    "titles": {n: contract.field(n).title for n in names},
                    "nodes": [{"code": code, "tier": registry.get(code).tier, "name": registry.get(code).name,
                               "groups": [{"by": list(g), "rows": t.rows, **t.sums}
                                          for g, t in sorted(r.totals.items(), key=repr)]}
                              for code, r in sorted(found.items())],
                    "mismatches": [{"node": m.node, "child": m.child, "group": list(m.group), "measure": m.measure,
                                    "node_value": m.node_value, "child_value": m.child_value,
                                    "detail": m.sentence()} for m in mismatches]})
    return out


def _csv(rolled: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    titles = rolled["titles"]
    writer.writerow(["区划代码", "名称", "层级", "期间", *(titles[b] for b in rolled["by"]), "行数",
                     *(titles[m] for m in rolled["measures"])])
    kinds = [False] * (4 + len(rolled["by"])) + [True] * (1 + len(rolled["measures"]))  # text, then numbers
    for node in rolled["nodes"]:
        for group in node["groups"]:
            cells = [node["code"], node["name"], TIER_NAMES[node["tier"]], rolled["period"], *group["by"],
                     group["rows"], *(group[m] for m in rolled["measures"])]
            writer.writerow([safe_cell(c, numeric=k) for c, k in zip(cells, kinds, strict=True)])
    return out.getvalue()


def deliver(home: Path, label: str, report: str | None = None, now: dt.datetime | None = None,
            checked: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Deliver each checked rollup (`checked`, as `checked_rollups` made them, or made now) to its
    subscribers; what was delivered (or already was)."""
    now = now or dt.datetime.now(dt.UTC)
    done = []
    for rolled in checked if checked is not None else checked_rollups(home, label, report):
        if rolled["mismatches"]:
            children = sorted({m["child"] for m in rolled["mismatches"]})
            raise RollupMismatchError(
                f"{rolled['report']} {rolled['period']}: {len(rolled['mismatches'])} rollup mismatches, in the "
                f"children {', '.join(children[:5])}{' ...' if len(children) > 5 else ''} "
                f"(first: {rolled['mismatches'][0]['detail']}); nothing was delivered: run `civicnet verify --repair`")
        contract = next(c for c in reports() if c.name == rolled["report"])
        assert contract.reporting is not None
        body = json.dumps(rolled, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        for department in contract.reporting.subscribers:
            done.append(_deliver_one(home, department, rolled, body, digest, now))
    return done


def _deliver_one(home: Path, department: str, rolled: dict[str, Any], body: str, digest: str,
                 now: dt.datetime) -> dict[str, Any]:
    folder = outbox_dir(home, department, rolled["report"])
    make_folder(folder)
    ledger_path = folder / "deliveries.json"
    ledger: list[dict[str, Any]] = json.loads(ledger_path.read_text("utf-8")) if ledger_path.exists() else []
    last = next((e for e in reversed(ledger) if e["period"] == rolled["period"]), None)
    files = [folder / f"rollup-{rolled['period']}.json", folder / f"rollup-{rolled['period']}.csv"]
    if last is not None and last["sha256"] == digest and all(f.exists() for f in files):
        return {**last, "department": department, "new": False}
    write_atomic(files[0], body)
    write_atomic(files[1], _csv(rolled))
    entry = {"period": rolled["period"], "sha256": digest, "delivered_at": now.isoformat(timespec="seconds"),
             "files": [f.name for f in files], "nodes": len(rolled["nodes"])}
    write_atomic(ledger_path, json.dumps([*ledger, entry], ensure_ascii=False, indent=1) + "\n")
    return entry | {"department": department, "new": True}


def deliver_rollups(home: Path, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """After a network run (the network DAG's `deliver_rollups` task): each subscribed report's
    rollup of the latest period the city holds a submission of, checked and delivered; nothing
    for a report no one has submitted yet, or before the city node exists."""
    now = now or dt.datetime.now(dt.UTC)
    if not store_of(home, context.city_code()).ready(context.contracts()):
        return []
    done = []
    for contract in reports():
        if contract.reporting and contract.reporting.subscribers:
            period = latest_period(home, contract, now)
            if submitted_units(home, contract, period):
                done += deliver(home, period.label, contract.name, now)
    return done
