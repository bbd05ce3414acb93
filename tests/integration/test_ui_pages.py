"""The web UI over plain HTTP: sign-in, cookie flags, RBAC, the SSE stream, ``--no-ui``.

The browser tests (``tests/e2e/test_ui_browser.py``) drive the pages in Chromium; these check
the rules underneath without a browser, so they also run where Chromium is missing.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.delivery import event, make_topic, publish
from tests.support.ml_workspace import wait_until
from tests.support.server import ServerProcess


@contextmanager
def signed_in(server: ServerProcess, token: str | None = None) -> Iterator[httpx.Client]:
    """A client holding the UI's cookie for ``token`` (default: the admin's)."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        response = client.post("/ui/login", data={"token": token or server.admin_token, "next": "/"})
        assert response.status_code == 303, response.text
        yield client


def read_stream(client: httpx.Client, url: str, *, until: int | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The ``event`` messages of an SSE stream: up to its ``ready`` marker, or ``until`` events."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    name = ""
    with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                if name == "event":
                    found.append(json.loads(line[len("data: "):]))
                    if until is not None and len(found) >= until:
                        return found
                elif name == "ready" and until is None:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"stream condition not met in {timeout} s; got {found}")
    return found


@pytest.fixture(scope="module")
def admin(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


def test_pages_require_a_signed_in_principal(sqlite_server: ServerProcess) -> None:
    with httpx.Client(base_url=sqlite_server.url) as anonymous:
        for path in ("/", "/ui/topics", "/ui/deadletters", "/ui/workspaces", "/ui/events/1"):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/ui/login?next=")
        assert anonymous.get("/ui/stream").status_code == 401
        page = anonymous.get("/ui/login")
        assert page.status_code == 200
        assert 'name="token"' in page.text


def test_sign_in_sets_a_strict_http_only_cookie(sqlite_server: ServerProcess) -> None:
    with httpx.Client(base_url=sqlite_server.url) as client:
        refused = client.post("/ui/login", data={"token": "mlg_not-a-token", "next": "/"})
        assert refused.status_code == 401
        assert "not valid" in refused.text
        assert "set-cookie" not in refused.headers
        accepted = client.post("/ui/login", data={"token": sqlite_server.admin_token, "next": "/ui/topics"})
        assert accepted.status_code == 303
        assert accepted.headers["location"] == "/ui/topics"
        cookie = accepted.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/" in cookie
        page = client.get("/ui/topics")
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        signed_out = client.post("/ui/logout")
        assert signed_out.status_code == 303
        assert client.get("/ui/topics").status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil", "topics"])
def test_sign_in_never_redirects_to_another_site(sqlite_server: ServerProcess, target: str) -> None:
    with httpx.Client(base_url=sqlite_server.url) as client:
        response = client.post("/ui/login", data={"token": sqlite_server.admin_token, "next": target})
        assert response.headers["location"] == "/"


def test_forms_posted_from_another_site_are_refused(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    with signed_in(sqlite_server) as client:
        evil = {"Origin": "http://evil.example"}
        url = f"/ui/subscriptions/topics/{topic}/nothing/redeliver"
        response = client.post(url, data={"all": "1"}, headers=evil)
        assert response.status_code == 403
        login = client.post("/ui/login", data={"token": sqlite_server.admin_token}, headers=evil)
        assert login.status_code == 403


def test_ui_routes_are_not_in_the_openapi_document(sqlite_server: ServerProcess) -> None:
    paths = httpx.get(sqlite_server.url + "/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def test_static_files_are_served_from_the_package(sqlite_server: ServerProcess) -> None:
    for name, media in (("app.css", "text/css"), ("app.js", "javascript"), ("favicon.svg", "image/svg")):
        response = httpx.get(f"{sqlite_server.url}/ui/static/{name}")
        assert response.status_code == 200, name
        assert media in response.headers["content-type"]


def test_live_stream_backlog_filters_and_resumes(sqlite_server: ServerProcess, admin: httpx.Client) -> None:
    topic, _ = make_topic(admin)
    publish(admin, topic, [
        event("a1", subject="models/m1", event_type="Shop.ModelRegistered"),
        event("a2", subject="runs/r1", event_type="Shop.RunCompleted"),
        event("a3", subject="models/m2", event_type="Shop.ModelDeployed"),
    ])
    with signed_in(sqlite_server) as client:
        everything = read_stream(client, f"/ui/stream?topic={topic}")
        assert [e["id"] for e in everything] == ["a1", "a2", "a3"]
        assert {e["topic"] for e in everything} == {topic}
        assert everything[0]["url"] == f"/ui/events/{everything[0]['seq']}"
        by_subject = read_stream(client, f"/ui/stream?topic={topic}&subject=MODELS/")
        assert [e["id"] for e in by_subject] == ["a1", "a3"]
        by_type = read_stream(client, f"/ui/stream?topic={topic}&type=deployed")
        assert [e["id"] for e in by_type] == ["a3"]
        # A reconnecting browser sends Last-Event-ID: only what came after it.
        resumed = read_stream(
            client, f"/ui/stream?topic={topic}", headers={"Last-Event-ID": str(everything[0]["seq"])}
        )
        assert [e["id"] for e in resumed] == ["a2", "a3"]


def test_live_stream_shows_events_published_after_it_opened(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    publish(admin, topic, [event("before")])
    with signed_in(sqlite_server) as client:
        ids: list[str] = []
        with client.stream("GET", f"/ui/stream?topic={topic}", timeout=15.0) as response:
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: ") and name == "ready":
                    publish(admin, topic, [event("after-1"), event("after-2")])
                elif line.startswith("data: ") and name == "event":
                    ids.append(json.loads(line[len("data: "):])["id"])
                    if len(ids) == 3:
                        break
        assert ids == ["before", "after-1", "after-2"]


def test_a_reader_sees_only_what_the_api_shows_it(sqlite_server: ServerProcess, admin: httpx.Client) -> None:
    readable, _ = make_topic(admin)
    hidden, _ = make_topic(admin)
    principal = "reader" + uuid.uuid4().hex[:8]
    token = admin.put(f"/principals/{principal}").json()["token"]
    assigned = admin.put(f"/topics/{readable}/roleAssignments/{principal}", json={"role": "Reader"})
    assert assigned.status_code in (200, 201), assigned.text
    publish(admin, readable, [event("visible")])
    publish(admin, hidden, [event("secret")])
    with signed_in(sqlite_server) as as_admin:
        secret = read_stream(as_admin, f"/ui/stream?topic={hidden}")
    with signed_in(sqlite_server, token) as client:
        live = client.get("/")
        assert readable in live.text
        assert hidden not in live.text
        topics = client.get("/ui/topics")
        assert readable in topics.text
        assert hidden not in topics.text
        stream = read_stream(client, "/ui/stream")
        assert [e["id"] for e in stream] == ["visible"]
        assert read_stream(client, f"/ui/stream?topic={hidden}") == []
        forbidden = client.get(secret[0]["url"])
        assert forbidden.status_code == 403
        assert "may not" in forbidden.text
        detail = client.get(f"/ui/events/{stream[0]['seq']}")
        assert detail.status_code == 200
        assert "visible" in detail.text
        # Redelivering is subscription management: a Reader gets the API's 403, as a page.
        denied = client.post(f"/ui/subscriptions/topics/{readable}/whatever/redeliver", data={"all": "1"})
        assert denied.status_code in (403, 404)


def test_event_detail_shows_the_body_digit_for_digit(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    raw = (
        '[{"id":"exact","subject":"s","eventType":"T","eventTime":"2026-01-02T03:04:05Z",'
        '"dataVersion":"1","data":{"x":0.30000000000000001,"big":9007199254740993}}]'
    )
    headers = {"Content-Type": "application/json"}
    response = admin.post(f"/topics/{topic}/api/events", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    with signed_in(sqlite_server) as client:
        seq = read_stream(client, f"/ui/stream?topic={topic}")[0]["seq"]
        page = client.get(f"/ui/events/{seq}")
        assert page.status_code == 200
        assert "0.30000000000000001" in page.text
        assert "9007199254740993" in page.text
        assert re.search(r"No subscription matched this event", page.text)
        assert client.get("/ui/events/999999999").status_code == 404


def test_ui_off_answers_404_everywhere(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "no-ui", extra_args=["--no-ui"])
    server.start()
    try:
        for path in ("/", "/ui/login", "/ui/topics", "/ui/stream", "/ui/static/app.css"):
            assert httpx.get(server.url + path).status_code == 404, path
        assert httpx.post(server.url + "/ui/login", data={"token": server.admin_token}).status_code == 404
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()


def test_the_queue_viewer_consumes_only_on_an_explicit_post(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    name = "viewer" + uuid.uuid4().hex[:8]
    body = {"properties": {"destination": {"endpointType": "Queue", "properties": {}}}}
    assert admin.put(f"/topics/{topic}/eventSubscriptions/{name}", json=body).status_code == 201
    publish(admin, topic, [event("held-1")])
    stream = f"/ui/viewer/topics/{topic}/{name}/stream"
    deliveries = f"/topics/{topic}/eventSubscriptions/{name}/deliveries"
    with signed_in(sqlite_server) as client:
        assert client.get(f"/ui/viewer/topics/{topic}/{name}").status_code == 200
        assert client.get(stream).status_code == 405  # a link, an image, a prefetch: never consumes
        refused = client.post(stream, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        assert [d["state"] for d in admin.get(deliveries).json()["value"]] == ["pending"]
        found: list[dict[str, Any]] = []
        with client.stream("POST", stream, timeout=20.0) as response:
            assert response.status_code == 200
            name_seen = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name_seen = line[len("event: "):]
                elif line.startswith("data: ") and name_seen == "event":
                    found.append(json.loads(line[len("data: "):]))
                    break
            # The stream stays open while the viewer acknowledges what it showed.
            wait_until(lambda: [d["state"] for d in admin.get(deliveries).json()["value"]] == ["delivered"],
                       what="the viewer's acknowledgement")
    assert [item["id"] for item in found] == ["held-1"]

def test_delivery_states_count_each_events_deliveries_for_those_who_may_read_them(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    from tests.support.delivery import subscribe, webhook
    from tests.support.receiver import Receiver, Reply

    topic, _ = make_topic(admin)
    lonely, _ = make_topic(admin)
    with Receiver() as receiver:
        receiver.configure("/fails", default=Reply(500))
        subscribe(admin, topic, webhook(receiver.endpoint("/ok")))
        subscribe(admin, topic, webhook(receiver.endpoint("/fails")))
        publish(admin, topic, [event("fan-out")])
        publish(admin, lonely, [event("nobody")])
        receiver.wait_for_events(1, path="/ok")
        with signed_in(sqlite_server) as client:
            rows = {e["id"]: e["seq"] for e in read_stream(client, "/ui/stream")}
            fan_out, nobody = rows["fan-out"], rows["nobody"]
            deadline = time.monotonic() + 15
            while True:
                asked = {"seq": [fan_out, nobody, 999999999]}
                answer = client.get("/ui/delivery-states", params=asked).json()
                if answer.get(str(fan_out)) == {"delivered": 1, "retrying": 1} or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert answer == {str(fan_out): {"delivered": 1, "retrying": 1}, str(nobody): {}}
        # A principal without a role on the topic learns nothing about its deliveries.
        stranger = "stranger" + uuid.uuid4().hex[:8]
        token = admin.put(f"/principals/{stranger}").json()["token"]
        with signed_in(sqlite_server, token) as client:
            assert client.get("/ui/delivery-states", params={"seq": [fan_out]}).json() == {}
    with httpx.Client(base_url=sqlite_server.url) as anonymous:
        assert anonymous.get("/ui/delivery-states", params={"seq": [fan_out]}).status_code == 401


def test_event_page_shows_what_a_failing_endpoint_answered(
    sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    from tests.support.delivery import subscribe, webhook
    from tests.support.receiver import Receiver, Reply

    topic, _ = make_topic(admin)
    with Receiver() as receiver:
        down = Reply(503, body="model store is down", headers={"X-Why": "maint"})
        receiver.configure("/down", default=down)
        subscribe(admin, topic, webhook(receiver.endpoint("/down")))
        publish(admin, topic, [event("refused")])
        receiver.wait_for_events(1, path="/down")
        with signed_in(sqlite_server) as client:
            seq = read_stream(client, f"/ui/stream?topic={topic}")[0]["seq"]
            deadline = time.monotonic() + 15
            while True:
                page = client.get(f"/ui/events/{seq}").text
                if "model store is down" in page or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    assert "What the endpoint answered (503)" in page
    assert "model store is down" in page and "X-Why" in page and "maint" in page
    assert re.search(r'class="num duration">\d+ ms<', page)
    assert re.search(r'class="next-attempt"><time datetime=', page)  # a retry is planned
