"""``mlgrid serve`` over https: a self-signed certificate made once into the data dir, or a
given pair; the SDK, the CLI, the pull consumer and the web UI trust it through
``MLGRID_CA_BUNDLE``. Plain http stays the default (every other test runs on it)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.cli_runner import Cli
from tests.support.server import ServerProcess

from mlgrid.client import Client
from mlgrid.client.consumer import PullConsumer
from mlgrid.client.http import ApiError
from mlgrid.tls import ensure_self_signed


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("tls"), tls_self_signed=True)
    server.start()
    yield server
    server.stop()


def test_self_signed_certificate_is_made_once_and_announced(https_server: ServerProcess) -> None:
    assert https_server.url.startswith("https://")
    assert f"TLS certificate (self-signed; trust it with MLGRID_CA_BUNDLE): {https_server.ca_bundle}" \
        in https_server.log()
    key = https_server.data_dir / "tls" / "key.pem"
    assert key.stat().st_mode & 0o077 == 0
    before = https_server.ca_bundle.read_bytes()
    https_server.restart()
    assert https_server.ca_bundle.read_bytes() == before
    with https_server.client() as admin:
        assert admin.get("/readyz").status_code == 200


def test_an_untrusted_client_is_refused_and_plain_http_does_not_answer(https_server: ServerProcess) -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(https_server.url + "/readyz", timeout=5)
    assert isinstance(caught.value.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" \
        in str(caught.value)
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_server.url.replace("https://", "http://") + "/readyz", timeout=5)


def test_sdk_publishes_and_consumes_over_https_with_the_ca_bundle(https_server: ServerProcess) -> None:
    environ = {"MLGRID_CA_BUNDLE": str(https_server.ca_bundle)}
    with Client(https_server.url, https_server.admin_token, environ=environ) as client:
        topic = client.topics.create("tls-topic")
        assert topic["properties"]["endpoint"].startswith(https_server.url + "/topics/tls-topic")
        assert client.topics.list()
    bare = Client(https_server.url, https_server.admin_token, environ={})
    with pytest.raises(ApiError) as caught, bare:
        bare.topics.list()
    assert caught.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    with pytest.raises(ApiError, match="MLGRID_CA_BUNDLE"):
        Client(https_server.url, environ={"MLGRID_CA_BUNDLE": "/nonexistent.pem"})


def test_pull_consumer_over_https(https_server: ServerProcess) -> None:
    with https_server.client() as admin:
        assert admin.put("/topics/tls-pull", json={}).status_code in (200, 201)
        queue = {"properties": {"destination": {"endpointType": "Queue", "properties": {}}}}
        created = admin.put("/topics/tls-pull/eventSubscriptions/tls-queue", json=queue)
        assert created.status_code in (200, 201), created.text
        key = admin.post("/topics/tls-pull/listKeys").json()["key1"]
        event = {"id": "tls-1", "subject": "s", "eventType": "T", "eventTime": "2026-01-01T00:00:00Z"}
        published = admin.post("/topics/tls-pull/api/events", json=[event], headers={"aeg-sas-key": key})
        assert published.status_code == 200, published.text
    consumer = PullConsumer(https_server.url, "tls-pull", "tls-queue", key=key,
                            ca_bundle=str(https_server.ca_bundle))
    try:
        received = consumer.receive(max_events=1, max_wait_time=10)
        assert [r.event["id"] for r in received] == ["tls-1"]
        assert consumer.acknowledge([r.lock_token for r in received]).succeeded == [received[0].lock_token]
    finally:
        consumer.close()


def test_cli_and_web_ui_over_https(https_server: ServerProcess) -> None:
    cli = Cli(https_server)
    trust = {"MLGRID_CA_BUNDLE": str(https_server.ca_bundle)}
    result = cli.run("topic", "create", "--name", "tls-cli", env=trust)
    assert "tls-cli" in result.stdout
    listed = cli.run("topic", "list", env=trust)
    assert "tls-cli" in listed.stdout
    with httpx.Client(base_url=https_server.url, verify=str(https_server.ca_bundle)) as browser:
        signed_in = browser.post("/ui/login", data={"token": https_server.admin_token, "next": "/"})
        assert signed_in.status_code == 303, signed_in.text
        assert "secure" in signed_in.headers["set-cookie"].lower()  # the cookie never travels over http
        page = browser.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_given_certificate_pair_is_served(tmp_path: Path) -> None:
    pair = ensure_self_signed(tmp_path / "own")
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=[
        "--tls-certfile", str(pair.certfile), "--tls-keyfile", str(pair.keyfile)])
    try:
        server.data_dir.mkdir(parents=True)
        proc = _start_https(server, pair.certfile)
        assert "TLS certificate" not in server.log()
        assert proc.status_code == 200
    finally:
        server.stop()


def _start_https(server: ServerProcess, ca: Path) -> httpx.Response:
    """Start ``server`` (given a pair, it is https but not ``tls_self_signed``) and read /readyz."""
    import time

    args = [sys.executable, "-m", "mlgrid.cli.main", "serve", "--port", str(server.port),
            "--data-dir", str(server.data_dir), "--log-level", "warning", *server.extra_args]
    server.log_path = server.data_dir / "server.log"
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{server.port}/readyz"
    for _ in range(300):
        assert server.process.poll() is None, server.log()
        try:
            return httpx.get(url, verify=str(ca), timeout=1.0)
        except httpx.ConnectError as exc:
            if "CERTIFICATE" in str(exc):
                raise
            time.sleep(0.1)
    raise AssertionError(server.log())


def test_bad_tls_flags_stop_the_server_before_it_listens(tmp_path: Path) -> None:
    """Each bad combination is a unit test (tests/unit/test_tls_settings.py); here: serve exits."""
    serve = [sys.executable, "-m", "mlgrid.cli.main", "serve", "--data-dir", str(tmp_path), "--port", "1"]
    done = subprocess.run([*serve, "--tls-certfile", "/etc/hostname"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "tls_keyfile" in done.stderr, done.stderr
