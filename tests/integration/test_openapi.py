"""``/openapi.json`` describes the whole API (SPEC §10): every route, a summary per operation,
the request body of every call that reads one, every path parameter, and a real ``info``.

The document is read from a running server, so what is checked is what clients download; the
route list it is compared with comes from the app itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from tests.support.server import ServerProcess

from mlgrid.config import Settings
from mlgrid.server import create_app

OPERATIONS = ("get", "put", "post", "patch", "delete")
# Routes that are deliberately not in the document, with the reason.
NOT_DOCUMENTED: dict[str, str] = {
    "/openapi.json": "the document itself",
    "/docs": "Swagger UI page",
    "/docs/oauth2-redirect": "Swagger UI helper page",
    "/redoc": "ReDoc page",
}
# The web UI: HTML pages and browser event streams behind a cookie session, not an API.
UI_PATHS = re.compile(r"^/($|ui/)")
# Writes that read no body, with the reason. Any other POST/PUT/PATCH must declare one.
_ACTION = "an action without input, as in Azure"
_RECEIVE = "maxEvents and maxWaitTime are query parameters"
_ARM_GROUP = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
_ARM_TOPIC = _ARM_GROUP + "/providers/Microsoft.EventGrid/topics/{topicName}"
_DEAD_LETTER_NOW = "the path names the delivery; the action takes nothing else"
NO_BODY: dict[tuple[str, str], str] = {
    ("put", "/principals/{name}"): "the name is the whole input; the token is generated",
    ("post", "/topics/{topic}/listKeys"): _ACTION,
    **{("post", f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}/getFullUrl"): _ACTION
       for kind in ("topics", "systemTopics", "workspaces")},
    **{("post", f"/{kind}/{{parent}}/eventsubscriptions/{{subscription}}:receive"): _RECEIVE
       for kind in ("topics", "systemTopics", "workspaces")},
    ("post", f"{_ARM_TOPIC}/listKeys"): _ACTION,
    **{("post", f"{scope}/{{eventSubscriptionName}}/getFullUrl"): _ACTION for scope in (
        f"{_ARM_TOPIC}/providers/Microsoft.EventGrid/eventSubscriptions",
        f"{_ARM_TOPIC}/eventSubscriptions",
        f"{_ARM_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{{workspaceName}}"
        "/providers/Microsoft.EventGrid/eventSubscriptions",
        f"{_ARM_GROUP}/providers/Microsoft.EventGrid/systemTopics/{{systemTopicName}}/eventSubscriptions",
    )},
    ("post", "/workspaces/{workspace}/connectors/{name}:resync"): _ACTION,
    **{("post", f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}/deliveries/{{delivery}}:deadLetter"):
       _DEAD_LETTER_NOW for kind in ("topics", "systemTopics", "workspaces")},
}


def _template(path: str) -> str:
    """``{path:path}`` in a route is ``{path}`` in the document."""
    return re.sub(r"\{([A-Za-z_]+):[a-z]+\}", r"{\1}", path)


@pytest.fixture(scope="module")
def spec(sqlite_server: ServerProcess) -> Iterator[dict[str, Any]]:
    response = httpx.get(sqlite_server.url + "/openapi.json", timeout=30.0)
    assert response.status_code == 200
    yield response.json()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in OPERATIONS:
            if method in item:
                yield path, method, item[method]


def test_info_says_what_the_api_is(spec: dict[str, Any]) -> None:
    info = spec["info"]
    for key in ("title", "version", "description"):
        assert isinstance(info.get(key), str) and info[key].strip(), f"info.{key} is empty"


def test_every_api_route_is_in_the_document(spec: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(spec)}
    documented_lower = {(path.lower(), method) for path, method in documented}
    missing = []
    for context in iter_route_contexts(create_app(Settings()).routes):
        path = context.path
        if not path or not context.methods or path in NOT_DOCUMENTED or UI_PATHS.match(path):
            continue
        for method in sorted(m.lower() for m in context.methods - {"HEAD"}):
            key = (_template(path), method)
            if key in documented:
                continue
            # The case variants Azure's clients use (eventsubscriptions / eventSubscriptions)
            # are served but documented once.
            if (key[0].lower(), method) in documented_lower:
                continue
            missing.append(f"{method.upper()} {path}")
    assert not missing, f"routes missing from /openapi.json: {missing}"
    assert len(documented) > 100


def test_no_ui_page_leaks_into_the_document(spec: dict[str, Any]) -> None:
    leaked = [path for path in spec["paths"] if UI_PATHS.match(path)]
    assert not leaked


def test_every_operation_has_a_summary_and_a_unique_id(spec: dict[str, Any]) -> None:
    ids: dict[str, str] = {}
    for path, method, operation in _operations(spec):
        where = f"{method.upper()} {path}"
        summary = operation.get("summary")
        assert isinstance(summary, str) and summary.strip(), f"{where}: no summary"
        assert operation.get("responses"), f"{where}: no responses"
        operation_id = operation.get("operationId")
        assert operation_id, f"{where}: no operationId"
        assert operation_id not in ids, f"{where} and {ids[operation_id]} share operationId {operation_id}"
        ids[operation_id] = where


def test_every_write_declares_its_request_body(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        if method not in ("post", "put", "patch"):
            continue
        where = f"{method.upper()} {path}"
        body = operation.get("requestBody")
        if (method, path) in NO_BODY:
            assert body is None, f"{where} is listed as reading no body but declares one"
            continue
        assert body is not None, f"{where}: no requestBody (or list it in NO_BODY with the reason)"
        content = body.get("content") or {}
        assert content, f"{where}: requestBody without content"
        for media_type, entry in content.items():
            schema = entry.get("schema")
            assert isinstance(schema, dict) and schema, f"{where}: {media_type} has no schema"
    stale = [key for key in NO_BODY if key[1] not in spec["paths"] or key[0] not in spec["paths"][key[1]]]
    assert not stale, f"NO_BODY lists operations that no longer exist: {stale}"


def test_every_path_parameter_is_documented(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "path"}
        assert set(declared) == in_path, f"{method.upper()} {path}: path parameters {sorted(declared)}"
        for name, parameter in declared.items():
            assert parameter.get("required") is True, f"{method.upper()} {path}: {name} not required"
            assert parameter.get("schema"), f"{method.upper()} {path}: {name} has no schema"


# --- error responses (SPEC §3): every operation declares the errors its route can give ------

#: Operations anyone may call; every other one must answer 401 without credentials (checked
#: against the running server below, so this list cannot claim more than is true).
OPEN = {
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
    ("get", "/eventSubscriptions/validate"),
    ("get", "/{tenant}/v2.0/.well-known/openid-configuration"), ("post", "/{tenant}/oauth2/v2.0/token"),
    ("get", "/metadata/endpoints"),
}
#: Routes that take the topic's own keys (publish, pull) or a signature (the MLflow webhook)
#: find the resource before they can check the credential: for a missing one they answer 404
#: (docs/decisions.md, "API contract"); 401 is checked on the others.
KEY_AUTH = re.compile(r"(/api/events|:publish|/eventsubscriptions/\{subscription\}:[a-zA-Z]+|/webhook)$")
#: RFC 6749's token endpoint answers OAuth's own error body, not the envelope.
OAUTH_TOKEN = ("post", "/{tenant}/oauth2/v2.0/token")
ENVELOPE_REF = {"$ref": "#/components/schemas/Error"}


def _errors_the_route_can_give(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    """From what the operation reads: parameters or a body can be wrong (400), a caller can lack
    credentials or a role (401/403), a path can name nothing (404), a write can conflict or
    miss its If-Match (409/412), a body can be too large or not JSON (413/415), the database
    can be down (503)."""
    expected = {"503"}
    if operation.get("parameters") or operation.get("requestBody"):
        expected.add("400")
    if (method, path) not in OPEN:
        expected |= {"401", "403"}
    if "{" in path:
        expected.add("404")
    if method in ("put", "patch", "delete", "post") and (method, path) not in OPEN:
        expected.add("409")
        if method != "post":
            expected.add("412")
    if operation.get("requestBody"):
        expected |= {"413", "415"}
    return expected


def test_every_operation_declares_its_error_responses_with_the_envelope(spec: dict[str, Any]) -> None:
    missing: list[str] = []
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "422" not in responses, f"{where}: declares 422; mlgrid answers a bad request with 400"
        if (method, path) == OAUTH_TOKEN:
            assert {"400", "401"} <= set(responses), where
            continue
        for status in sorted(_errors_the_route_can_give(method, path, operation)):
            declared = responses.get(status)
            if declared is None:
                missing.append(f"{where}: {status}")
                continue
            schema = declared.get("content", {}).get("application/json", {}).get("schema")
            assert schema == ENVELOPE_REF, f"{where}: {status} is not the error envelope: {declared}"
    assert not missing, f"operations missing error responses: {missing}"


def test_the_error_schema_is_the_envelope_the_server_sends(
    spec: dict[str, Any], sqlite_server: ServerProcess
) -> None:
    schema = spec["components"]["schemas"]["Error"]
    assert schema["required"] == ["error"]
    error = schema["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    with sqlite_server.client() as api:
        body = api.get("/topics/no-such-topic-here").json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert set(body["error"]) <= set(error["properties"])


def test_operations_that_are_not_open_answer_401_without_credentials(
    spec: dict[str, Any], sqlite_server: ServerProcess
) -> None:
    """What makes the 401/403 declarations (and the OPEN list) true: every other operation
    refuses a request without credentials."""
    wrong = []
    with httpx.Client(base_url=sqlite_server.url, timeout=30.0) as anonymous:
        for path, method, _operation in _operations(spec):
            if (method, path) in OPEN or KEY_AUTH.search(path):
                continue
            url = re.sub(r"\{[^}]+\}", "abc", path)
            if path.startswith("/subscriptions/"):
                url += "?api-version=2022-06-15"
            body = {} if method in ("put", "post", "patch") else None
            response = anonymous.request(method.upper(), url, json=body)
            if response.status_code != 401:
                wrong.append(f"{method.upper()} {path}: {response.status_code}")
    assert not wrong, f"operations not listed as open that answer without credentials: {wrong}"


def test_name_and_version_rules_are_in_the_path_parameters(spec: dict[str, Any]) -> None:
    """SPEC §1's names (3-64 of [A-Za-z0-9_-]) and versions (1-9 digits) as schemas."""
    names = {"topic", "parent", "subscription", "workspace", "principal", "experiment", "name",
             "topicName", "systemTopicName", "workspaceName", "eventSubscriptionName"}
    checked = 0
    for path, method, operation in _operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") != "path":
                continue
            schema = parameter["schema"]
            if parameter["name"] in names:
                assert (schema.get("minLength"), schema.get("maxLength")) == (3, 64), f"{method} {path}"
                assert re.fullmatch(schema["pattern"].strip("^$"), "my-topic_01"), f"{method} {path}"
                assert not re.search(schema["pattern"], "a.b"), f"{method} {path}"
                checked += 1
            if parameter["name"] == "version":
                assert re.search(schema["pattern"], "12") and not re.search(schema["pattern"], "1a")
                checked += 1
    assert checked > 200
