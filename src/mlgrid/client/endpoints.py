"""Model deployments in the Python SDK: ``ws.deploy(...)`` and the ``Endpoint`` handle.

::

    endpoint = ws.deploy("churn-api", models=["churn:3"])       # waits until Healthy
    endpoint.score([[0.1, 2.0, 3.5]])                            # {"predictions": [...]}
    endpoint.scoring_uri                                         # the process's own URL
    ws.deploy("churn-api", models=["churn:4"])                   # redeploy: new ModelDeployed
    endpoint.delete()

``deploy(..., wait=True)`` polls until the deployment it started is ``Healthy`` (returns the
endpoint) or ``Failed`` (raises :class:`DeploymentFailed` carrying the scoring log); a
deployment superseded by a newer one counts as done.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlgrid.client.http import Transport, if_match_header
from mlgrid.domain.endpoints import DeploymentState
from mlgrid.events.jsoncodec import dumps

__all__ = ["DeploymentFailed", "Endpoint", "deploy_endpoint", "list_endpoints"]



class DeploymentFailed(Exception):
    """A deployment ended ``Failed``; ``error`` holds the reason and the scoring log."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.error = endpoint.error or ""
        super().__init__(f"deployment of endpoint {endpoint.name!r} failed: {self.error}")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _endpoint_path(workspace_path: str, name: str) -> str:
    return f"{workspace_path}/endpoints/{_segment(name)}"


def _model_id(model: Any) -> str:
    """``"name:version"`` from a string or a ``ModelVersion`` (its ``id``)."""
    return model if isinstance(model, str) else str(model.id)


def entry_script_json(entry_script: str | Path | None) -> Any:
    """A local file is sent as ``{"fileName", "source"}``; another string as it is (a path
    inside a deployed model, or the script's source)."""
    if entry_script is None:
        return None
    if isinstance(entry_script, Path) or ("\n" not in entry_script and Path(entry_script).is_file()):
        path = Path(entry_script)
        return {"fileName": path.name, "source": path.read_text(encoding="utf-8")}
    return entry_script


class Endpoint:
    """A handle on one endpoint; ``raw`` is the server's JSON as last read."""

    def __init__(self, http: Transport, workspace_path: str, body: Mapping[str, Any]) -> None:
        self.http = http
        self.workspace_path = workspace_path
        self.raw: dict[str, Any] = dict(body)

    # --- what the server said --------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def _props(self) -> dict[str, Any]:
        return dict(self.raw.get("properties") or {})

    @property
    def state(self) -> str:
        """``Deploying``, ``Healthy``, ``Unhealthy`` or ``Failed``."""
        return str(self._props.get("state"))

    @property
    def scoring_uri(self) -> str | None:
        return self._props.get("scoringUri")

    @property
    def error(self) -> str | None:
        return self._props.get("error")

    @property
    def models(self) -> list[str]:
        """The requested model ids; ``active_models`` are the ones that serve now."""
        return list(self._props.get("models") or [])

    @property
    def active_models(self) -> list[str] | None:
        active = self._props.get("activeModels")
        return None if active is None else list(active)

    @property
    def compute_type(self) -> str:
        return str(self._props.get("computeType"))

    @property
    def tags(self) -> dict[str, Any]:
        return dict(self._props.get("tags") or {})

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self._props.get("properties") or {})

    @property
    def etag(self) -> str:
        return str(self.raw.get("etag", ""))

    @property
    def pid(self) -> int | None:
        pid = self._props.get("pid")
        return None if pid is None else int(pid)

    @property
    def deployment_id(self) -> str:
        return str(self._props.get("deploymentId"))

    @property
    def path(self) -> str:
        return _endpoint_path(self.workspace_path, self.name)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, state={self.state!r})"

    # --- calls -----------------------------------------------------------------------------

    def refresh(self) -> Endpoint:
        self.raw = dict(self.http.call("GET", self.path))
        return self

    def wait(self, timeout: float = 120.0, poll_interval: float = 0.2) -> Endpoint:
        """Poll until this deployment is done: return when ``Healthy`` (or superseded by a
        newer deployment), raise :class:`DeploymentFailed` when ``Failed``, ``TimeoutError``
        after ``timeout`` seconds."""
        started = self.deployment_id
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            if self.deployment_id != started:
                return self
            if self.state == DeploymentState.FAILED:
                raise DeploymentFailed(self)
            if self.state != DeploymentState.DEPLOYING:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {self.name!r} is still {self.state} after {timeout:g} s")
            time.sleep(poll_interval)

    def score(self, data: Any, *, timeout: float = 120.0) -> Any:
        """Score through the server: ``data`` is sent as JSON (a list of rows, ``{"data":
        rows}``, a numpy array...) or as is when it is ``bytes``/``str``; returns the decoded
        answer (``{"predictions": [...]}`` for a model without an entry script)."""
        if isinstance(data, bytes):
            content = data
        elif isinstance(data, str):
            content = data.encode()
        else:
            to_list = getattr(data, "tolist", None)
            content = dumps(to_list() if callable(to_list) else data)
        response = self.http.request(
            "POST",
            f"{self.path}/score",
            content=content,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        return response.json() if response.content else None

    def logs(self) -> str:
        """The scoring log of the deployment that serves."""
        return self.http.request("GET", f"{self.path}/logs").text

    def delete(self) -> None:
        """Delete the endpoint; its scoring process stops."""
        self.http.request("DELETE", self.path)


def deploy_endpoint(
    http: Transport,
    workspace_path: str,
    name: str,
    models: Sequence[Any] = (),
    compute_type: str = "Local",
    entry_script: str | Path | None = None,
    tags: Mapping[str, Any] | None = None,
    properties: Mapping[str, str] | None = None,
    *,
    wait: bool = True,
    timeout: float = 120.0,
    startup_timeout: float | None = None,
    if_match: str | None = None,
) -> Endpoint:
    props: dict[str, Any] = {
        "computeType": compute_type,
        "models": [_model_id(m) for m in models],
        "entryScript": entry_script_json(entry_script),
        "tags": dict(tags or {}),
        "properties": dict(properties or {}),
    }
    if startup_timeout is not None:
        props["startupTimeoutSeconds"] = startup_timeout
    path = _endpoint_path(workspace_path, name)
    body = http.call("PUT", path, {"properties": props}, headers=if_match_header(if_match))
    endpoint = Endpoint(http, workspace_path, body)
    return endpoint.wait(timeout) if wait else endpoint


def get_endpoint(http: Transport, workspace_path: str, name: str) -> Endpoint:
    return Endpoint(http, workspace_path, http.call("GET", _endpoint_path(workspace_path, name)))


def list_endpoints(http: Transport, workspace_path: str) -> list[Endpoint]:
    body = http.call("GET", f"{workspace_path}/endpoints")
    return [Endpoint(http, workspace_path, item) for item in body.get("value", [])]
