"""The host name a task instance records: the Celery worker's name when several run on one machine.

Airflow records `socket.getfqdn()` as a task instance's `hostname` ([core] hostname_callable), so
two Celery workers on one machine look the same. The service sets CIVICNET_AIRFLOW_HOSTNAME to
each worker's Celery host name (`worker-1@<fqdn>`), and this callable hands it to Airflow.
"""

from __future__ import annotations

import os
import socket

HOSTNAME_VARIABLE = "CIVICNET_AIRFLOW_HOSTNAME"
CALLABLE = "civicnet.pipeline.runner.hostname.worker_hostname"  # what [core] hostname_callable names


def worker_hostname() -> str:
    """This worker's name ($CIVICNET_AIRFLOW_HOSTNAME), else the machine's fully qualified name."""
    return os.environ.get(HOSTNAME_VARIABLE) or socket.getfqdn()
