"""A small async client for the parts of MLflow's REST API the connector reads.

Only reads, only what reconciliation needs (``/api/2.0/mlflow/...``):

* ``experiments/search`` (every lifecycle stage, paged);
* ``runs/search`` by ``attributes.run_id IN (...)`` in chunks, and by a filter on start or
  end time (paged);
* ``model-versions/search`` (paged, newest first) and ``registered-models/search`` (paged,
  with aliases).

Every failure is one of three typed errors, so the poller can tell a fault of MLflow (retry
with backoff) from a fault of the configuration (show it, keep retrying more slowly):

* ``MlflowUnavailable`` — connection refused, timeout, 5xx, 429;
* ``MlflowRejected`` — 4xx: a wrong token (401/403), an unknown endpoint (404: not MLflow);
* ``MlflowBadResponse`` — a 2xx whose body is not the JSON shape MLflow documents.

Why not the ``mlflow`` package's client: it is synchronous, heavy to import, and not a runtime
dependency of mlgrid; the REST shapes used here are few and stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mlgrid.connectors.observation import AliasObservation, RunObservation, VersionObservation
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import MlgridError

API = "/api/2.0/mlflow"
RUN_ID_CHUNK = 100
"""Run ids per ``attributes.run_id IN (...)`` filter (MLflow parses the filter as one string;
100 uuids keep it under 4 KB)."""
RUNS_PAGE = 1000
VERSIONS_PAGE = 200
MODELS_PAGE = 1000
EXPERIMENTS_PAGE = 1000
MAX_PAGES = 10_000
"""A bound on any paging loop: an MLflow that keeps returning a page token is broken."""


@dataclass
class MlflowError(MlgridError):
    """Reading MLflow failed (the connector turns it into its ``Failing`` state)."""

    code: str = ErrorCode.MLFLOW_ERROR
    status: int = 502


@dataclass
class MlflowUnavailable(MlflowError):
    """MLflow did not answer, answered too slowly, or answered 5xx/429: retry with backoff."""

    code: str = ErrorCode.MLFLOW_UNAVAILABLE


@dataclass
class MlflowRejected(MlflowError):
    """MLflow refused the request (4xx): usually a wrong token or a URI that is not MLflow."""

    code: str = ErrorCode.MLFLOW_REJECTED
    http_status: int = 0


@dataclass
class MlflowBadResponse(MlflowError):
    """MLflow answered 2xx with a body that is not the documented JSON."""

    code: str = ErrorCode.MLFLOW_BAD_RESPONSE


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


def _pairs(items: object, what: str) -> dict[str, str]:
    """MLflow's ``[{"key": k, "value": v}, ...]`` lists as a dict of strings."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MlflowBadResponse(f"MLflow sent {what} that is not a list")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise MlflowBadResponse(f"MLflow sent an entry of {what} without a key")
        value = item.get("value")
        out[item["key"]] = "" if value is None else str(value)
    return out


def _text(mapping: Mapping[str, Any], key: str, what: str) -> str:
    value = mapping.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise MlflowBadResponse(f"MLflow sent {what} without {key!r}")
    return value


def _millis(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (int, str)) or isinstance(value, bool):
        raise MlflowBadResponse(f"MLflow sent a time that is not a number: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise MlflowBadResponse(f"MLflow sent a time that is not a number: {value!r}") from None


def parse_run(raw: object, experiment_names: Mapping[str, str]) -> RunObservation:
    if not isinstance(raw, dict) or not isinstance(raw.get("info"), dict):
        raise MlflowBadResponse("MLflow sent a run without 'info'")
    info = raw["info"]
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise MlflowBadResponse("MLflow sent a run whose 'data' is not an object")
    experiment_id = _text(info, "experiment_id", "a run")
    tags = _pairs(data.get("tags"), "run tags")
    return RunObservation(
        run_id=_text(info, "run_id", "a run"),
        experiment_id=experiment_id,
        experiment_name=experiment_names.get(experiment_id, ""),
        status=_text(info, "status", "a run"),
        tags=tags,
        params=_pairs(data.get("params"), "run params"),
        start_time_ms=_millis(info.get("start_time")),
        end_time_ms=_millis(info.get("end_time")),
    )


def parse_version(raw: object) -> VersionObservation:
    if not isinstance(raw, dict):
        raise MlflowBadResponse("MLflow sent a model version that is not an object")
    return VersionObservation(
        name=_text(raw, "name", "a model version"),
        version=_text(raw, "version", "a model version"),
        tags=_pairs(raw.get("tags"), "model version tags"),
        source=str(raw.get("source") or ""),
        run_id=str(raw.get("run_id") or ""),
        description=str(raw.get("description") or ""),
        creation_ms=_millis(raw.get("creation_timestamp")),
    )


def parse_aliases(raw: object) -> list[AliasObservation]:
    if not isinstance(raw, dict):
        raise MlflowBadResponse("MLflow sent a registered model that is not an object")
    name = _text(raw, "name", "a registered model")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list):
        raise MlflowBadResponse(f"MLflow sent aliases of model {name!r} that are not a list")
    out = []
    for item in aliases:
        if not isinstance(item, dict):
            raise MlflowBadResponse(f"MLflow sent an alias of model {name!r} that is not an object")
        alias = _text(item, "alias", "an alias")
        out.append(AliasObservation(name, alias, _text(item, "version", "an alias")))
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MlflowClient:
    """Reads one MLflow tracking server. ``requests`` counts HTTP requests (the poll-cost figure)."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=tracking_uri.rstrip("/") + API, headers=headers, timeout=timeout, transport=transport
        )
        self.requests = 0

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, json: Any = None, params: Any = None) -> dict[str, Any]:
        self.requests += 1
        try:
            reply = await self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise MlflowUnavailable(f"MLflow did not answer {path} in time") from exc
        except httpx.HTTPError as exc:
            raise MlflowUnavailable(f"MLflow is unreachable: {type(exc).__name__}: {exc}") from exc
        except (httpx.InvalidURL, UnicodeError) as exc:
            # A stored URL the HTTP client cannot send (the PUT checks refuse new ones).
            raise MlflowUnavailable(f"MLflow's URL cannot be used: {exc}") from exc
        if reply.status_code >= 500 or reply.status_code == 429:
            raise MlflowUnavailable(f"MLflow answered {path} with HTTP {reply.status_code}")
        if reply.status_code >= 400:
            raise MlflowRejected(
                f"MLflow refused {path} with HTTP {reply.status_code}: {reply.text[:200]}",
                http_status=reply.status_code,
            )
        try:
            body = reply.json()
        except ValueError as exc:
            raise MlflowBadResponse(f"MLflow answered {path} with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise MlflowBadResponse(f"MLflow answered {path} with JSON that is not an object")
        return body

    async def _paged(self, method: str, path: str, key: str, request: dict[str, Any]) -> list[Any]:
        items: list[Any] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            page_request = dict(request)
            if token:
                page_request["page_token"] = token
            if method == "GET":
                body = await self._call("GET", path, params=page_request)
            else:
                body = await self._call("POST", path, json=page_request)
            page = body.get(key) or []
            if not isinstance(page, list):
                raise MlflowBadResponse(f"MLflow answered {path} with {key!r} that is not a list")
            items.extend(page)
            next_token = body.get("next_page_token")
            if not next_token:
                return items
            if not isinstance(next_token, str):
                raise MlflowBadResponse(f"MLflow answered {path} with a page token that is not a string")
            token = next_token
        raise MlflowBadResponse(f"MLflow kept paging {path} past {MAX_PAGES} pages")

    async def experiments(self) -> list[Experiment]:
        request = {"max_results": EXPERIMENTS_PAGE, "view_type": "ALL"}
        raw = await self._paged("POST", "/experiments/search", "experiments", request)
        out = []
        for item in raw:
            if not isinstance(item, dict):
                raise MlflowBadResponse("MLflow sent an experiment that is not an object")
            out.append(Experiment(_text(item, "experiment_id", "an experiment"), str(item.get("name") or "")))
        return out

    async def search_runs(
        self, experiment_ids: Sequence[str], filter_string: str, names: Mapping[str, str]
    ) -> list[RunObservation]:
        if not experiment_ids:
            return []
        raw = await self._paged(
            "POST",
            "/runs/search",
            "runs",
            {
                "experiment_ids": list(experiment_ids),
                "filter": filter_string,
                "max_results": RUNS_PAGE,
                "run_view_type": "ALL",
            },
        )
        return [parse_run(item, names) for item in raw]

    async def runs_by_id(
        self, experiment_ids: Sequence[str], run_ids: Sequence[str], names: Mapping[str, str]
    ) -> list[RunObservation]:
        """The given runs, ``RUN_ID_CHUNK`` ids per request (runs of other experiments are not found)."""
        out: list[RunObservation] = []
        ids = list(run_ids)
        for start in range(0, len(ids), RUN_ID_CHUNK):
            chunk = ", ".join(_quote(i) for i in ids[start : start + RUN_ID_CHUNK])
            out.extend(await self.search_runs(experiment_ids, f"attributes.run_id IN ({chunk})", names))
        return out

    async def model_versions(self, *, newest: int | None = None) -> list[VersionObservation]:
        """Every model version, or (``newest``) only the first page of the newest ones."""
        request: dict[str, Any] = {
            "max_results": newest or VERSIONS_PAGE,
            "order_by": ["creation_timestamp DESC"],
        }
        if newest is not None:
            body = await self._call("GET", "/model-versions/search", params=request)
            raw = body.get("model_versions") or []
            if not isinstance(raw, list):
                raise MlflowBadResponse("MLflow answered model-versions/search with a non-list")
        else:
            raw = await self._paged("GET", "/model-versions/search", "model_versions", request)
        return [parse_version(item) for item in raw]

    async def model_version(self, name: str, version: str) -> VersionObservation:
        """One model version (``model-versions/get``); ``MlflowRejected`` when it is gone."""
        body = await self._call("GET", "/model-versions/get", params={"name": name, "version": version})
        return parse_version(body.get("model_version"))

    async def aliases(self) -> list[AliasObservation]:
        """Every alias of every registered model (a complete picture: absent means deleted)."""
        raw = await self._paged(
            "GET", "/registered-models/search", "registered_models", {"max_results": MODELS_PAGE}
        )
        out: list[AliasObservation] = []
        for item in raw:
            out.extend(parse_aliases(item))
        return out

    async def check(self) -> None:
        """One cheap request that proves the URI is an MLflow server and the token is accepted."""
        await self._call("POST", "/experiments/search", json={"max_results": 1})
