"""A small real Singer tap for the conformance suite: one stream read from a JSON Lines file.

`python tap_records.py --config c.json [--state s.json]`. Config: `source` (the JSONL file),
`stream`, `key`, `cursor` (the replication key), `token` and `expected_token_sha256` (a wrong
token prints "authentication failed" and exits 1), and `fail_flag` (while that file exists the
tap dies with a server error after its SCHEMA, as a source going away would). RECORDs with a
cursor value at or after the state's bookmark are emitted (inclusive), then a STATE.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def main() -> int:
    """Run the tap."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--state")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text("utf-8"))
    if hashlib.sha256(str(config.get("token", "")).encode()).hexdigest() != config["expected_token_sha256"]:
        print("authentication failed: the token was refused", file=sys.stderr)
        return 1
    stream, cursor = config["stream"], config["cursor"]
    bookmark = ""
    if args.state:
        bookmark = json.loads(Path(args.state).read_text("utf-8")).get("bookmarks", {}).get(stream, "")
    records = [json.loads(line) for line in Path(config["source"]).read_text("utf-8").splitlines() if line]
    print(json.dumps({"type": "SCHEMA", "stream": stream, "key_properties": [config["key"]],
                      "schema": {"type": "object", "properties": {k: {"type": ["string", "null"]}
                                                                  for r in records[:1] for k in r}}}))
    if Path(config["fail_flag"]).exists():
        print("server error: the source is unavailable", file=sys.stderr)
        return 1
    taken = sorted((r for r in records if str(r[cursor]) >= bookmark), key=lambda r: str(r[cursor]))
    for record in taken:
        print(json.dumps({"type": "RECORD", "stream": stream, "record": record}, ensure_ascii=False))
    if taken:
        bookmark = max(str(r[cursor]) for r in taken)
    print(json.dumps({"type": "STATE", "value": {"bookmarks": {stream: bookmark}}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
