"""A real Singer tap over the justice bureau's mediation-committee register (the demo's Singer source).

    python -m civicnet.demo.departments.tap --config config.json [--state state.json]

Config: `source` (the register, a JSON list), `token` and `expected_token_sha256` (the bureau's
API check: a token whose sha256 differs is refused with "authentication failed" and exit 1),
and optionally `fail_after` (exit 1 after that many records, as a server error would).

Stdout carries only Singer messages (https://hub.meltano.com/singer/spec), one JSON object per
line: the SCHEMA of stream `mediation_committees`, a RECORD for every committee whose
`updated_at` is at or after the state's bookmark (inclusive: records sharing the bookmark's time
are sent again, the target dedupes them), and a STATE every 500 records and at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STREAM = "mediation_committees"
STATE_EVERY = 500
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "community": {"type": "string"},
        "name": {"type": "string"},
        "chair": {"type": ["string", "null"]},
        "members": {"type": "integer"},
        "cases_this_year": {"type": "integer"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def emit(message: dict[str, Any]) -> None:
    """Write one Singer message to stdout."""
    sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")


def state_message(bookmark: str | None) -> dict[str, Any]:
    """A STATE message carrying the stream's `updated_at` bookmark."""
    value = {"bookmarks": {STREAM: {"updated_at": bookmark}}} if bookmark else {}
    return {"type": "STATE", "value": value}


def read_bookmark(state_path: str | None) -> str | None:
    """The `updated_at` bookmark of the stream in a state file, if any."""
    if state_path is None:
        return None
    state = json.loads(Path(state_path).read_text(encoding="utf-8"))
    bookmark = state.get("bookmarks", {}).get(STREAM, {}).get("updated_at")
    return str(bookmark) if bookmark else None


def _instant(text: str) -> dt.datetime:
    """An ISO 8601 time with offset, comparable across offsets."""
    return dt.datetime.fromisoformat(text)


def authenticated(config: dict[str, Any]) -> bool:
    """Whether the config's token hashes to the expected sha256."""
    token, expected = config.get("token"), config.get("expected_token_sha256")
    if not isinstance(token, str) or not isinstance(expected, str):
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode("utf-8")).hexdigest(), expected.lower())


def records_since(source: Path, bookmark: str | None) -> list[dict[str, Any]]:
    """The register's records with `updated_at` at or after the bookmark, oldest first."""
    records: list[dict[str, Any]] = json.loads(source.read_text(encoding="utf-8"))
    if bookmark is not None:
        since = _instant(bookmark)
        records = [r for r in records if _instant(r["updated_at"]) >= since]
    return sorted(records, key=lambda r: (_instant(r["updated_at"]), r["id"]))


def sync(config: dict[str, Any], bookmark: str | None) -> int:
    """Emit SCHEMA, RECORDs and STATEs; the exit code (1 when `fail_after` cuts the run short)."""
    fail_after = config.get("fail_after")
    emit({"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"],
          "bookmark_properties": ["updated_at"]})
    latest = bookmark
    for count, record in enumerate(records_since(Path(config["source"]), bookmark), start=1):
        if fail_after is not None and count > int(fail_after):
            sys.stdout.flush()
            print(f"server error: the register went away after {fail_after} records", file=sys.stderr)
            return 1
        emit({"type": "RECORD", "stream": STREAM, "record": record})
        latest = record["updated_at"]
        if count % STATE_EVERY == 0:
            emit(state_message(latest))
    emit(state_message(latest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tap; the process exit code."""
    parser = argparse.ArgumentParser(prog="civicnet.demo.departments.tap", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--state")
    parser.add_argument("--discover", action="store_true", help="print the catalog and exit")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    if args.discover:
        emit({"streams": [{"tap_stream_id": STREAM, "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]}]})
        return 0
    if not authenticated(config):
        print("authentication failed: the token was refused", file=sys.stderr)
        return 1
    if "source" not in config:
        print("config error: 'source' (the register file) is missing", file=sys.stderr)
        return 2
    return sync(config, read_bookmark(args.state))


if __name__ == "__main__":
    sys.exit(main())
