"""Shared fixtures: an isolated Airflow home on SQLite, the real footage, an S3 endpoint over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FOOTAGE = DATA / "one-by-one-person-detection.mp4"
FOOTAGE_SHA256 = "a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c"
S3_CONN_ID = "vigil_test_s3"

# Airflow reads its configuration when first imported: set it before any test imports it.
_AIRFLOW_HOME = Path(os.environ.get("VIGIL_TEST_AIRFLOW_HOME", ROOT / ".airflow-test"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")
os.environ["VIGIL_MODEL_CACHE"] = str(_AIRFLOW_HOME / "model-cache")
# No real AWS credentials or endpoints may leak into the tests, and none are needed.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def footage() -> Path:
    return FOOTAGE


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database in a fresh AIRFLOW_HOME (SQLite, no services)."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
    _AIRFLOW_HOME.mkdir(parents=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's standalone S3 server on 127.0.0.1, spoken to over HTTP exactly like MinIO.

    Also defines the Airflow connection ``vigil_test_s3`` (as an AIRFLOW_CONN_ env var) that
    points at it, so DAG runs reach it the way a deployment reaches MinIO.
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing-key",
            "password": "testing-secret",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
    yield endpoint
    server.stop()


@pytest.fixture
def s3_storage(s3_endpoint):
    """An S3Storage on the moto endpoint through the Airflow connection, with fresh buckets."""
    import uuid

    from vigil.store.s3_backend import S3Storage

    storage = S3Storage.from_conn_id(S3_CONN_ID)
    suffix = uuid.uuid4().hex[:8]
    buckets = {"source": f"footage-{suffix}", "out": f"evidence-{suffix}"}
    for name in buckets.values():
        storage.client.create_bucket(Bucket=name)
    storage.buckets = buckets
    return storage


@pytest.fixture(scope="session")
def long_recording(tmp_path_factory) -> Path:
    """Three back-to-back copies of the sample footage (418 s, 9.8 MB), remuxed without re-encoding."""
    from vigil.media.remux import concat_copies

    return concat_copies(FOOTAGE, tmp_path_factory.mktemp("long") / "corridor-x3.mp4", copies=3)
