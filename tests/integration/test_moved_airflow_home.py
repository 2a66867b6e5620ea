"""A moved civicnet home keeps its Airflow in the home: airflow.cfg, written once with absolute paths,
never sends logs or plugins back to where the home used to be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from civicnet.pipeline.runner import airflow_env

pytestmark = pytest.mark.slow  # two Airflow subprocesses (about 10 s)

AIRFLOW = Path(sys.executable).with_name("airflow")
# every setting that airflow.cfg writes as an absolute path under AIRFLOW_HOME
PATH_SETTINGS = (("core", "dags_folder"), ("core", "plugins_folder"), ("database", "sql_alchemy_conn"),
                 ("logging", "base_log_folder"), ("logging", "dag_processor_child_process_log_directory"))
SHOW = ("from airflow.configuration import conf; "
        f"print('\\n'.join(conf.get(s, k) for s, k in {PATH_SETTINGS!r}))")


def test_a_moved_home_points_airflow_at_its_new_place(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "airflow").mkdir(parents=True)
    subprocess.run([str(AIRFLOW), "config", "list"], env=airflow_env(old), capture_output=True, check=True,
                   timeout=300)
    assert str(old) in (old / "airflow" / "airflow.cfg").read_text("utf-8")  # the file names the old place
    old.rename(new)

    shown = subprocess.run([sys.executable, "-c", SHOW], env=airflow_env(new), capture_output=True, text=True,
                           check=True, timeout=300).stdout.splitlines()

    values = dict(zip(PATH_SETTINGS, shown, strict=True))
    assert {k: v for k, v in values.items() if str(old) in v} == {}
    home_paths = {k: v for k, v in values.items() if k != ("core", "dags_folder")}
    assert {k: v for k, v in home_paths.items() if str(new / "airflow") not in v} == {}
