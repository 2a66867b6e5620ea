#!/usr/bin/env bash
# Start Airflow (scheduler, DAG processor, triggerer, API server and UI: `airflow standalone`) on a
# civicnet home, with the environment every civicnet Airflow process gets (the repository's DAGs,
# SQLite metadata under the home, the civicnet_home variable, the city node's pool, the venv on
# PATH). The UI and API listen on loopback unless CIVICNET_AIRFLOW_HOST says otherwise.
# Usage: infra/embedded/airflow-standalone.sh [HOME] [PORT]   (default ./var and 8080)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
home="$(realpath -m "${1:-var}")"
exec "$repo/.venv/bin/civicnet" --home "$home" airflow --host "${CIVICNET_AIRFLOW_HOST:-127.0.0.1}" \
    --port "${2:-8080}"
