"""The Airflow UI page: lists processed recordings and serves only manifest-listed files, to users
who are logged in to Airflow."""

from __future__ import annotations

import importlib.util

import pytest
from fastapi.testclient import TestClient

from conftest import ROOT

pytestmark = pytest.mark.slow


def _plugin():
    spec = importlib.util.spec_from_file_location("vigil_plugin", ROOT / "plugins" / "vigil_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VigilPlugin


@pytest.fixture(scope="module")
def processed(tmp_path_factory, footage):
    from vigil.cli import main
    from vigil.uri import file_uri

    out = file_uri(tmp_path_factory.mktemp("plugin") / "out")
    assert main(["process", file_uri(footage), "--out", out, "--sample-fps", "0.5", "--shard-seconds", "60"]) == 0
    return out


def test_plugin_registers_a_page_in_airflow():
    plugin = _plugin()
    assert plugin.fastapi_apps[0]["url_prefix"] == "/vigil"
    assert plugin.external_views[0]["href"] == "/vigil/"


def test_page_needs_a_logged_in_user(processed, monkeypatch):
    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    client = TestClient(_plugin().fastapi_apps[0]["app"])
    assert client.get("/").status_code in (401, 403)


def test_page_lists_recordings_with_timeline_and_report(processed, monkeypatch):
    from airflow.api_fastapi.core_api.security import get_user

    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    app = _plugin().fastapi_apps[0]["app"]
    app.dependency_overrides[get_user] = lambda: object()
    try:
        client = TestClient(app)
        page = client.get("/")
        assert page.status_code == 200
        assert "one-by-one-person-detection-a5964aa25909" in page.text
        timeline = client.get("/recordings/one-by-one-person-detection-a5964aa25909/timeline.png")
        assert timeline.status_code == 200 and timeline.content.startswith(b"\x89PNG")
        report = client.get("/recordings/one-by-one-person-detection-a5964aa25909/report.html")
        assert report.status_code == 200 and "<h2>Timeline</h2>" in report.text
        assert client.get("/recordings/one-by-one-person-detection-a5964aa25909/../../etc/passwd").status_code == 404
        assert client.get("/recordings/one-by-one-person-detection-a5964aa25909/manifest.json").status_code == 404
    finally:
        app.dependency_overrides.clear()
