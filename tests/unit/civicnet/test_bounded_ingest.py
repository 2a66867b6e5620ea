"""The ingest path streams: a file many times larger than the memory it may take is landed, conformed and
merged within that bound (issue 11 item 2). Memory is measured, never time."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from civicnet.context import VINTAGE, feed, registry, source_mapping
from connectors import parse
from connectors.parse import payload_batches
from quality import conform
from quality.conform import conform_to_files
from schemas.citizen_id import check_char
from schemas.contract import load_contracts
from warehouse import landing
from warehouse.merge import BatchInput, apply_batch
from warehouse.node import ensure_node

AS_OF = dt.date(2021, 6, 30)
ROWS = 1_000_000
HEADER = "公民身份号码,姓名,性别,出生日期,户籍类型,户号,住址,联系电话,社区代码,迁入日期,人员状态\n"
BINJIANG = "440304001018"  # 福田 南园街道 滨江社区


def resident(n: int) -> str:
    born = dt.date(1950, 1, 1) + dt.timedelta(days=n % 20000)
    first17 = f"440304{born:%Y%m%d}{n // 20000 % 1000:03d}"  # one ID per row
    cid = first17 + check_char(first17)
    key = f"{cid[:-1]}{n:07d}"  # not a valid ID for most n: quarantined rows are part of the load too
    return (f"{cid if n % 50 else key},张三{n},男,{born.isoformat()},户籍,H{n:07d},福田区南园街道滨江路{n}号,"
            f"138{n:08d},{BINJIANG},2010-05-01,正常\n")


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GB18030 residents drop of ROWS rows (about 130 MB decoded, 190 MB as Arrow columns)."""
    path = tmp_path_factory.mktemp("drop") / "residents.csv"
    with path.open("wb") as out:
        out.write(HEADER.encode("gb18030"))
        for start in range(0, ROWS, 10_000):
            out.write("".join(resident(n) for n in range(start, start + 10_000)).encode("gb18030"))
    return path


def sampled(batches: Iterator[pa.RecordBatch], samples: list[int]) -> Iterator[pa.RecordBatch]:
    """The batches, noting the bytes Arrow holds as each one is handed on."""
    for batch in batches:
        samples.append(pa.total_allocated_bytes())
        yield batch
    samples.append(pa.total_allocated_bytes())


def test_a_drop_is_decoded_into_raw_parquet_in_bounded_memory(drop: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "CSV_BLOCK_BYTES", 256 << 10)
    monkeypatch.setattr(landing, "ROW_GROUP_ROWS", 4096)
    before, samples = pa.total_allocated_bytes(), []  # type: ignore[var-annotated]
    raw = tmp_path / "raw.parquet"
    rows = landing.write_raw(raw, sampled(payload_batches(drop, "text/csv", "gb18030", drop.name), samples))
    assert rows == ROWS
    decoded = pq.read_metadata(raw).row_group(0).num_rows and sum(
        pq.read_metadata(raw).row_group(i).total_byte_size for i in range(pq.read_metadata(raw).num_row_groups))
    held = max(samples) - before
    assert decoded > 100 << 20  # the decoded table would take this much whole
    assert held < decoded / 4, f"Arrow held {held >> 20} MiB while decoding {decoded >> 20} MiB"
    assert pq.read_table(raw, columns=["_line"])["_line"].to_pylist() == list(range(1, ROWS + 1))


def test_the_batch_id_of_a_streamed_file_is_its_sha256(drop: Path, tmp_path: Path) -> None:
    manifest = landing.Manifest(
        batch_id=hashlib.sha256(drop.read_bytes()).hexdigest(), feed="public_security_residents",
        department="public_security", dataset="residents", source_name=drop.name, media_type="text/csv",
        encoding="gb18030", byte_size=0, row_count=0, received_at=landing.utc_now(), cursor={})

    def decode(payload: Path, raw: Path) -> tuple[int, str | None]:
        return landing.write_raw(raw, payload_batches(payload, "text/csv", "gb18030", drop.name)), None

    assert landing.land_stream(tmp_path, manifest, lambda: drop.open("rb"), decode)
    landed = landing.read_manifest(tmp_path, "residents", manifest.batch_id)
    assert (landed.row_count, landed.byte_size) == (ROWS, drop.stat().st_size)
    changed = landing.Manifest(**{**manifest.__dict__, "batch_id": "0" * 64})
    with pytest.raises(landing.PayloadChangedError, match="changed while it was being read"):
        landing.land_stream(tmp_path, changed, lambda: drop.open("rb"), decode)
    assert not landing.batch_dir(tmp_path, "residents", "0" * 64).exists()


def test_a_batch_larger_than_duckdbs_memory_limit_conforms_and_merges(drop: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw.parquet"
    landing.write_raw(raw, payload_batches(drop, "text/csv", "gb18030", drop.name))
    monkeypatch.setattr(conform, "MEMORY_LIMIT", "128MB")  # what DuckDB needs whatever the batch's size
    f = feed("public_security_residents")
    contract = load_contracts()[f.dataset]
    accepted, quarantined = tmp_path / "accepted.parquet", tmp_path / "quarantined.parquet"
    counts = conform_to_files(raw, contract, source_mapping(f), {VINTAGE: registry()}, AS_OF, accepted, quarantined)
    assert counts.received == ROWS == counts.accepted + counts.quarantined + counts.duplicates
    assert counts.quarantined >= ROWS // 50  # every fiftieth row has a broken ID
    assert not (tmp_path / ".conform-spill").exists()
    assert pq.read_table(accepted).nbytes > 128 << 20  # the accepted rows alone would not fit in the limit

    con = duckdb.connect(config={"memory_limit": "128MB", "temp_directory": str(tmp_path / "spill")})
    con.execute(f"ATTACH '{tmp_path / 'city.duckdb'}' AS city")
    ensure_node(con, "city", "440300000000", list(load_contracts().values()))
    batch = BatchInput("b" * 64, f.slug, "public_security", drop.name, dt.datetime(2021, 6, 30, tzinfo=dt.UTC),
                       counts.received, counts.duplicates, {"verdict": "pass"})
    outcome = apply_batch(con, "city", contract, accepted, quarantined, batch)
    assert (outcome.applied, outcome.quarantined) == (counts.accepted, counts.quarantined)
    (current,), = con.execute("SELECT count(*) FROM city.residents").fetchall()
    (held,), = con.execute("SELECT count(*) FROM city._civicnet.quarantine").fetchall()
    assert (current, held) == (counts.accepted, counts.quarantined)
