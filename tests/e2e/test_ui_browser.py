"""The web UI in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

Sign in, watch a newly published event appear in the live list, open it, redeliver a dead
letter, read a Queue subscription in the viewer, score an endpoint and see a drift monitor's
chart. Screenshots go to ``test-artifacts/ui/``. The tests are skipped when Chromium is not
installed (``make test`` installs it); the endpoint and drift tests are skipped when the
server does not serve those APIs.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.support.delivery import event, make_topic, publish, subscribe, wait_until, webhook
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
TIMEOUT_MS = 15_000
MISSING_ROUTE = {"no such route", "method not allowed on this route"}

expect.set_options(timeout=TIMEOUT_MS)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def admin(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


@pytest.fixture
def page(browser: Browser, sqlite_server: ServerProcess) -> Iterator[Page]:
    """A fresh browser context (no cookies), signed in as the admin."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=sqlite_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def sign_in(page: Page, token: str, next_path: str = "/") -> None:
    page.goto(next_path)
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator(".who .principal")).to_be_visible()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def api_missing(client: httpx.Client, method: str, path: str, body: Any = None) -> bool:
    """Whether the server lacks the route (answers "no such route" / "method not allowed")."""
    response = client.request(method, path, json=body)
    if response.status_code not in (404, 405):
        return False
    return bool(response.json().get("error", {}).get("message") in MISSING_ROUTE)


def test_sign_in_with_a_token(page: Page, sqlite_server: ServerProcess) -> None:
    page.goto("/ui/topics")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.fill("#token", "mlg_wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("not valid")
    shot(page, "login-refused")
    page.fill("#token", sqlite_server.admin_token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/topics$"))
    expect(page.locator(".who .principal")).to_contain_text("admin")
    cookies = page.context.cookies()
    ui_cookie = next(c for c in cookies if c["name"] == "mlgrid_ui_token")
    assert ui_cookie["httpOnly"] is True
    assert ui_cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_a_new_event_appears_live_and_opens(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    publish(admin, topic, [event("older-" + uuid.uuid4().hex[:6], subject="orders/0")])
    sign_in(page, sqlite_server.admin_token, f"/?topic={topic}")
    expect(page.locator("#stream-state")).to_have_text("live")
    expect(page.locator("#live-rows tr")).to_have_count(1)
    fresh = "fresh-" + uuid.uuid4().hex[:8]
    publish(admin, topic, [event(fresh, subject="orders/42", data={"amount": 12.5, "currency": "EUR"})])
    row = page.locator(f'#live-rows tr[data-event-id="{fresh}"]')
    expect(row).to_be_visible()
    expect(page.locator("#live-rows tr").first).to_have_attribute("data-event-id", fresh)
    expect(row).to_contain_text("orders/42")
    shot(page, "live-stream")
    row.locator("a").click()
    expect(page).to_have_url(re.compile(r"/ui/events/\d+$"))
    expect(page.locator("#event-id")).to_have_text(fresh)
    expect(page.locator("#event-body")).to_contain_text('"currency": "EUR"')
    expect(page.locator("#event-body")).to_contain_text("12.5")
    shot(page, "event-detail")


def test_delivery_state_appears_on_a_live_event(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    """A new event shows, without a reload, how its deliveries fare: one subscription
    receives it, the other's receiver fails so it waits for a retry; an event of a topic
    without subscriptions says so."""
    topic, _ = make_topic(admin)
    quiet, _ = make_topic(admin)
    with Receiver() as receiver:
        receiver.configure("/fails", default=Reply(500))
        subscribe(admin, topic, webhook(receiver.endpoint("/ok")))
        subscribe(admin, topic, webhook(receiver.endpoint("/fails")))
        sign_in(page, sqlite_server.admin_token, "/")
        expect(page.locator("#stream-state")).to_have_text("live")
        fresh = "fate-" + uuid.uuid4().hex[:8]
        long_subject = "orders/" + "x" * 120
        publish(admin, topic, [event(fresh, subject=long_subject)])
        alone = "alone-" + uuid.uuid4().hex[:8]
        publish(admin, quiet, [event(alone, subject="orders/1")])
        row = page.locator(f'#live-rows tr[data-event-id="{fresh}"]')
        expect(row).to_be_visible()
        cell = row.locator("td.delivery")
        expect(cell.locator('[data-state="delivered"]')).to_have_text("delivered")
        expect(cell.locator('[data-state="retrying"]')).to_have_text("retrying")
        expect(cell).to_have_attribute("title", re.compile(r"of 2 deliveries"))
        # The long subject is cut, with the whole of it on hover; the date is shown in full.
        subject = row.locator("td.subject")
        expect(subject).to_have_attribute("title", long_subject)
        assert len(subject.inner_text()) < len(long_subject)
        expect(row.locator("time")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"))
        other = page.locator(f'#live-rows tr[data-event-id="{alone}"] td.delivery')
        expect(other).to_have_text("no subscription")
        shot(page, "live-delivery-state")
        assert page.url.endswith("/")  # never reloaded


def event_option(page: Page, event_id: str) -> str:
    """The picker's value (a sequence number) of the recent event ``event_id``."""
    value = page.locator(f'#tester-event option[data-event-id="{event_id}"]').get_attribute("value")
    assert value is not None
    return value


def test_filter_tester_verdicts(page: Page, sqlite_server: ServerProcess, admin: httpx.Client) -> None:
    """Pick a subscription and a recent event: a matching one passes every condition, a
    non-matching one names the condition that refused it; a pasted filter is tried instead."""
    topic, _ = make_topic(admin)
    name = subscribe(
        admin, topic, {"endpointType": "Queue", "properties": {}},
        filter={"includedEventTypes": [event()["eventType"]],
                "advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 10}]},
    )
    big, small = "big-" + uuid.uuid4().hex[:6], "small-" + uuid.uuid4().hex[:6]
    publish(admin, topic, [event(big, data={"total": 12.5}), event(small, data={"total": 3})])
    sign_in(page, sqlite_server.admin_token, "/ui/filter-tester")
    page.select_option("#tester-subscription", f"topics/{topic}/{name}")
    page.select_option("#tester-event", event_option(page, big))
    page.click("#tester-run")
    expect(page.locator("#verdict-badge")).to_have_text("matches")
    expect(page.locator("#tester-conditions tr.passes")).to_have_count(2)
    shot(page, "filter-tester")

    page.select_option("#tester-event", event_option(page, small))
    page.click("#tester-run")
    expect(page.locator("#verdict-badge")).to_have_text("does not match")
    refused = page.locator("#tester-conditions tr.fails")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("data.total NumberGreaterThan 10")
    expect(refused).to_contain_text("data.total is 3: fails")

    page.click("text=Paste an event or a filter being written")
    below_five = {"operatorType": "NumberLessThan", "key": "data.total", "value": 5}
    page.fill("#tester-filter-json", json.dumps({"advancedFilters": [below_five]}))
    page.click("#tester-run")
    expect(page.locator("#verdict-badge")).to_have_text("matches")
    expect(page.locator("#tester-verdict")).to_contain_text("the request (pasted)")


def test_live_filters_hide_other_events(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    sign_in(page, sqlite_server.admin_token, f"/?topic={topic}&subject=models/")
    expect(page.locator("#stream-state")).to_have_text("live")
    publish(admin, topic, [event("run-1", subject="runs/1"), event("model-1", subject="models/1")])
    expect(page.locator('#live-rows tr[data-event-id="model-1"]')).to_be_visible()
    expect(page.locator('#live-rows tr[data-event-id="run-1"]')).to_have_count(0)


def test_redeliver_a_dead_letter(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    with Receiver() as receiver:
        receiver.configure("/hook", default=Reply(400))
        name = subscribe(
            admin, topic, webhook(receiver.endpoint("/hook")),
            deadLetterDestination={
                "endpointType": "StorageBlob", "properties": {"blobContainerName": "dead"}
            },
        )
        lost = "lost-" + uuid.uuid4().hex[:8]
        publish(admin, topic, [event(lost)])
        url = f"/topics/{topic}/eventSubscriptions/{name}/deadLetters"
        wait_until(lambda: admin.get(url).json()["value"], what="a dead letter")
        receiver.configure("/hook", default=Reply(200))

        sign_in(page, sqlite_server.admin_token, "/ui/topics")
        row = page.locator(f'tr[data-subscription="{name}"]')
        expect(row.locator("[data-health]")).to_have_text("failing")
        shot(page, "topics-health")
        row.locator("a").first.click()
        dead = page.locator(f'tr[data-event-id="{lost}"]')
        expect(dead).to_contain_text("UndeliverableDueToClientError")
        shot(page, "subscription-dead-letters")
        dead.locator("button[data-redeliver]").click()
        expect(page.locator(".notice")).to_contain_text("Queued 1 dead letter")
        expect(page.locator(f'tr[data-event-id="{lost}"]')).to_contain_text("redelivered")
        # The first notification was refused (400); the redelivery is the second, same event id.
        notified = receiver.wait_for_events(2, path="/hook")
        assert [e["id"] for e in notified] == [lost, lost]
        deliveries = f"/topics/{topic}/eventSubscriptions/{name}/deliveries"
        wait_until(lambda: admin.get(deliveries, params={"state": "delivered"}).json()["value"],
                   what="the redelivery recorded as delivered")
        shot(page, "dead-letter-redelivered")


def test_event_page_shows_the_answer_and_redelivers_after_confirmation(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    """From the live list to the event: the failing endpoint's answer under its delivery, and
    a Redeliver that asks first (declined: nothing happens; accepted: delivered again)."""
    topic, _ = make_topic(admin)
    with Receiver() as receiver:
        receiver.configure("/hook", default=Reply(400, body={"error": "schema v2 expected"},
                                                  headers={"X-Request-Id": "r-42"}))
        dead = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dead"}}
        subscribe(admin, topic, webhook(receiver.endpoint("/hook")), deadLetterDestination=dead)
        lost = "answer-" + uuid.uuid4().hex[:8]
        sign_in(page, sqlite_server.admin_token, f"/?topic={topic}")
        expect(page.locator("#stream-state")).to_have_text("live")
        publish(admin, topic, [event(lost)])
        row = page.locator(f'#live-rows tr[data-event-id="{lost}"]')
        expect(row.locator('[data-state="deadLettered"]')).to_have_text("dead letter")
        receiver.configure("/hook", default=Reply(200))
        row.locator("a").click()
        expect(page.locator(".endpoint-response")).to_contain_text("schema v2 expected")
        expect(page.locator(".endpoint-response")).to_contain_text("r-42")
        expect(page.locator("td.duration")).to_have_text(re.compile(r"^\d+ ms$"))
        shot(page, "event-attempt-detail")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("button[data-redeliver-event]").click()
        expect(page.locator("button[data-redeliver-event]")).to_be_visible()  # still here: declined
        assert len(receiver.wait_for_events(1, path="/hook")) == 1
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("button[data-redeliver-event]").click()
        expect(page.locator(".notice")).to_contain_text("Queued 1 dead letter")
        assert [e["id"] for e in receiver.wait_for_events(2, path="/hook")] == [lost, lost]


def test_event_page_lists_every_attempt_and_dead_letters_after_confirmation(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    """A delivery failing again and again: the event page lists each attempt with what the
    endpoint answered, and "Dead-letter now" asks first (declined: still pending; accepted:
    dead-lettered by the operator, and not attempted again)."""
    topic, _ = make_topic(admin)
    with Receiver() as receiver:
        receiver.configure("/hook", default=Reply(500, body="overloaded, try later"))
        dead = {"endpointType": "StorageBlob", "properties": {"blobContainerName": "dead"}}
        name = subscribe(admin, topic, webhook(receiver.endpoint("/hook")), deadLetterDestination=dead)
        stuck = "stuck-" + uuid.uuid4().hex[:8]
        sign_in(page, sqlite_server.admin_token, f"/?topic={topic}")
        expect(page.locator("#stream-state")).to_have_text("live")
        publish(admin, topic, [event(stuck)])
        row = page.locator(f'#live-rows tr[data-event-id="{stuck}"]')
        expect(row).to_be_visible()
        deliveries = f"/topics/{topic}/eventSubscriptions/{name}/deliveries"
        wait_until(lambda: [d for d in admin.get(deliveries).json()["value"] if d["deliveryAttempts"] >= 3],
                   what="three failed attempts")
        row.locator("a").click()
        history = page.locator("details.attempt-history")
        history.locator("summary").click()
        attempts = history.locator("tbody tr")
        expect(attempts.first).to_contain_text("overloaded, try later")
        assert attempts.count() >= 3
        for index in range(3):
            expect(attempts.nth(index).locator("td").nth(3)).to_have_text("500")
        shot(page, "event-attempt-history")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("button[data-deadletter-delivery]").click()
        expect(page.locator("button[data-deadletter-delivery]")).to_be_visible()  # declined
        assert admin.get(deliveries).json()["value"][0]["state"] == "pending"
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("button[data-deadletter-delivery]").click()
        expect(page.locator(".notice")).to_contain_text("ended deadLettered (DeadLetteredByOperator)")
        expect(page.locator("button[data-deadletter-delivery]")).to_have_count(0)
        [ended] = admin.get(deliveries).json()["value"]
        assert (ended["state"], ended["reason"]) == ("deadLettered", "DeadLetteredByOperator")


def test_event_catalog_lists_the_five_ml_events_with_samples(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    """The catalog page: the five ML event types, each with a sample and its JSON Schema, and a
    custom topic's type with its real event; the AsyncAPI document is one click away."""
    if api_missing(admin, "GET", "/eventCatalog"):
        pytest.skip("the server has no event catalog")
    topic, _ = make_topic(admin)
    seen = "catalog-" + uuid.uuid4().hex[:8]
    publish(admin, topic, [event(seen)])
    sign_in(page, sqlite_server.admin_token, "/ui/catalog")
    ml_types = [
        "Microsoft.MachineLearningServices.RunCompleted",
        "Microsoft.MachineLearningServices.RunStatusChanged",
        "Microsoft.MachineLearningServices.ModelRegistered",
        "Microsoft.MachineLearningServices.ModelDeployed",
        "Microsoft.MachineLearningServices.DatasetDriftDetected",
    ]
    for event_type in ml_types:
        entry = page.locator(f'section[data-catalog-entry="{event_type}"]')
        expect(entry.locator(".catalog-sample pre")).to_contain_text(f'"eventType": "{event_type}"')
        if event_type.endswith("DatasetDriftDetected"):  # a number, as emitted (not a string)
            expect(entry.locator(".catalog-sample pre")).to_contain_text('"DriftCoefficient": 0.83')
        entry.locator(".catalog-schema summary").click()
        expect(entry.locator(".catalog-schema pre")).to_contain_text('"Sequencer"')
    custom = page.locator('section[data-catalog-entry="Test.Delivery.Happened"]')
    expect(custom.first.locator(".catalog-sample pre")).to_be_visible()
    expect(page.locator("#catalog-index")).to_contain_text(topic)
    shot(page, "event-catalog")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "event-catalog-top.png"))  # the first screen, for the docs
    response = page.request.get(page.locator("#asyncapi-link").get_attribute("href") or "")
    assert response.ok and response.json()["asyncapi"] == "3.0.0"


def test_queue_viewer_shows_delivered_events(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    topic, _ = make_topic(admin)
    name = subscribe(admin, topic, {"endpointType": "Queue", "properties": {}})
    sign_in(page, sqlite_server.admin_token, f"/ui/viewer/topics/{topic}/{name}")
    publish(admin, topic, [event("queued-0", subject="jobs/0")])
    # Opening the page consumes nothing: receiving is an explicit action (a POST).
    expect(page.locator("#viewer-state")).to_have_text("stopped")
    page.wait_for_timeout(500)
    assert not [d for d in admin.get(f"/topics/{topic}/eventSubscriptions/{name}/deliveries").json()["value"]
                if d["state"] == "delivered"]
    page.click("#viewer-start")
    expect(page.locator("#viewer-state")).to_have_text("live")
    expect(page.locator('article[data-event-id="queued-0"]')).to_be_visible()
    publish(admin, topic, [event("queued-1", subject="jobs/1")])
    item = page.locator('article[data-event-id="queued-1"]')
    expect(item).to_be_visible()
    expect(item).to_contain_text("jobs/1")
    # The viewer acknowledged it: the delivery is final.
    url = f"/topics/{topic}/eventSubscriptions/{name}/deliveries"
    wait_until(lambda: [d for d in admin.get(url).json()["value"] if d["state"] == "delivered"],
               what="the viewer's acknowledgement")
    shot(page, "queue-viewer")


def _workspace(admin: httpx.Client) -> str:
    name = "ui" + uuid.uuid4().hex[:10]
    response = admin.put(f"/workspaces/{name}", json={})
    assert response.status_code == 201, response.text
    return name


def test_score_an_endpoint(
    page: Page, sqlite_server: ServerProcess, admin: httpx.Client
) -> None:
    ws = _workspace(admin)
    if api_missing(admin, "GET", f"/workspaces/{ws}/endpoints/none"):
        pytest.skip("the endpoints API is not served yet")
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier().fit([[0.0], [1.0], [10.0], [11.0]], ["low", "low", "high", "high"])
    files = {"file": ("model.pkl", io.BytesIO(pickle.dumps(model)), "application/octet-stream")}
    registered = admin.post(f"/workspaces/{ws}/models/line/versions", files=files, data={"metadata": "{}"})
    assert registered.status_code == 201, registered.text
    body = {"properties": {"computeType": "Local", "models": ["line:1"]}}
    deployed = admin.put(f"/workspaces/{ws}/endpoints/line-endpoint", json=body)
    assert deployed.status_code in (200, 201, 202), deployed.text
    wait_until(
        lambda: admin.get(f"/workspaces/{ws}/endpoints/line-endpoint").json()["properties"]["state"]
        in ("Healthy", "Failed"),
        timeout=120, what="the deployment",
    )
    sign_in(page, sqlite_server.admin_token, f"/ui/workspaces/{ws}/endpoints/line-endpoint")
    expect(page.locator("#endpoint-state")).to_have_text("Healthy")
    page.fill("#score-body", '{"data": [[0.5], [10.5]]}')
    page.get_by_role("button", name="Score").click()
    expect(page.locator("#score-result")).to_contain_text("HTTP 200")
    expect(page.locator("#score-result")).to_contain_text('"low"')
    expect(page.locator("#score-result")).to_contain_text('"high"')
    shot(page, "endpoint-scoring")


def test_drift_chart(page: Page, sqlite_server: ServerProcess, admin: httpx.Client, tmp_path: Path) -> None:
    ws = _workspace(admin)
    if api_missing(admin, "GET", f"/workspaces/{ws}/datadrifts/none"):
        pytest.skip("the drift monitor API is not served yet")
    from mlgrid.cli.demo import DRIFT_DAYS, DRIFT_THRESHOLD, drift_datasets

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=DRIFT_DAYS)
    baseline_csv, target_csv = drift_datasets(tmp_path, first_day)
    ids = []
    sources = (("base", baseline_csv, {}), ("target", target_csv, {"timestampColumn": "timestamp"}))
    for name, path, extra in sources:
        with path.open("rb") as handle:
            created = admin.post(
                f"/workspaces/{ws}/datasets/{name}/versions", files={"file": (path.name, handle, "text/csv")},
                data=extra,
            )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    monitor = admin.put(f"/workspaces/{ws}/datadrifts/drifty", json={"properties": {
        "baselineDatasetId": ids[0], "targetDatasetId": ids[1], "frequency": "Day", "latency": 0,
        "threshold": DRIFT_THRESHOLD, "scheduleEnabled": False,
    }})
    assert monitor.status_code in (200, 201), monitor.text
    runs = admin.post(f"/workspaces/{ws}/datadrifts/drifty/runs", json={
        "start": first_day.isoformat(), "end": (first_day + timedelta(days=DRIFT_DAYS)).isoformat(),
    }, timeout=120)
    assert runs.status_code == 200, runs.text
    drifted = [r for r in runs.json()["value"] if r["eventPublished"]]
    assert drifted

    sign_in(page, sqlite_server.admin_token, f"/ui/workspaces/{ws}/datadrifts/drifty")
    chart = page.locator("svg.drift-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("line.threshold")).to_have_count(1)
    expect(chart.locator("circle.point")).to_have_count(DRIFT_DAYS)
    expect(chart.locator("circle.point.drifted")).to_have_count(len(drifted))
    # The runs table stays inside its card (it scrolls there when the card is narrow).
    runs_card = page.locator("section.card", has=page.locator("table.drift-runs"))
    card = runs_card.bounding_box()
    scroller = runs_card.locator(".table-scroll").bounding_box()
    assert card is not None and scroller is not None
    assert scroller["x"] + scroller["width"] <= card["x"] + card["width"] + 0.5
    content = page.locator("main.content").bounding_box()
    assert content is not None and card["x"] + card["width"] <= content["x"] + content["width"] + 0.5
    shot(page, "drift-chart")
    page.goto(f"/?topic={ws}&type=DatasetDriftDetected")
    expect(page.locator("#live-rows tr")).to_have_count(len(drifted))
