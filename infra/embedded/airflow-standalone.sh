#!/usr/bin/env bash
# Start the Airflow UI and scheduler on a civicnet home, with the same environment the CLI uses.
# Usage: infra/embedded/airflow-standalone.sh [HOME]   (default ./var)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
home="$(realpath "${1:-var}")"
eval "$("$repo/.venv/bin/python" - "$home" <<'PY'
import shlex, sys
from pathlib import Path
from civicnet.airflow_runner import airflow_env, ensure_metadata
home = Path(sys.argv[1])
ensure_metadata(home)
for key, value in airflow_env(home).items():
    if key.startswith(("AIRFLOW", "PYTHONPATH")):
        print(f"export {key}={shlex.quote(value)}")
PY
)"
exec "$repo/.venv/bin/airflow" standalone
