"""The peer: dlt loading a residents drop into DuckDB with its SCD2 merge on the citizen ID.

Run by the bench with the Python of the separate dlt environment (.venv-dlt, made by `make bench`;
dlt is never a civicnet dependency), as a script: it imports nothing of civicnet.

    python -P civicnet/bench/peer.py --drop FILE --db FILE --state DIR --columns JSON

The drop is read as GB18030 CSV in Arrow record batches, its columns renamed to the contract's
field names, and handed to dlt as a resource with write_disposition {"disposition": "merge",
"strategy": "scd2"} and merge_key citizen_id: the rows of a citizen in the drop retire that
citizen's active version when they differ, and citizens absent from the drop stay active (without
a merge key, SCD2 retires every record absent from a load). dlt computes no row hash for Arrow
data (its normalizer would add random _dlt_ids), so each batch gets one here, DuckDB's md5 over
every field, named as the version column (row_version_column_name), inside the timing. No
validation of any kind.
Prints one JSON line: seconds (pipeline.run only: imports and the venv start are left out), rows,
bytes written to storage, the DuckDB file's size.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

BLOCK = 16 << 20
ROW_HASH = "row_hash"


def batches(drop: Path, columns: dict[str, str]) -> Iterator[pa.Table]:
    """The drop in Arrow batches, columns renamed, with the row hash SCD2 versions rows by."""
    reader = pacsv.open_csv(drop, read_options=pacsv.ReadOptions(encoding="gb18030", block_size=BLOCK),
                            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string())))
    fields = ", ".join(f'"{f}"' for f in columns.values())
    con = duckdb.connect()
    for batch in reader:
        con.register("chunk", pa.Table.from_batches([batch]).rename_columns([columns[n] for n in batch.schema.names]))
        yield con.execute(f"SELECT *, md5(concat_ws(chr(31), {fields})) AS {ROW_HASH} FROM chunk").to_arrow_table()
        con.unregister("chunk")


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def load(drop: Path, db: Path, state: Path, columns: dict[str, str]) -> dict[str, Any]:
    import dlt  # only in .venv-dlt, never a civicnet dependency: imported here so the module imports without it
    rows = 0

    def counted() -> Iterator[pa.Table]:
        nonlocal rows
        for table in batches(drop, columns):
            rows += table.num_rows
            yield table

    start = time.perf_counter()
    pipe = dlt.pipeline(pipeline_name="residents_peer", destination=dlt.destinations.duckdb(str(db)),
                        dataset_name="peer", pipelines_dir=str(state))
    resource = dlt.resource(counted(), name="residents", merge_key="citizen_id",
                            write_disposition={"disposition": "merge", "strategy": "scd2",
                                               "row_version_column_name": ROW_HASH})
    pipe.run(resource)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "write_bytes": _write_bytes(), "db_bytes": db.stat().st_size,
            "dlt": dlt.__version__}


def main() -> None:
    p = argparse.ArgumentParser(prog="peer")
    p.add_argument("--drop", type=Path, required=True)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--columns", required=True, help="JSON: source column → contract field")
    args = p.parse_args()
    print(json.dumps(load(args.drop, args.db, args.state, json.loads(args.columns))))


if __name__ == "__main__":
    main()
