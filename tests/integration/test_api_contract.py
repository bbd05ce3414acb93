"""schemathesis against a real server: the API answers as ``/openapi.json`` says (SPEC §3, §10).

A fresh SQLite server is started, real resources are created first (a topic, a workspace,
subscriptions under both, a principal with roles, an experiment run with a metric and an
artifact, a model version), and every path parameter is pinned to one of them, so generated
requests reach the handlers instead of stopping at 404. schemathesis then runs every
operation with every check, in all its phases (but the coverage phase of the subscription
routes whose body another route's coverage already enumerates: COVERED_BY_ANOTHER_ROUTE), once,
with a fixed seed, bounded by
``max-examples`` (the coverage phase, which sends every boundary and every schema-violating
case the schema defines, does not depend on it): about two minutes on a 2-core machine (the
whole suite must stay under 20). No ``max-time`` is given: with one, schemathesis repeats its
fuzzing and stateful phases until the time is spent, so the run would always take that long
and the cases run would depend on the machine's speed. The run passes with 0 failures; its
summary (operations, test cases, failures) is printed.

Left out, with the reason:

* ``POST .../experiments/{e}/jobs`` runs its ``command`` on the host: generated shell commands
  are not something a test should execute.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.server import ServerProcess

pytestmark = pytest.mark.timeout(900)

#: Generated test cases per operation, generation mode and phase (fuzzing, stateful); the
#: whole run is one pass over every operation, so this sets its length.
MAX_EXAMPLES = 3
#: A hang guard for the schemathesis process, far above the run's usual length.
TIMEOUT = 600
NAME = "stname"
RESOURCES = {
    "topic": "st-topic",
    "workspace": "st-ws",
    "subscription": "st-sub",
    "principal": "st-reader",
    "experiment": "st-exp",
    "name": NAME,
    "version": "1",
}
EXCLUDED_OPERATIONS = {
    ("POST", "/workspaces/{workspace}/experiments/{experiment}/jobs"): "runs generated shell commands",
}
#: Operations where a request the schema allows may still be refused with 400, for a rule a JSON
#: Schema cannot state; positive_data_acceptance accepts 400 there, every other check stays.
_SUBSCRIPTION_VALUES = (
    "a destination's values have rules a JSON Schema does not state: a webhook URL must not be "
    "a link-local or metadata address, connection URLs take only some paths and query options, "
    "endpointBaseUrl stands for the stored URL only when it matches it, advanced filters "
    "depend on the operator"
)
_BY_INPUT_SCHEMA = "which event members are required depends on the topic's input schema"
_FILTER_VALUES = (
    "a filter's rules a JSON Schema does not state: which keys are addressable depends on the "
    "subscription's input schema, advanced filters hold at most 25 values in all, and an operator "
    "takes value or values"
)
_MAPPING = "inputSchemaMapping's members have rules of their own (events/schemas.py)"
_ARM = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
_SUBSCRIPTION_ROUTES = [
    *(f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}"
      for kind in ("topics", "systemTopics", "workspaces")),
    f"{_ARM}/providers/Microsoft.EventGrid/topics/{{topicName}}/eventSubscriptions/{{eventSubscriptionName}}",
    f"{_ARM}/providers/Microsoft.EventGrid/topics/{{topicName}}/providers/Microsoft.EventGrid/eventSubscriptions"
    "/{eventSubscriptionName}",
    f"{_ARM}/providers/Microsoft.EventGrid/systemTopics/{{systemTopicName}}/eventSubscriptions"
    "/{eventSubscriptionName}",
    f"{_ARM}/providers/Microsoft.MachineLearningServices/workspaces/{{workspaceName}}/providers/Microsoft.EventGrid"
    "/eventSubscriptions/{eventSubscriptionName}",
]
REFUSED_FOR_A_REASON = {
    ("GET", "/topics/{topic}/events"): "until must not be before since (a rule between two parameters)",
    ("GET", "/systemTopics/{workspace}/events"): "until must not be before since",
    ("PUT", "/workspaces/{workspace}/datadrifts/{name}"): "the body names dataset versions by id, which "
    "must exist in the workspace and have the named columns",
    ("PUT", "/workspaces/{workspace}/endpoints/{name}"): "the body names model versions, which must exist",
    ("PUT", "/topics/{topic}"): _MAPPING,
    ("PUT", f"{_ARM}/providers/Microsoft.EventGrid/topics/{{topicName}}"):
    _MAPPING + "; properties.resourceGroup, when given, must be the path's resource group",
    ("PUT", "/workspaces/{workspace}"): "resourceGroup is fixed when the workspace is created",
    ("PUT", "/workspaces/{workspace}/connectors/{name}"): "trackingUri is probed: it must be a reachable "
    "MLflow tracking server",
    ("POST", "/topics/{topic}/api/events"): _BY_INPUT_SCHEMA,
    ("POST", "/topics/{topic}:publish"): _BY_INPUT_SCHEMA,
    ("POST", "/systemTopics/{workspace}/api/events"): _BY_INPUT_SCHEMA,
    ("POST", "/systemTopics/{workspace}:publish"): _BY_INPUT_SCHEMA,
    **{("POST", f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}/replay"):
       "to must not be before from (a rule between two members)"
       for kind in ("topics", "systemTopics", "workspaces")},
    **{("POST", f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}/getFullUrl"):
       "a Queue subscription has no URL (400, as Azure answers for a destination without one)"
       for kind in ("topics", "systemTopics", "workspaces")},
    ("POST", "/workspaces/{workspace}/models/{name}/versions"): "runId must name a run of the workspace "
    "and artifactPath one of its artifacts",
    ("POST", "/workspaces/{workspace}/datasets/{name}/versions"): "the file must be a readable CSV or "
    "Parquet file, and timestampColumn one of its columns holding date-times",
    **{(method, route): _SUBSCRIPTION_VALUES
       for route in _SUBSCRIPTION_ROUTES for method in ("PUT", "PATCH")},
    **{("POST", f"/{kind}/{{parent}}/eventSubscriptions/{{subscription}}:test"): _FILTER_VALUES
       for kind in ("topics", "systemTopics", "workspaces")},
}
ACCEPTED = [200, 201, 202, 204, 400, 401, 403, 404, 409]
#: Operations left out of the coverage phase only (the examples, fuzzing and stateful phases
#: still run them), with the reason. The coverage phase enumerates every boundary and every
#: schema-violating case of a body, which for a subscription body is about a thousand requests;
#: these routes take the very body schema of a route that keeps its coverage phase and validate
#: it with the same code (broker/subscription_body.py), so enumerating it again costs a minute
#: and adds no case.
_SAME_PUT = ("the same body schema and validation as PUT /topics/{parent}/eventSubscriptions/{subscription}, "
             "which keeps its coverage phase")
_SAME_PATCH = _SAME_PUT.replace("PUT", "PATCH")
_SAME_ARM_PATCH = (f"the same body schema and validation as PATCH {_SUBSCRIPTION_ROUTES[4]}, which keeps "
                   "its coverage phase")
COVERED_BY_ANOTHER_ROUTE = {
    **{("PUT", route): _SAME_PUT for route in _SUBSCRIPTION_ROUTES[1:]},
    **{("PATCH", route): _SAME_PATCH for route in _SUBSCRIPTION_ROUTES[1:3]},
    **{("PATCH", route): _SAME_ARM_PATCH for route in _SUBSCRIPTION_ROUTES[3:]
       if route != _SUBSCRIPTION_ROUTES[4]},
}


def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code < 300, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else {}


def _create_resources(server: ServerProcess) -> dict[str, str]:
    """Real resources for every path parameter; returns the parameter values."""
    values = dict(RESOURCES)
    queue = {"properties": {"destination": {"endpointType": "Queue"}}}
    with server.client() as api:
        _ok(api.put(f"/topics/{values['topic']}", json={}))
        _ok(api.put(f"/workspaces/{values['workspace']}", json={}))
        _ok(api.put(f"/topics/{values['topic']}/eventSubscriptions/{values['subscription']}", json=queue))
        _ok(api.put(f"/workspaces/{values['workspace']}/eventSubscriptions/{values['subscription']}",
                    json=queue))
        _ok(api.put(f"/principals/{values['principal']}"))
        reader = {"role": "Reader"}
        _ok(api.put(f"/topics/{values['topic']}/roleAssignments/{values['principal']}", json=reader))
        _ok(api.put(f"/workspaces/{values['workspace']}/roleAssignments/{values['principal']}",
                    json=reader))
        experiment = f"/workspaces/{values['workspace']}/experiments/{values['experiment']}"
        run = _ok(api.post(f"{experiment}/runs", json={}))
        run_id = str(run["id"] if "id" in run else run["runId"])
        values["run_id"] = run_id
        _ok(api.post(f"/workspaces/{values['workspace']}/runs/{run_id}/metrics",
                     json={"metrics": [{"name": "loss", "value": 1}]}))
        _ok(api.put(f"/workspaces/{values['workspace']}/runs/{run_id}/artifacts/model.pkl", content=b"model",
                    headers={"content-type": "application/octet-stream"}))
        values["path"] = "model.pkl"
        _ok(api.post(f"/workspaces/{values['workspace']}/models/{NAME}/versions",
                     json={"runId": run_id, "artifactPath": "model.pkl"}))
        arm = _ok(api.get("/subscriptions"))
        values["subscriptionId"] = str(arm["value"][0]["subscriptionId"])  # type: ignore[index]
    values["resourceGroupName"] = "default"
    values["topicName"] = values["topic"]
    values["systemTopicName"] = values["workspace"]
    values["workspaceName"] = values["workspace"]
    values["eventSubscriptionName"] = values["subscription"]
    values["parent"] = values["topic"]
    values["tenant"] = "mlgrid"
    return values


#: Checks left out of the run, with the reason (schemathesis ignores these per operation).
EXCLUDED_CHECKS = {
    "unsupported_method": "``/topics/t:publish`` and every ``:action`` path are also routed by the item "
    "route (``/topics/{topic}`` answers GET/PUT/DELETE for a topic named ``t:publish`` with 404 or 400), "
    "so other methods there do not answer 405; tests/integration/test_methods.py checks 405 on every path "
    "against the real routing",
    "allow_header_conformance": "for the same reason ``Allow`` on an ``:action`` path lists the item "
    "route's methods too; tests/integration/test_methods.py checks Allow on every path",
    "missing_required_header": "only the MLflow webhook declares required headers, and it finds its "
    "connector before it reads them (404 first, like the key-authenticated routes); creating a connector "
    "needs a reachable MLflow server (tests/integration/test_mlflow_*.py run one)",
}


def _per_operation(
    values: dict[str, str], document: dict[str, Any]
) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Pinned parameters and settings (checks, phases) that differ from the defaults, by
    operation id."""
    settings: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            parameters: dict[str, str] = {}
            changed: dict[str, str] = {}
            # ``{parent}`` is the topic under /topics, the workspace under /systemTopics and /workspaces.
            if path.startswith(("/systemTopics/{parent}", "/workspaces/{parent}")):
                parameters["path.parent"] = values["workspace"]
            if (method.upper(), path) in REFUSED_FOR_A_REASON:
                changed["checks.positive_data_acceptance.expected-statuses"] = str(ACCEPTED)
            if (method.upper(), path) in COVERED_BY_ANOTHER_ROUTE:
                changed["phases.coverage.enabled"] = "false"
            if parameters or changed:
                settings[operation["operationId"]] = (parameters, changed)
    return settings


def _config(path: Path, server: ServerProcess, values: dict[str, str], document: dict[str, Any]) -> Path:
    lines = [
        f'base-url = "{server.url}"',
        # One worker: hypothesis describing strategies from two threads trips CPython 3.11's
        # AST recursion check ("AST constructor recursion depth mismatch").
        "workers = 1",
        "request-timeout = 30",
        f'headers = {{ Authorization = "Bearer {server.admin_token}" }}',
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        'database = "none"',
        # The coverage phase would also send every path the methods it does not route; the
        # checks of those answers are left out (EXCLUDED_CHECKS), so the requests are not sent.
        "[phases.coverage]",
        "unexpected-methods = []",
        "[checks]",
        "enabled = true",
        "[parameters]",
        *(f'"path.{name}" = "{value}"' for name, value in sorted(values.items())),
        '"query.maxWaitTime" = 0',
        # Paging tokens are opaque: only the ones the server issued are valid.
        '"query.skipToken" = ""',
        '"query.api-version" = "2022-06-15"',
    ]
    # schemathesis applies the first [[operations]] entry that matches an operation, so each
    # operation gets one entry with everything it needs.
    for operation_id, (parameters, changed) in sorted(_per_operation(values, document).items()):
        lines += ["[[operations]]", f'include-operation-id = "{operation_id}"']
        if parameters:
            pinned = ", ".join(f'"{key}" = "{value}"' for key, value in parameters.items())
            lines.append(f"parameters = {{ {pinned} }}")
        lines += [f"{key} = {setting}" for key, setting in changed.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Generated webhook URLs are not contacted during PUT (the handshake is tested elsewhere).
    data_dir = tmp_path_factory.mktemp("contract")
    server = ServerProcess(data_dir=data_dir, extra_args=["--no-webhook-validation"])
    server.start(timeout=120.0)  # a loaded 2-core machine can take more than the default 30 s
    try:
        yield server
    finally:
        server.stop()


def document_operations(document: dict[str, object]) -> list[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return [(method, path) for path, item in paths.items() for method in item
            if method in ("get", "put", "post", "patch", "delete")]


def test_schemathesis_finds_no_failure(contract_server: ServerProcess, tmp_path: Path) -> None:
    values = _create_resources(contract_server)
    document = httpx.get(f"{contract_server.url}/openapi.json", timeout=30.0).json()
    config = _config(tmp_path / "schemathesis.toml", contract_server, values, document)
    paths = document["paths"]
    excluded = [paths[path][method.lower()]["operationId"] for method, path in EXCLUDED_OPERATIONS]
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "--no-color",
        "run", f"{contract_server.url}/openapi.json", "--checks", "all", "--seed", "20261207",
        *(arg for operation_id in excluded for arg in ("--exclude-operation-id", operation_id)),
        "--exclude-checks", ",".join(EXCLUDED_CHECKS),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    output = result.stdout + result.stderr
    summary = output[output.find("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    operations = re.search(r"Tested: (\d+)", summary)
    cases = re.search(r"(\d+) generated", summary)
    print(f"\nschemathesis: {operations.group(1) if operations else '?'} operations, "
          f"{cases.group(1) if cases else '?'} test cases, exit {result.returncode}\n{summary}")
    (tmp_path / "schemathesis.txt").write_text(output)
    start, end = output.find("= FAILURES ="), output.find("= WARNINGS =")
    failures = output[start:end] if start >= 0 else ""
    assert result.returncode == 0, (failures or output)[:60000]
    assert operations is not None
    assert int(operations.group(1)) == len(document_operations(document)) - len(excluded)
