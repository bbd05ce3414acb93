"""One error envelope on every route (SPEC §3 error body, §11.5, §12).

The test walks every route the app declares — not a hand-written list — so a router added
tomorrow is checked the day it lands:

* no credentials (and a bad bearer token) → 401 with the envelope, except the routes listed
  in ``PUBLIC`` with the reason they are public;
* a method the path does not serve → 405 with the envelope and an ``Allow`` header;
* a body that is not JSON, and a JSON body of the wrong type, on every route that reads a JSON
  body → 400 with the envelope, the second naming the field (``details[].target``);
* an unknown route → 404 with the envelope.

Paths are filled with real resources (a topic, a workspace, subscriptions, a run, a drift
monitor), so a 404 for a missing parent never hides the check a route is under test for. It
is about HTTP shape, so it runs on SQLite only.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import compile_path
from tests.support.server import ServerProcess

from mlgrid.config import Settings
from mlgrid.server import create_app

# Routes that answer without credentials, each with the reason. Anything else must say 401.
PUBLIC: dict[str, str] = {
    "/healthz": "liveness probe for process supervisors; reveals nothing",
    "/readyz": "readiness probe for load balancers; reveals nothing",
    "/metrics": "Prometheus scrapes without credentials (counters only, no names of resources)",
    "/openapi.json": "the API description is public, like Azure's REST specs",
    "/docs": "Swagger UI page over /openapi.json",
    "/docs/oauth2-redirect": "Swagger UI helper page",
    "/redoc": "ReDoc page over /openapi.json",
    "/eventSubscriptions/validate": "the manual validation GET (SPEC §4.1): the code in the "
    "validationUrl is the credential, the webhook owner has no token",
    "/{tenant}/v2.0/.well-known/openid-configuration": "OpenID discovery is public by definition",
    "/metadata/endpoints": "ARM's cloud metadata (az cloud register reads it before any sign-in); "
    "names only this server's own URLs",
    "/workspaces/{workspace}/connectors/{name}/webhook": "MLflow's webhook doorbell: MLflow "
    "signs it with the connector's webhookSecret (X-MLflow-Signature), it carries no bearer "
    "token; it only makes the connector re-read MLflow (tests/integration/test_connectors_api.py)",
    "/{tenant}/oauth2/v2.0/token": "the OAuth token endpoint is where credentials are presented; "
    "its errors are RFC 6749's shape, which OAuth clients read (tests/integration/"
    "test_azure_credentials.py)",
}
# The web UI signs in with a cookie session: its pages redirect to /ui/login and its
# event-stream endpoints answer 401 in plain text to the browser's EventSource.
UI_PATHS = re.compile(r"^/($|ui/)")
# Routes whose body is not checked as JSON, with the reason.
BODY_EXEMPT: dict[tuple[str, str], str] = {
    ("POST", "/workspaces/{workspace}/endpoints/{name}/score"): "the body goes unread to the "
    "scoring process of a deployed model, which decides what it accepts",
    ("POST", "/systemTopics/{workspace}/api/events"): "refused before the body is read: a "
    "system topic takes no publishes (403 whatever the body)",
    ("POST", "/systemTopics/{workspace}:publish"): "refused before the body is read, as above",
}
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")
# Publish and pull accept the topic's own keys, so they must find the topic before they can
# check a credential: an unknown topic is a 404 there. Every management route says 401 first.
DATA_PLANE = re.compile(r"(/api/events|:[A-Za-z]+)$")


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    takes_json: bool

    @property
    def is_public(self) -> bool:
        return self.path in PUBLIC or bool(UI_PATHS.match(self.path))


def _takes_json(route: Any) -> bool:
    if not isinstance(route, APIRoute):
        return False
    if route.body_field is not None:
        return True
    content = ((route.openapi_extra or {}).get("requestBody") or {}).get("content") or {}
    return "application/json" in content


def app_routes() -> list[RouteInfo]:
    """Every route of the app, include_in_schema or not (aliases are routes too)."""
    app = create_app(Settings())
    found: list[RouteInfo] = []
    for context in iter_route_contexts(app.routes):
        path = context.path
        methods = context.methods
        if not path or not methods:
            continue
        found.append(RouteInfo(path, frozenset(methods) - {"HEAD"}, _takes_json(context.original_route)))
    return found


ROUTES = app_routes()


@dataclass
class World:
    """Real resources whose names fill the path templates."""

    topic: str
    topic_subscription: str
    workspace: str
    workspace_subscription: str
    experiment: str
    run_id: str
    monitor: str
    dataset: str
    subscription_id: str = "00000000-0000-0000-0000-000000000000"

    def fill(self, template: str) -> str:
        """The concrete URL of ``template`` with this world's resources."""
        in_workspace = template.startswith(("/workspaces/", "/systemTopics/")) or any(
            scope in template for scope in ("/workspaces/{workspaceName}", "/systemTopics/{systemTopicName}"))
        by_parent = {
            "models": "cmodel1", "datasets": self.dataset, "datadrifts": self.monitor,
            "endpoints": "cendpoint1", "principals": "cprincipal1", "versions": "1",
        }

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            before = template[: match.start()].rstrip("/").rsplit("/", 1)[-1]
            if name in {"name", "version"}:
                return by_parent.get(before, "cname1")
            return {
                "topic": self.topic,
                "parent": self.workspace if in_workspace else self.topic,
                "subscription": self.workspace_subscription if in_workspace else self.topic_subscription,
                "workspace": self.workspace,
                "principal": "cprincipal1",
                "experiment": self.experiment,
                "run_id": self.run_id,
                "path": "outputs/notes.txt",
                "dataset_id": str(uuid.uuid4()),
                "seq": "1",
                "delivery": "1",
                "kind": "topics",
                "tenant": "mlgrid",
                # The ARM-shaped routes (api/arm_*.py), which also need an api-version.
                "subscriptionId": self.subscription_id,
                "resourceGroupName": "default",
                "topicName": self.topic,
                "systemTopicName": self.workspace,
                "workspaceName": self.workspace,
                "eventSubscriptionName": self.workspace_subscription if in_workspace
                else self.topic_subscription,
            }[name]

        filled = re.sub(r"\{([A-Za-z_]+)(?::[a-z]+)?\}", value, template)
        return filled + "?api-version=2025-02-15" if template.startswith("/subscriptions/") else filled


def assert_envelope(response: httpx.Response, status: int, where: str) -> dict[str, Any]:
    """The SPEC §3 error body: error.code and error.message non-empty, error.details a list."""
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], f"{where}: {body}"
    assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body}"
    assert isinstance(error.get("details"), list), f"{where}: {body}"
    for detail in error["details"]:
        assert isinstance(detail.get("code"), str) and detail["code"], f"{where}: {body}"
        assert isinstance(detail.get("message"), str) and detail["message"], f"{where}: {body}"
    return dict(error)


def _queue_subscription() -> dict[str, Any]:
    return {"properties": {"destination": {"endpointType": "Queue", "properties": {}}}}


def _csv(rows: int, with_time: bool) -> bytes:
    lines = ["ts,amount" if with_time else "amount"]
    for i in range(rows):
        amount = f"{100 + i % 7}.5"
        lines.append(f"2025-01-01T{i % 24:02d}:00:00Z,{amount}" if with_time else amount)
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def admin(sqlite_server: ServerProcess) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def world(admin: httpx.Client) -> World:
    suffix = uuid.uuid4().hex[:8]
    w = World(
        topic=f"shape-topic-{suffix}", topic_subscription="shape-queue",
        workspace=f"shape-ws-{suffix}", workspace_subscription="shape-ws-queue",
        experiment="shape-exp", run_id="", monitor="shape-monitor", dataset="shape-target",
    )
    created = admin.put(f"/topics/{w.topic}", json={"properties": {}})
    assert created.status_code in (200, 201)
    w.subscription_id = created.json()["id"].split("/")[2]
    assert admin.put(f"/topics/{w.topic}/eventSubscriptions/{w.topic_subscription}",
                     json=_queue_subscription()).status_code in (200, 201)
    assert admin.put(f"/workspaces/{w.workspace}", json={"properties": {}}).status_code in (200, 201)
    assert admin.put(f"/workspaces/{w.workspace}/eventSubscriptions/{w.workspace_subscription}",
                     json=_queue_subscription()).status_code in (200, 201)
    run = admin.post(f"/workspaces/{w.workspace}/experiments/{w.experiment}/runs", json={})
    assert run.status_code == 201, run.text
    w.run_id = run.json()["runId"]
    datasets = {}
    for name, timed in (("shape-baseline", False), (w.dataset, True)):
        created = admin.post(
            f"/workspaces/{w.workspace}/datasets/{name}/versions",
            files={"file": (f"{name}.csv", io.BytesIO(_csv(60, timed)), "text/csv")},
            data={"timestampColumn": "ts"} if timed else {},
        )
        assert created.status_code == 201, created.text
        datasets[name] = created.json()["id"]
    monitor = admin.put(f"/workspaces/{w.workspace}/datadrifts/{w.monitor}", json={"properties": {
        "baselineDatasetId": datasets["shape-baseline"], "targetDatasetId": datasets[w.dataset],
        "frequency": "Day", "latency": 0, "threshold": 0.2, "scheduleEnabled": False,
    }})
    assert monitor.status_code in (200, 201), monitor.text
    return w


def _served(concrete: str) -> set[str]:
    """The methods some route serves at the concrete URL."""
    served: set[str] = set()
    path = concrete.split("?", 1)[0]
    for other in ROUTES:
        regex, _, _ = compile_path(other.path)
        if regex.match(path):
            served |= other.methods
    return served


def _wrong_method(concrete: str) -> str | None:
    """A method no route serves at ``concrete`` (a path like /topics/{t} also matches
    /topics/x:publish, so the method must be wrong for every template that matches)."""
    served = _served(concrete)
    return next((m for m in METHODS if m not in served), None)


def test_the_route_walk_found_the_whole_api() -> None:
    """Guards the walk itself: a silently empty route list would make the test below pass."""
    paths = {r.path for r in ROUTES}
    for expected in ("/topics/{topic}", "/topics/{topic}/api/events",
                     "/workspaces/{parent}/eventsubscriptions/{subscription}:receive",
                     "/workspaces/{workspace}/datadrifts/{name}/runs", "/principals/{name}"):
        assert expected in paths
    assert sum(r.takes_json for r in ROUTES) >= 30
    stale = set(PUBLIC) - paths
    assert not stale, f"PUBLIC lists routes that no longer exist: {stale}"


def test_every_route_answers_errors_in_the_one_envelope(
    sqlite_server: ServerProcess, admin: httpx.Client, world: World
) -> None:
    anonymous = httpx.Client(base_url=sqlite_server.url, timeout=30.0)
    stranger = httpx.Client(base_url=sqlite_server.url, timeout=30.0,
                            headers={"Authorization": "Bearer not-a-token-of-this-server"})
    checked_401 = checked_405 = checked_body = 0
    with anonymous, stranger:
        for route in ROUTES:
            url = world.fill(route.path)
            # (a) credentials
            for method in sorted(route.methods):
                if route.is_public:
                    continue
                where = f"{method} {route.path} without credentials"
                assert_envelope(anonymous.request(method, url), 401, where)
                where = f"{method} {route.path} with an unknown bearer token"
                assert_envelope(stranger.request(method, url), 401, where)
                checked_401 += 1
            # (b) wrong method
            if not UI_PATHS.match(route.path):
                wrong = _wrong_method(url)
                if wrong is not None:
                    response = anonymous.request(wrong, url)
                    assert_envelope(response, 405, f"{wrong} {route.path}")
                    # Allow names every method some template serves at this path, and OPTIONS
                    # (answered 204 with the same header): check it is honest.
                    allowed = {m.strip() for m in response.headers.get("allow", "").split(",")} - {""}
                    assert allowed, f"{wrong} {route.path}: no Allow header"
                    assert "OPTIONS" in allowed, f"{wrong} {route.path}: Allow {allowed}"
                    honest = allowed - {"HEAD", "OPTIONS"} <= _served(url)
                    assert honest, f"{wrong} {route.path}: Allow {allowed}"
                    checked_405 += 1
            # (c) bodies
            for method in sorted(route.methods):
                if not route.takes_json or route.is_public or (method, route.path) in BODY_EXEMPT:
                    continue
                where = f"{method} {route.path} with a body that is not JSON"
                response = admin.request(method, url, content=b"{not json",
                                         headers={"content-type": "application/json"})
                assert_envelope(response, 400, where)
                where = f"{method} {route.path} with a JSON string as body"
                response = admin.request(method, url, content=b'"a string"',
                                         headers={"content-type": "application/json"})
                error = assert_envelope(response, 400, where)
                targets = [d.get("target") for d in error["details"]]
                assert any(isinstance(t, str) and t for t in targets), f"{where}: names no field: {error}"
                checked_body += 1
    assert checked_401 > 100 and checked_405 > 50 and checked_body > 30


GHOST = World(
    topic="ghost-topic", topic_subscription="ghost-sub", workspace="ghost-ws",
    workspace_subscription="ghost-sub", experiment="ghost-exp", run_id="ghost_1_00000000",
    monitor="ghost-monitor", dataset="ghost-dataset",
)


def test_every_read_answers_without_a_server_error(admin: httpx.Client, world: World) -> None:
    """Every GET of the API, as admin, on real and on missing resources: never a 5xx, and
    any error in the envelope (a bounded stand-in for a schema fuzzer's "no 5xx" check)."""
    reads = 0
    for route in ROUTES:
        if route.is_public or "GET" not in route.methods or route.path.endswith("/stream"):
            continue
        for resources in (world, GHOST):
            response = admin.get(resources.fill(route.path), params={"maxWaitTime": 0})
            where = f"GET {route.path} ({'missing' if resources is GHOST else 'real'} resources)"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
            if response.status_code >= 400:
                assert_envelope(response, response.status_code, where)
            reads += 1
    assert reads > 60


def test_unauthenticated_callers_learn_nothing_about_missing_resources(
    sqlite_server: ServerProcess,
) -> None:
    """401 comes before 404: without credentials, a missing topic looks like an existing one."""
    with httpx.Client(base_url=sqlite_server.url, timeout=30.0) as anonymous:
        for route in ROUTES:
            if route.is_public:
                continue
            for method in sorted(route.methods):
                response = anonymous.request(method, GHOST.fill(route.path))
                allowed = (401, 404) if DATA_PLANE.search(route.path) else (401,)
                where = f"{method} {route.path} on missing resources without credentials"
                assert_envelope(response, response.status_code if response.status_code in allowed else 401,
                                where)


def test_public_routes_still_answer_errors_in_the_envelope(
    sqlite_server: ServerProcess,
) -> None:
    """The manual validation GET is public, but a bad link still gets the envelope."""
    with httpx.Client(base_url=sqlite_server.url, timeout=30.0) as anonymous:
        assert_envelope(anonymous.get("/eventSubscriptions/validate"), 400, "validate without a code")
        unknown = anonymous.get("/eventSubscriptions/validate", params={"id": "nope", "code": "nope"})
        assert_envelope(unknown, 404, "validate with an unknown id and code")
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/no-such-route"),
        ("POST", "/no/such/route/at/all"),
        ("GET", "/topics/a-topic/no-such-child"),
        ("DELETE", "/workspaces/a-workspace/runs/r1/no-such-child/deeper"),
        ("PUT", "/systemTopics"),  # a known prefix: 405, not 404
    ],
)
def test_unknown_routes_answer_404_in_the_envelope(
    sqlite_server: ServerProcess, method: str, path: str
) -> None:
    with httpx.Client(base_url=sqlite_server.url, timeout=30.0) as anonymous:
        response = anonymous.request(method, path)
    assert_envelope(response, 405 if path == "/systemTopics" else 404, f"{method} {path}")
