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
