"""The invariants the bench checks on the pipeline home after every case (issue 11: "the invariants
still hold at scale 1.0"): every extract holds only its jurisdiction, each tier adds up to the
tier above, every batch of the city ledger balances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from civicnet.pipeline.network import read_network_index
from civicnet.pipeline.status import collect
from schemas.contract import load_contracts
from schemas.divisions import load_registry, subtree_prefix
from schemas.sql import quote_ident, quote_literal

SUMMED = ("residents", "facilities")  # anchored at communities: every tier holds all of them


def outside_rows(con: duckdb.DuckDBPyConnection, path: Path, code: str, datasets: list[str]) -> dict[str, int]:
    """dataset → rows of one extract whose division_code lies outside the node's subtree."""
    con.execute(f"ATTACH {quote_literal(str(path))} AS f (READ_ONLY)")
    try:
        held = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                          "WHERE database_name = 'f'").fetchall()}
        names = [d for d in datasets if d in held]
        if not names:
            return {}
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM f.{quote_ident(d)} WHERE NOT "
                                    f"starts_with(division_code, $prefix))" for d in names)
        row = con.execute(sql, {"prefix": subtree_prefix(code)}).fetchone() or ()
        return {d: int(n) for d, n in zip(names, row, strict=True) if n}
    finally:
        con.execute("DETACH f")


def check(home: Path) -> dict[str, Any]:
    """Every invariant, with what breaks it (empty lists when all hold)."""
    index = read_network_index(home)
    registry = load_registry()
    datasets = sorted(load_contracts())
    with duckdb.connect() as con:
        outside = {n.code: o for n in index.nodes if (o := outside_rows(con, n.extract, n.code, datasets))}
    rows = {n.code: n.rows for n in index.nodes}
    sums = [{"node": code, "dataset": d, "rows": held.get(d, 0),
             "children": sum(rows.get(c.code, {}).get(d, 0) for c in children)}
            for code, held in rows.items() if (children := registry.children(code)) for d in SUMMED]
    batches = [e.to_dict() for e in collect(home).batches]
    unbalanced = [b for b in batches if not b.get("balanced")]
    return {
        "nodes": len(index.nodes),
        "outside_jurisdiction": outside,
        "tier_sum_mismatches": [s for s in sums if s["rows"] != s["children"]],
        "batches": len(batches),
        "unbalanced_batches": unbalanced,
        "hold": not outside and all(s["rows"] == s["children"] for s in sums) and not unbalanced,
    }
