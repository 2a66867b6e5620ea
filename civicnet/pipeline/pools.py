"""The Airflow pools that keep one writer per node: the city's, and one per district subtree.

The ingest DAGs' merge writes the city node (pool `civicnet_city_node`); network_sync's task of a
district writes every node of its subtree (district, streets, communities: pool
`civicnet_district_<code>`). Each pool has one slot, so however many workers and runs there are,
a node has one writer at a time. Light on purpose: the DAG files read it while Airflow parses them
(the shipped division registry only, no DuckDB), and the embedded session and the service both
create the pools from `pool_specs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.divisions import load_registry

CITY_POOL = "civicnet_city_node"
DISTRICT_POOL = "civicnet_district_{code}"


@dataclass(frozen=True)
class Pool:
    """One Airflow pool: its name, slots and what it is for (shown in the UI)."""

    name: str
    slots: int
    description: str


def district_codes() -> list[str]:
    """The districts of the network, in code order: one sync task and one pool each."""
    return [d.code for d in load_registry().by_tier("district")]


def district_pool(code: str) -> str:
    """The pool of the single writer of one district's subtree."""
    return DISTRICT_POOL.format(code=code)


def pool_specs() -> list[Pool]:
    """Every pool civicnet's DAGs use, the city's first."""
    return [Pool(CITY_POOL, 1, "single writer of the city node"),
            *(Pool(district_pool(code), 1, f"single writer of district {code}'s subtree")
              for code in district_codes())]


def pools_json(pools: list[Pool]) -> str:
    """The pools as `airflow pools import` reads them (one command creates or updates them all)."""
    return json.dumps({p.name: {"slots": p.slots, "description": p.description, "include_deferred": False}
                       for p in pools}, ensure_ascii=False, indent=1)
