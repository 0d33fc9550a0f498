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
    assert main(["process", file_uri(footage), "--out", out, "--sample-fps", "0.5", "--shard-seconds", "60", "--clips"]) == 0
    return out


def test_plugin_registers_a_page_in_airflow():
    plugin = _plugin()
    assert plugin.fastapi_apps[0]["url_prefix"] == "/vigil"
    assert plugin.external_views[0]["href"] == "/vigil/"


def test_page_needs_a_logged_in_user(processed, monkeypatch):
    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    client = TestClient(_plugin().fastapi_apps[0]["app"])
    assert client.get("/").status_code in (401, 403)


def test_page_lists_recordings_with_timeline_and_report(processed, monkeypatch, viewer_app):
    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    client = viewer_app("VIEWER")
    page = client.get("/")
    assert page.status_code == 200
    assert "one-by-one-person-detection-a5964aa25909" in page.text
    timeline = client.get("/recordings/one-by-one-person-detection-a5964aa25909/timeline.png")
    assert timeline.status_code == 200 and timeline.content.startswith(b"\x89PNG")
    report = client.get("/recordings/one-by-one-person-detection-a5964aa25909/report.html")
    assert report.status_code == 200 and "<h2>Timeline</h2>" in report.text
    assert client.get("/recordings/one-by-one-person-detection-a5964aa25909/../../etc/passwd").status_code == 404
    assert client.get("/recordings/one-by-one-person-detection-a5964aa25909/manifest.json").status_code == 404


# ---------------------------------------------------------------- security (issue #12, items 1, 4, 11)


@pytest.fixture
def viewer_app(airflow_db, monkeypatch):
    """The page's app with Airflow's own auth manager deciding, for a user of a chosen role."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    create_auth_manager()
    app = _plugin().fastapi_apps[0]["app"]

    def as_user(role: str | None) -> TestClient:
        app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="someone", role=role)
        return TestClient(app)

    yield as_user
    app.dependency_overrides.clear()


def test_page_refuses_a_logged_in_user_without_access_to_the_dags(processed, viewer_app, monkeypatch):
    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    rid = "one-by-one-person-detection-a5964aa25909"
    assert viewer_app(None).get("/").status_code == 403
    assert viewer_app(None).get(f"/recordings/{rid}/timeline.png").status_code == 403
    assert viewer_app("VIEWER").get(f"/recordings/{rid}/timeline.png").status_code == 200


def _seal(folder, recording_id: str, manifest: dict, ledgered: bool = True) -> None:
    """Write a manifest as a forger would; ``ledgered``: and enter it in the (unsigned) ledger too,
    which a deployment without a signing key cannot tell from vigil's own entries."""
    import hashlib

    from vigil.store import ledger
    from vigil.store.manifest import manifest_bytes
    from vigil.store.storage import storage_for
    from vigil.uri import file_uri

    data = manifest_bytes(manifest)
    (folder / "manifests" / f"{recording_id}.json").write_bytes(data)
    if ledgered:
        out = file_uri(folder)
        ledger.append(storage_for(out), out, f"manifests/{recording_id}.json", hashlib.sha256(data).hexdigest(),
                      None, None, "forger")  # fmt: skip


@pytest.fixture
def hostile(processed, tmp_path, monkeypatch):
    """A copy of a real output, then changed by someone with write access to it."""
    import hashlib
    import json
    import shutil

    from vigil.uri import file_uri, parse_uri

    root = tmp_path / "out"
    shutil.copytree(parse_uri(processed).key, root)
    monkeypatch.setenv("VIGIL_OUTPUT_URI", file_uri(root))
    real = json.loads(next((root / "manifests").glob("*.json")).read_bytes())
    report = root / real["artifacts"]["report.html"]["path"]
    report.write_text("<script>fetch('/api/v2/connections')</script>")  # replaced, manifest unchanged
    evil = "<script>alert(1)</script>"
    (root / "review" / "evil").mkdir(parents=True)
    (root / "review" / "evil" / "timeline.png").symlink_to("/etc/passwd")
    (root / "review" / "evil-dir").symlink_to("/etc")
    page = "<script>alert(2)</script>".encode()
    (root / "review" / "evil" / "report.html").write_bytes(page)
    passwd = hashlib.sha256(open("/etc/passwd", "rb").read()).hexdigest()
    forged = {
        **real, "recording_id": "forged", "warnings": [evil],
        "source": {**real["source"], "uri": f"file:///x/{evil}.mp4"},
        "totals": {**real["totals"], "tracks": '<img src=x onerror="alert(3)">'},
        "artifacts": {
            "timeline.png": {"path": "review/evil/timeline.png", "sha256": passwd},
            "contact_sheet.jpg": {"path": "review/evil-dir/passwd", "sha256": passwd},
            "event-001.jpg": {"path": "../../etc/passwd", "sha256": passwd},
            "report.html": {"path": "review/evil/report.html", "sha256": hashlib.sha256(page).hexdigest()},
        },
    }  # fmt: skip
    _seal(root, "forged", forged)
    (root / "manifests" / "garbage.json").write_text("{not json")
    _seal(root, "misshapen", {**real, "recording_id": "misshapen", "totals": "<b>not a dict</b>"})
    _seal(root, "ghost", {**real, "recording_id": "ghost-recording"}, ledgered=False)
    return real["recording_id"]


def test_page_escapes_a_hostile_manifest_and_reports_unreadable_ones(hostile, viewer_app):
    client = viewer_app("VIEWER")
    page = client.get("/")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "onerror=\"alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;img src=x" in page.text
    assert "garbage.json" in page.text and "misshapen.json" in page.text  # skipped and said so
    assert hostile in page.text  # the intact recording is still listed
    # A manifest the ledger does not record is named as such, not listed as a recording.
    assert "ghost.json: not recorded in the ledger" in page.text and "ghost-recording<" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_page_serves_only_bytes_that_match_the_manifest_and_never_follows_symlinks(hostile, viewer_app):
    client = viewer_app("VIEWER")
    replaced = client.get(f"/recordings/{hostile}/report.html")  # report swapped, manifest not
    assert replaced.status_code == 409 and "<script>" not in replaced.text
    for name in ("timeline.png", "contact_sheet.jpg", "event-001.jpg"):  # symlinks and '..' to /etc/passwd
        served = client.get(f"/recordings/forged/{name}")
        assert served.status_code in (404, 409) and "root:" not in served.text, name
    timeline = client.get(f"/recordings/{hostile}/timeline.png")
    assert timeline.status_code == 200 and timeline.content.startswith(b"\x89PNG")
    assert timeline.headers["x-content-type-options"] == "nosniff"
    assert "inline" in timeline.headers["content-disposition"]
    # Both the report and its manifest rewritten: it matches, so it is served, but sandboxed and
    # with no script allowed, so it cannot act with the viewer's Airflow session.
    forged = client.get("/recordings/forged/report.html")
    assert forged.status_code == 200
    csp = forged.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp


def test_page_reads_each_manifest_once_until_it_changes(hostile, viewer_app):
    from vigil.orchestration.airflow_view import cache

    client = viewer_app("VIEWER")
    assert client.get("/").status_code == 200
    before = cache.reads
    assert client.get("/").status_code == 200
    assert client.get(f"/recordings/{hostile}/timeline.png").status_code == 200
    assert cache.reads == before  # nothing changed: nothing re-read


def test_case_view_page_plays_clips_it_can_vouch_for_and_pins_its_script(processed, viewer_app, monkeypatch):
    from vigil.review.clips import make_clip
    from vigil.uri import parse_uri

    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    record = make_clip(processed, "one-by-one", 10.0, 14.0)
    client = viewer_app("VIEWER")
    page = client.get("/case")
    assert page.status_code == 200 and "script-src 'sha256-" in page.headers["content-security-policy"]
    assert "media-src 'self'" in page.headers["content-security-policy"]
    served = client.get("/" + record.clip_path)
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert served.headers["x-content-type-options"] == "nosniff"
    clip_file = parse_uri(processed).key + "/" + record.clip_path
    with open(clip_file, "r+b") as handle:  # anyone with write access to the output alters the clip
        handle.seek(100)
        handle.write(b"\0\0\0\0")
    assert client.get("/" + record.clip_path).status_code == 409
    assert client.get("/clips/recording_id=x/not-a-clip.mp4").status_code == 404


def test_review_decisions_from_the_page_need_edit_rights_and_a_same_origin_post(processed, viewer_app, monkeypatch):
    from vigil.review.decisions import load_decisions

    monkeypatch.setenv("VIGIL_OUTPUT_URI", processed)
    form = {"recording": "one-by-one", "target": "track", "target_id": "1", "decision": "confirmed", "note": "seen"}
    same_origin = {"origin": "http://testserver"}
    assert viewer_app("VIEWER").get("/review?recording=one-by-one&track=1").status_code == 200
    assert viewer_app("VIEWER").post("/review", data=form, headers=same_origin).status_code == 403, "viewers only read"
    assert viewer_app("OP").post("/review", data=form, headers={"origin": "https://evil.example"}).status_code == 403
    before = len(load_decisions(processed))
    done = viewer_app("OP").post("/review", data=form, headers=same_origin)
    assert done.status_code == 200, done.text
    decisions = load_decisions(processed)
    assert len(decisions) == before + 1 and decisions[-1]["reviewer"] == "someone"
    assert decisions[-1]["decision"] == "confirmed" and decisions[-1]["target_id"] == 1


def test_a_report_served_by_the_page_links_its_clips_through_the_hash_checked_clip_route(processed, viewer_app,
                                                                                        tmp_path, monkeypatch):  # fmt: skip
    """Mounted under /vigil as Airflow mounts it: the report's clip links (relative, as in the output
    folder) reach the clip route, which serves the clip's bytes and refuses them once altered."""
    import re
    import shutil
    from urllib.parse import urljoin

    from fastapi import FastAPI

    from vigil.uri import file_uri, parse_uri

    root = tmp_path / "out"
    shutil.copytree(parse_uri(processed).key, root)
    monkeypatch.setenv("VIGIL_OUTPUT_URI", file_uri(root))
    plugin = _plugin().fastapi_apps[0]
    viewer_app("VIEWER")  # the logged-in viewer, on the plugin's app
    airflow = FastAPI()
    airflow.mount(plugin["url_prefix"], plugin["app"])
    client = TestClient(airflow)
    index = client.get("/vigil/")
    href = re.search(r'<a href="([^"]+)">report</a>', index.text).group(1)
    report = client.get(urljoin(str(index.url), href))
    assert report.status_code == 200 and "/vigil/review/recording_id=" in str(report.url)
    old = client.get("/vigil/recordings/one-by-one-person-detection-a5964aa25909/report.html")  # an older link
    assert old.status_code == 200 and old.url == report.url
    links = re.findall(r'<a href="([^"]+\.mp4)">', report.text)
    assert links, "the run was asked for clips: the report links one per presence interval"
    clip_url = urljoin(str(report.url), links[0])
    assert clip_url.startswith("http://testserver/vigil/clips/recording_id=")
    clip_file = root / clip_url.split("/vigil/", 1)[1]
    served = client.get(clip_url)
    assert served.status_code == 200 and served.content == clip_file.read_bytes()
    assert served.headers["content-type"] == "video/mp4"
    data = bytearray(clip_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # anyone with write access to the output alters the clip
    clip_file.write_bytes(bytes(data))
    refused = client.get(clip_url)
    assert refused.status_code == 409 and refused.content != bytes(data)


def test_two_runs_of_one_recording_each_link_their_own_files(processed, footage, viewer_app, tmp_path, monkeypatch):
    """A recording analysed again with other settings has a row per run; each row's picture and
    report are that run's, and the by-recording route refuses to guess between them."""
    import hashlib
    import json
    import re
    import shutil

    from vigil.cli import main
    from vigil.uri import file_uri, parse_uri

    root = tmp_path / "out"
    shutil.copytree(parse_uri(processed).key, root)
    assert main(["process", file_uri(footage), "--out", file_uri(root), "--sample-fps", "0.25", "--shard-seconds", "60"]) == 0
    monkeypatch.setenv("VIGIL_OUTPUT_URI", file_uri(root))
    manifests = [json.loads(p.read_text()) for p in (root / "manifests").glob("*.json")]
    timelines = {m["artifacts"]["timeline.png"]["sha256"] for m in manifests if "timeline.png" in m["artifacts"]}
    assert len(timelines) == 2, "two runs, two timeline pictures"
    client = viewer_app("VIEWER")
    index = client.get("/")
    served = set()
    for src in re.findall(r'<img src="([^"]+)" alt="timeline">', index.text):
        picture = client.get("/" + src)
        assert picture.status_code == 200
        served.add(hashlib.sha256(picture.content).hexdigest())
    assert served == timelines, "each row shows its own run's timeline"
    reports = re.findall(r'<a href="([^"]+)">report</a>', index.text)
    assert len(set(reports)) == 2
    rid = "one-by-one-person-detection-a5964aa25909"
    assert client.get(f"/recordings/{rid}/timeline.png").status_code == 409
