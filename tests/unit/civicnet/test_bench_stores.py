"""The bench's node-store side (civicnet.bench.stores_side): the server home is the pipeline home's
feeds with every node mapped to a database made anew, and the transport measurement moves every
row both ways on both drivers. Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from civicnet.bench import stores_side
from warehouse import pgnode
from warehouse.stores import ServerStore, store_of


def test_the_server_home_has_the_feeds_and_every_node_on_a_fresh_database(tmp_path: Path) -> None:
    drop = tmp_path / "pipeline" / "feeds" / "public_security" / "residents" / "residents_0001_initial.csv"
    drop.parent.mkdir(parents=True)
    drop.write_text("公民身份号码\n", encoding="utf-8")
    url = stores_side.prepare_server_home(tmp_path)
    try:
        home = stores_side.server_home(tmp_path)
        assert (home / "feeds" / drop.relative_to(tmp_path / "pipeline" / "feeds")).read_bytes() == drop.read_bytes()
        registry = json.loads((home / "nodes" / "stores.json").read_text("utf-8"))
        assert registry["stores"] == {stores_side.CITY: url}
        assert isinstance(store_of(home, "440304001001"), ServerStore)
        later = drop.with_name("residents_0002_change1.csv")
        later.write_text("公民身份号码\n1\n", encoding="utf-8")
        stores_side.bring_drop(tmp_path, later)
        assert (home / "feeds" / later.relative_to(tmp_path / "pipeline" / "feeds")).exists()
        later.unlink()  # the bench parks a case's drop outside the feeds until its case
        assert stores_side.prepare_server_home(tmp_path) == url  # again: made anew, the drop of the case gone
        assert not (home / "feeds" / later.relative_to(tmp_path / "pipeline" / "feeds")).exists()
    finally:
        pgnode.forget_connection(url)
        stores_side.recreate_database(stores_side.DEFAULT_SERVER, stores_side.DATABASE)


def test_the_transport_moves_every_row_both_ways_on_both_drivers() -> None:
    url = stores_side.recreate_database(stores_side.DEFAULT_SERVER, stores_side.DATABASE)
    table = pa.table({"citizen_id": [f"44030419900101{i:04d}" for i in range(2000)],
                      "name": ["张三, \"李四\"\n王五"] * 2000, "age": list(range(2000))})
    figures = stores_side.transport(table, url)
    assert figures["rows"] == 2000 and figures["columns"] == 3
    assert all(figures[k] > 0 for k in ("adbc_write_s", "adbc_read_s", "copy_write_s", "copy_read_s"))
    lines = stores_side.render({"cases": [], "transport": figures})
    assert "2,000 residents" in lines[-1] and "ADBC write" in lines[-1]
