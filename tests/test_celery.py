"""Distributed for real: CeleryExecutor with two workers on PostgreSQL and Redis, triggered through
the REST API on a recording in the S3 endpoint; then one worker is SIGKILLed mid-shard.

Needs PostgreSQL and Redis on 127.0.0.1 (`.ci/run` starts them where they are missing); skipped
with a reason when they cannot be reached.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, S3_CONN_ID, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

PG = {"host": "127.0.0.1", "port": 5432}
REDIS_DB = 7  # keep clear of anything else using the local Redis
CONF_BASE = {"sample_fps": 0.5, "shard_seconds": 30, "conn_id": S3_CONN_ID}


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _psql(sql: str) -> None:
    for command in (["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                    ["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -c \"{sql}\""]):  # fmt: skip
        if subprocess.run(command, capture_output=True).returncode == 0:
            return
    raise RuntimeError(f"cannot run as the postgres superuser: {sql}")


class Cluster:
    """api-server, scheduler, dag-processor and two Celery workers, each in its own process group."""

    def __init__(self, home: Path, extra_env: dict):
        self.home = home
        self.port = _free_port()
        database = f"vigil_ci_{secrets.token_hex(4)}"
        _psql("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigil_ci') THEN "
              "CREATE ROLE vigil_ci LOGIN PASSWORD 'vigil_ci'; END IF; END$$;")  # fmt: skip
        _psql(f"CREATE DATABASE {database} OWNER vigil_ci")
        self.database = database
        sql = f"postgresql+psycopg2://vigil_ci:vigil_ci@127.0.0.1:5432/{database}"
        (home / "passwords.json").write_text(json.dumps({"admin": "admin"}))
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        self.env = {
            **base,
            **extra_env,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(40),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def airflow(self, *args: str) -> None:
        subprocess.run(["airflow", *args], env=self.env, check=True, capture_output=True)

    def start(self, name: str, args: list[str], env: dict | None = None) -> None:
        log = open(self.home / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(
            ["airflow", *args], env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def up(self, worker_env: dict[str, dict], api_env: dict) -> None:
        self.airflow("db", "migrate")
        self.airflow("pools", "set", "gpu_shards", "2", "GPU shards running at once")
        self.start("api-server", ["api-server", "--port", str(self.port)], api_env)
        self.start("scheduler", ["scheduler"])
        self.start("dag-processor", ["dag-processor"])
        for i, (name, env) in enumerate(worker_env.items()):
            self.start(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "-q", "default"],
                       {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())})  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                self.token = self._token()
                if self.request("GET", "/api/v2/dags/vigil_process")[0] == 200 and all(
                    "ready." in (self.home / f"{w}.log").read_text() for w in worker_env
                ):
                    return
            except OSError:
                pass
            time.sleep(2)
        raise TimeoutError("the Celery cluster did not come up; see the *.log files in " + str(self.home))

    def _token(self) -> str:
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/auth/token",
            data=json.dumps({"username": "admin", "password": "admin"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["access_token"]

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def trigger(self, conf: dict) -> str:
        status, body = self.request("POST", "/api/v2/dags/vigil_process/dagRuns", {"logical_date": None, "conf": conf})
        assert status == 200, body
        return body["dag_run_id"]

    def wait(self, run_id: str, timeout: float = 400) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}")[1].get("state")
            if state in ("success", "failed"):
                return state
            time.sleep(3)
        raise TimeoutError(f"run {run_id} did not finish in {timeout} s")

    def kill_tree(self, name: str) -> None:
        """SIGKILL a worker and every process under it, as when its machine dies."""
        import psutil

        root = psutil.Process(self.processes[name].pid)
        for process in [*root.children(recursive=True), root]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        # Task processes run in their own sessions: find any left whose parent chain was cut.
        self.processes[name].wait()

    def down(self) -> None:
        import psutil

        for process in self.processes.values():
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        for process in self.processes.values():
            process.wait()
        try:
            _psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        except RuntimeError:
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_endpoint):
    if not (_reachable(5432) and _reachable(6379)):
        pytest.skip("PostgreSQL and Redis must run on 127.0.0.1 (bash .ci/run starts them)")
    home = tmp_path_factory.mktemp("celery-airflow")
    s3_env = {f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"],
              "VIGIL_ALLOWED_CONN_IDS": S3_CONN_ID}  # the operator allows trigger users to name it
    cluster = Cluster(home, s3_env)
    try:
        # Once armed (the flag file exists), worker-a stops inside a shard, to be killed there.
        cluster.arm = home / "arm-worker-a"
        # The api-server serves the "Vigil recordings" page for the clean run's output.
        from vigil.store.s3_backend import S3Storage

        bucket = f"vigil-ui-{secrets.token_hex(4)}"
        S3Storage.from_conn_id(S3_CONN_ID).client.create_bucket(Bucket=bucket)
        cluster.ui_out = f"s3://{bucket}/clean"
        cluster.up(
            {"worker-a": {"VIGIL_PAUSE_AT": "inference", "VIGIL_PAUSE_IF": str(cluster.arm)}, "worker-b": {}},
            {"VIGIL_OUTPUT_URI": cluster.ui_out, "VIGIL_S3_CONN_ID": S3_CONN_ID},
        )
        yield cluster
    finally:
        cluster.down()


def _rows(out: str, conn_id: str | None = None) -> dict:
    from vigil.review import query

    con = query.connect(out, conn_id)
    return {
        "detections": con.execute(
            "SELECT frame_index, det_index, pts_s, confidence, x1, y1, x2, y2, kp_x, kp_y, kp_conf FROM detections ORDER BY ALL"
        ).fetchall(),
        "frames": con.execute("SELECT frame_index, pts_s, persons, status FROM frames ORDER BY ALL").fetchall(),
    }


@pytest.fixture(scope="module")
def embedded_rows(tmp_path_factory, footage):
    """The same footage and parameters on the embedded default (file://, no Airflow)."""
    from vigil.cli import main
    from vigil.uri import file_uri

    out = file_uri(tmp_path_factory.mktemp("embedded") / "out")
    args = ["--sample-fps", str(CONF_BASE["sample_fps"]), "--shard-seconds", str(CONF_BASE["shard_seconds"])]
    assert main(["process", file_uri(footage), "--out", out, *args]) == 0
    return _rows(out)


def test_celery_run_through_the_rest_api_equals_the_embedded_run(cluster, s3_storage, footage, embedded_rows):
    source = f"s3://{s3_storage.buckets['source']}/cam/corridor.mp4"
    s3_storage.write_bytes(source, footage.read_bytes())
    out = cluster.ui_out
    run_id = cluster.trigger({**CONF_BASE, "sources": [source], "out": out})
    assert cluster.wait(run_id) == "success"
    assert _rows(out, S3_CONN_ID) == embedded_rows
    for worker in ("worker-a", "worker-b"):
        assert _shards_run_by(cluster, worker), f"{worker} ran no shard: the run was not distributed"


def _shards_run_by(cluster: Cluster, worker: str) -> list[str]:
    lines = (cluster.home / f"{worker}.log").read_text().splitlines()
    return [line for line in lines if "Executing workload in Celery" in line and "task_id=detect" in line]


def _wait_killing_paused(cluster: Cluster, run_id: str, timeout: float = 420) -> str:
    """Wait for a run; SIGKILL worker-a's whole process tree once one of its shards is paused."""
    deadline = time.monotonic() + timeout
    killed = "worker-a" not in cluster.processes or cluster.processes["worker-a"].poll() is not None
    while time.monotonic() < deadline:
        if not killed and _paused_task_logs(cluster.home):
            cluster.kill_tree("worker-a")
            killed = True
        state = cluster.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}")[1].get("state")
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise TimeoutError(f"run {run_id} did not finish in {timeout} s; see {cluster.home}")


def _paused_task_logs(home: Path) -> list[Path]:
    return [p for p in (home / "logs").rglob("*") if p.is_file() and "vigil-paused-at" in p.read_text(errors="ignore")]


def test_a_killed_worker_s_shard_is_retried_elsewhere_with_identical_output(cluster, s3_storage, footage, embedded_rows):
    source = f"s3://{s3_storage.buckets['source']}/cam/corridor.mp4"
    s3_storage.write_bytes(source, footage.read_bytes())
    out = f"s3://{s3_storage.buckets['out']}/after-kill"
    cluster.arm.touch()
    run_id = cluster.trigger({**CONF_BASE, "sources": [source], "out": out})
    assert _wait_killing_paused(cluster, run_id) == "success"
    assert _paused_task_logs(cluster.home), "worker-a never took a shard: the fault case did not happen"
    status, tis = cluster.request("GET", f"/api/v2/dags/vigil_process/dagRuns/{run_id}/taskInstances?limit=100")
    retried = [t for t in tis["task_instances"] if t["task_id"] == "detect" and t["try_number"] > 1]
    assert retried, "the killed shard was retried"
    rows = _rows(out, S3_CONN_ID)
    assert rows == embedded_rows
    assert len(rows["frames"]) == len({(f[0], f[1]) for f in rows["frames"]}), "no duplicate rows"


def test_the_vigil_page_in_airflow_s_own_ui(cluster):
    """The plugin, loaded by the live api-server: recordings of the clean run, for logged-in users."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.port}/vigil/", timeout=30)
    assert refused.value.code in (401, 403)
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.port}/vigil/",
                                     headers={"Authorization": f"Bearer {cluster.token}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        page = response.read().decode()
    assert "corridor-a5964aa25909" in page and "timeline.png" in page
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.port}/vigil/recordings/corridor-a5964aa25909/timeline.png",
        headers={"Authorization": f"Bearer {cluster.token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.read().startswith(b"\x89PNG")
