"""Model deployments: Local endpoints that emit ModelDeployed only once they really answer.

``PUT /workspaces/{ws}/endpoints/{name}`` stores the requested definition with
``state: Deploying`` (202) and deploys in the background:

1. the model files are copied into the deployment's own directory
   (``<ws>/endpoints/<name>/<deployment-id>/models/<name>/<version>/``), with the entry script;
2. a scoring process starts there (``scoring.process``) on a free loopback port;
3. its health check is polled until ``startupTimeoutSeconds`` (default 120 s) pass;
4. then ONE transaction sets ``Healthy``, the ``scoringUri``, a new ETag and emits
   ModelDeployed with the endpoint's next Sequencer. A process that exits, never answers or
   fails to load its model sets ``Failed`` with the scoring log in ``error`` and emits nothing.

Redeploying (another PUT) starts the new process next to the old one, switches the scoring
proxy to it when it is healthy (the commit above) and only then stops the old one, after its
requests in flight finished: scoring never pauses longer than the new process's start. A
failed redeploy records ``Failed`` and its log, and the previous deployment keeps serving
(``scoringUri``, ``activeModels``). A newer PUT supersedes a deployment still in progress.

Supervision: every scoring process this node runs is watched. One that exits on its own marks
the endpoint ``Unhealthy`` (with the log), is restarted from the same directory (on the same
port when it is free) with growing pauses between attempts, and the endpoint returns to
``Healthy`` — without a new event: the deployment did not change. Scoring requests that arrive
meanwhile wait (up to ``READY_WAIT_SECONDS``) for the restart.

Server lifetime: scoring processes die with the server (process group killed on shutdown; the
Linux parent-death signal and a watchdog in the process after a crash). A starting server
kills leftovers that ``/proc`` proves are ours, restarts the deployments that were serving
(no event), and finishes the ones that were still ``Deploying`` (event when healthy).

Several nodes on one PostgreSQL database: an endpoint's processes run on the node that
deployed it (``node``); another node proxies to the stored port, which works when the nodes
share a machine. A node notices within ``RECONCILE_SECONDS`` that another node replaced or
deleted an endpoint it serves and stops its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import NotFound, PreconditionFailed, ServiceUnavailable, invalid
from mlgrid.etags import new_etag
from mlgrid.events import ml
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.store import endpoints as endpoint_store
from mlgrid.store.endpoints import EndpointRow
from mlgrid.workspace import processes
from mlgrid.workspace.endpoint_spec import EndpointSpec, EntryScript, parse_endpoint_body, parse_entry_script
from mlgrid.workspace.files import discard
from mlgrid.workspace.jobs import _process_alive
from mlgrid.workspace.models import ModelService, ModelView
from mlgrid.workspace.scoring.process import (
    Launch,
    ScoringProcess,
    StartFailed,
    describe_exit,
    kill_orphan,
    read_log_tail,
)
from mlgrid.workspace.scoring.proxy import NotConnected, ProxyAnswer, ScoringProxy, ScoringUnavailable
from mlgrid.workspace.service import Workspace, WorkspaceService, check_if_match

log = logging.getLogger("mlgrid.workspace.endpoints")

DEPLOYING = "Deploying"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
FAILED = "Failed"
STATES = (DEPLOYING, HEALTHY, UNHEALTHY, FAILED)

ENDPOINT_SEQUENCER = "endpoint"
RESTART_PAUSES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before each restart attempt of a crashed scoring process; the last one repeats."""
READY_WAIT_SECONDS = 15.0
DRAIN_SECONDS = 10.0
RECONCILE_SECONDS = 2.0


class DeploymentError(Exception):
    """A deployment could not be prepared (its files); the text becomes ``error``."""


def scoring_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/score"


def _json_text(value: Any) -> str:
    return dumps(value).decode()


def _script_in_models(models_root: Path, versions: Iterable[tuple[str, str]], path: str) -> Path | None:
    """Where a model-relative entry script is in a deployment: the first deployed model
    version (``models_root/<name>/<version>/``) that holds ``path``."""
    for name, version in versions:
        candidate = models_root / name / version / path
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class EndpointView:
    """An endpoint with its JSON columns parsed."""

    row: EndpointRow
    models: list[str]
    entry_script: Any
    tags: dict[str, Any]
    properties: dict[str, Any]
    active_models: list[str] | None

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def state(self) -> str:
        return self.row.state

    @classmethod
    def of(cls, row: EndpointRow) -> EndpointView:
        return cls(
            row,
            list(loads_exact(row.models_json)),
            None if row.entry_script_json is None else loads_exact(row.entry_script_json),
            dict(loads_exact(row.tags_json)),
            dict(loads_exact(row.properties_json)),
            None if row.active_models_json is None else list(loads_exact(row.active_models_json)),
        )


@dataclass(eq=False)
class _Live:
    """A scoring process of this node that serves (or served, until it crashed) an endpoint."""

    key: tuple[str, str]
    launch: Launch
    process: ScoringProcess
    in_flight: int = 0
    retiring: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.idle.set()


class EndpointService:
    def __init__(
        self,
        core: WorkspaceService,
        models: ModelService,
        *,
        node_id: str,
        single_node: bool,
        containment: processes.Containment,
        environ: Callable[[], Mapping[str, str]] = lambda: dict(os.environ),
        python: str = sys.executable,
    ) -> None:
        self.core = core
        self.containment = containment
        self.models = models
        self.node_id = node_id
        self.single_node = single_node
        self._environ = environ
        self._python = python
        self.proxy = ScoringProxy()
        self._live: dict[tuple[str, str], _Live] = {}
        self._ready: dict[tuple[str, str], asyncio.Event] = {}
        self._deploys: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._retiring: list[_Live] = []
        self._stopping = False
        core.before_delete.append(self._delete_workspace_endpoints)

    # --- paths and small helpers -----------------------------------------------------------

    def endpoint_dir(self, workspace_key: str, name: str) -> Path:
        return self.core.files.workspace_dir(workspace_key) / "endpoints" / name.lower()

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _read(self, key: tuple[str, str]) -> EndpointRow | None:
        async with self.core.db.read() as conn:
            return await endpoint_store.get(conn, key[0], key[1])

    @staticmethod
    def _not_found(name: str, ws: Workspace) -> NotFound:
        return NotFound(
            f"endpoint {name!r} does not exist in workspace {ws.name!r}", code=ErrorCode.ENDPOINT_NOT_FOUND
        )

    # --- reading ---------------------------------------------------------------------------

    async def get(self, workspace_name: str, name: str) -> EndpointView:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await endpoint_store.get(conn, ws.key, name)
        if row is None:
            raise self._not_found(name, ws)
        return EndpointView.of(row)

    async def list_endpoints(self, workspace_name: str) -> list[EndpointView]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            rows = await endpoint_store.list_for_workspace(conn, ws.key)
        return [EndpointView.of(r) for r in rows]

    async def logs(self, workspace_name: str, name: str) -> str:
        """The scoring log of the deployment that serves (empty when none does)."""
        view = await self.get(workspace_name, name)
        row = view.row
        if row.active_deployment_id is None:
            return ""
        path = self.endpoint_dir(row.workspace_key, row.name) / row.active_deployment_id / "scoring.log"
        return await asyncio.to_thread(read_log_tail, path, 0, 256 * 1024)

    # --- deploying -------------------------------------------------------------------------

    async def _resolve_models(self, ws: Workspace, spec: EndpointSpec) -> list[ModelView]:
        """The registered versions ``properties.models`` names (400 naming the entry if one
        does not exist), in the order given."""
        found = []
        for index, ref in enumerate(spec.models):
            try:
                found.append(await self.models.get(ws.name, ref.name, ref.version))
            except NotFound as exc:
                raise invalid(
                    f"properties.models[{index}]",
                    f"model {ref.model_id!r} is not registered in workspace {ws.name!r}",
                ) from exc
        return found

    @staticmethod
    def _check_script_path(script: EntryScript, models: list[ModelView]) -> None:
        if script.path is None:
            return
        for model in models:
            if any(str(entry.get("path")) == script.path for entry in model.files):
                return
        listed = ", ".join(m.model_id for m in models) or "no models"
        raise invalid(
            "properties.entryScript",
            f"{script.path!r} is not a file of the deployed models ({listed}); register it with a model "
            'or send the script itself as {"fileName": ..., "source": ...}',
        )

    async def deploy(
        self, workspace_name: str, name: str, body: object, *, if_match: str | None = None
    ) -> EndpointView:
        """Store the requested deployment (``Deploying``) and start it in the background."""
        check_name(name, "endpointName")
        spec = parse_endpoint_body(body)
        self.containment.check_allowed("model deployments")  # loading a model runs its code
        ws = await self.core.get(workspace_name)
        models = await self._resolve_models(ws, spec)
        if spec.entry_script is not None:
            self._check_script_path(spec.entry_script, models)
        model_ids = [m.model_id for m in models]
        now = self.core.clock()
        async with self.core.transaction("endpoint.deploy") as tx:
            ws = await self.core.get_in(tx.conn, ws.name)
            existing = await endpoint_store.get(tx.conn, ws.key, name, for_update=True)
            definition: dict[str, Any] = {
                "compute_type": spec.compute_type,
                "models_json": _json_text(model_ids),
                "entry_script_json": None if spec.entry_script is None else _json_text(spec.entry_script.raw),
                "tags_json": _json_text(spec.tags),
                "properties_json": _json_text(spec.properties),
                "startup_timeout": spec.startup_timeout,
                "state": DEPLOYING,
                "deployment_id": uuid.uuid4().hex,
                "error": None,
                "etag": new_etag(),
                "updated_at": now,
            }
            if existing is None:
                if if_match is not None:
                    raise PreconditionFailed(f"endpoint {name!r} does not exist (If-Match was given)")
                row = EndpointRow(
                    workspace_key=ws.key,
                    name=name,
                    generation=1,
                    active_deployment_id=None,
                    active_models_json=None,
                    active_entry_script_json=None,
                    scoring_port=None,
                    scoring_uri=None,
                    pid=None,
                    node=self.node_id,
                    created_at=now,
                    deployed_at=None,
                    **definition,
                )
                await endpoint_store.insert(tx.conn, row)
            else:
                check_if_match(if_match, existing.etag, f"endpoint {existing.name!r}")
                row = existing.replace(generation=existing.generation + 1, **definition)
                await endpoint_store.update(tx.conn, row)
            committed = row
            tx.after_commit(lambda: self._start_deployment(committed))
        log.info(
            "deploying endpoint %s/%s (%s)",
            ws.name,
            row.name,
            ",".join(model_ids) or "entry script only",
            extra={"action": "endpoint_deploying", "endpoint": row.name, "deployment_id": row.deployment_id},
        )
        return EndpointView.of(row)

    def _start_deployment(self, row: EndpointRow) -> None:
        key = (row.workspace_key, row.name_key)
        previous = self._deploys.pop(key, None)
        if previous is not None:
            previous.cancel()  # superseded: its generation would not be committed anyway
        if self._stopping:
            return
        task = self._spawn(self._run_deployment(key, row.generation), f"mlgrid-deploy-{row.name_key}")
        self._deploys[key] = task
        task.add_done_callback(
            lambda done: self._deploys.pop(key, None) if self._deploys.get(key) is done else None
        )

    async def _materialise(
        self, row: EndpointRow, deployment_id: str, model_ids: list[str], script_json: str | None
    ) -> Launch:
        """Copy the models (and the entry script) into the deployment's own directory."""
        directory = self.endpoint_dir(row.workspace_key, row.name) / deployment_id
        views: list[ModelView] = []
        for model_id in model_ids:
            name, version = model_id.rsplit(":", 1)
            try:
                views.append(await self.models.get(row.workspace_key, name, version))
            except NotFound as exc:
                raise DeploymentError(f"model {model_id} is no longer registered") from exc
        script = None if script_json is None else parse_entry_script(loads_exact(script_json))
        sources = [(view, self.models.location(view)) for view in views]

        def copy() -> Path | None:
            models_root = directory / "models"
            models_root.mkdir(parents=True, exist_ok=True)
            for view, source in sources:
                target = models_root / view.name / str(view.version)
                if target.exists():
                    continue  # a restart reuses what an earlier start copied
                partial = models_root / view.name / f".{view.version}.partial"
                discard(partial)
                try:
                    if view.row.is_directory:
                        shutil.copytree(source, partial)
                    else:
                        partial.mkdir(parents=True)
                        shutil.copy2(source, partial / source.name)
                except FileNotFoundError as exc:
                    discard(partial)
                    raise DeploymentError(
                        f"the files of model {view.model_id} are not in this node's data directory: {exc}"
                    ) from exc
                os.replace(partial, target)
            if script is None:
                return None
            if script.source is not None:
                path = directory / script.file_name
                path.write_text(script.source, encoding="utf-8")
                return path
            assert script.path is not None
            versions = [(view.name, str(view.version)) for view, _ in sources]
            found = _script_in_models(models_root, versions, script.path)
            if found is not None:
                return found
            raise DeploymentError(f"the entry script {script.path!r} is not a file of the deployed models")

        entry = await asyncio.to_thread(copy)
        return Launch(
            deployment_id=deployment_id,
            directory=directory,
            model_ids=tuple(model_ids),
            entry_script=entry,
            endpoint=row.name,
            workspace=row.workspace_key,
        )

    async def _run_deployment(self, key: tuple[str, str], generation: int) -> None:
        row = await self._read(key)
        if row is None or row.generation != generation:
            return
        directory = self.endpoint_dir(row.workspace_key, row.name) / row.deployment_id
        process: ScoringProcess | None = None
        commit: asyncio.Task[bool] | None = None
        switched = False
        try:
            launch = await self._materialise(
                row, row.deployment_id, list(loads_exact(row.models_json)), row.entry_script_json
            )
            process = await ScoringProcess.start(
                launch, self._environ(), self.containment, python=self._python
            )
            await process.wait_ready(row.startup_timeout, self.proxy.session)
            # Shielded: once the commit started, its outcome (not a cancellation that arrives
            # meanwhile) decides whether this process serves.
            commit = asyncio.create_task(self._commit_deployed(key, generation, launch, process))
            switched = await asyncio.shield(commit)
        except StartFailed as exc:
            await self._record_failure(key, generation, exc.report())
        except DeploymentError as exc:
            await self._record_failure(key, generation, f"{exc}\n")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "deployment of %s failed",
                row.name,
                extra={"action": "endpoint_deploy_error", "endpoint": row.name},
            )
            with contextlib.suppress(Exception):
                await self._record_failure(
                    key, generation, f"the deployment failed: {type(exc).__name__}: {exc}\n"
                )
        finally:
            if commit is not None and not switched:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    switched = await asyncio.shield(commit)
            if not switched:
                if process is not None:
                    await asyncio.shield(process.stop())
                await asyncio.to_thread(discard, directory)

    async def _commit_deployed(
        self, key: tuple[str, str], generation: int, launch: Launch, process: ScoringProcess
    ) -> bool:
        """Healthy, scoringUri and ModelDeployed in one transaction, then switch the proxy."""
        assert process.port is not None
        now = self.core.clock()
        async with self.core.transaction("endpoint.deployed") as tx:
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.generation != generation:
                return False  # deleted or superseded while it started
            ws = await self.core.get_in(tx.conn, key[0])
            row = row.replace(
                state=HEALTHY,
                active_deployment_id=launch.deployment_id,
                active_models_json=row.models_json,
                active_entry_script_json=row.entry_script_json,
                scoring_port=process.port,
                scoring_uri=scoring_uri(process.port),
                pid=process.pid,
                node=self.node_id,
                error=None,
                etag=new_etag(),
                updated_at=now,
                deployed_at=now,
            )
            await endpoint_store.update(tx.conn, row)
            view = EndpointView.of(row)
            sequencer = await tx.sequencer(ws, ENDPOINT_SEQUENCER, row.name_key)
            await tx.emit(
                ws,
                ml.model_deployed(
                    topic_id=ws.resource_id,
                    service_name=row.name,
                    compute_type=row.compute_type,
                    model_ids=view.models,
                    service_tags=view.tags,
                    service_properties=view.properties,
                    etag=row.etag,
                    sequencer=sequencer,
                    event_time=now,
                ),
            )
        self._switch(key, _Live(key, launch, process))
        log.info(
            "endpoint %s is Healthy at %s",
            row.name,
            row.scoring_uri,
            extra={
                "action": "endpoint_deployed",
                "endpoint": row.name,
                "deployment_id": launch.deployment_id,
            },
        )
        return True

    async def _record_failure(self, key: tuple[str, str], generation: int, report: str) -> None:
        """``Failed`` with the log; no event. A previous deployment keeps serving."""
        async with self.core.transaction("endpoint.failed") as tx:
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.generation != generation:
                return
            row = row.replace(state=FAILED, error=report, etag=new_etag(), updated_at=self.core.clock())
            await endpoint_store.update(tx.conn, row)
        log.warning(
            "deployment of endpoint %s failed: %s",
            row.name,
            report.splitlines()[0] if report else "",
            extra={
                "action": "endpoint_deploy_failed",
                "endpoint": row.name,
                "deployment_id": row.deployment_id,
            },
        )

    # --- serving and supervision -----------------------------------------------------------

    def _ready_event(self, key: tuple[str, str]) -> asyncio.Event:
        event = self._ready.get(key)
        if event is None:
            event = self._ready[key] = asyncio.Event()
        return event

    def _switch(self, key: tuple[str, str], live: _Live) -> None:
        """Route scoring to ``live`` and retire whatever served before."""
        old = self._live.get(key)
        self._live[key] = live
        live.idle.set()
        live.watcher = self._spawn(self._watch(live), f"mlgrid-endpoint-watch-{key[1]}")
        self._ready_event(key).set()
        if old is not None and old is not live:
            self._spawn(
                self._retire(old, keep_files=old.launch.deployment_id == live.launch.deployment_id),
                f"mlgrid-endpoint-retire-{key[1]}",
            )

    async def _retire(self, live: _Live, *, keep_files: bool = False) -> None:
        """Stop a replaced process once its requests in flight are answered."""
        live.retiring = True  # its watcher sees this and does not restart it
        self._retiring.append(live)
        try:
            if live.in_flight > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(live.idle.wait(), DRAIN_SECONDS)
            await live.process.stop()
        finally:
            self._retiring.remove(live)
        if not keep_files:
            await asyncio.to_thread(discard, live.launch.directory)

    async def _watch(self, live: _Live) -> None:
        """Supervise one serving process: after a crash, ``Unhealthy`` and restarts."""
        code = await live.process.wait()
        if live.retiring or self._stopping or self._live.get(live.key) is not live:
            return
        self._ready_event(live.key).clear()
        report = (
            f"{describe_exit(code)} while serving; restarting it\n--- scoring log ---\n"
            f"{(await live.process.log()).rstrip()}\n"
        )
        await live.process.stop()  # what it left running dies; its private copy goes
        log.warning(
            "scoring process of endpoint %s exited (%s); restarting",
            live.launch.endpoint,
            describe_exit(code),
            extra={"action": "endpoint_process_crashed", "endpoint": live.launch.endpoint, "code": code},
        )
        with contextlib.suppress(Exception):
            await self._set_health(live.key, live.launch.deployment_id, UNHEALTHY, error=report)
        await self._keep_alive(live.key, live.launch, live.process.port or 0)

    async def _keep_alive(self, key: tuple[str, str], launch: Launch, port: int) -> None:
        """(Re)start the scoring process of the active deployment until it answers; no event."""
        attempt = 0
        while not self._stopping:
            await asyncio.sleep(RESTART_PAUSES[min(attempt, len(RESTART_PAUSES) - 1)])
            attempt += 1
            try:
                row = await self._read(key)
            except Exception:
                log.exception("cannot read endpoint %s", key[1], extra={"action": "endpoint_restart_error"})
                continue
            if row is None or row.active_deployment_id != launch.deployment_id:
                await self._forget(key, launch.deployment_id)
                return
            process: ScoringProcess | None = None
            try:
                if not (launch.directory / "models").is_dir():
                    launch = await self._materialise(
                        row, launch.deployment_id, list(launch.model_ids), row.active_entry_script_json
                    )
                process = await ScoringProcess.start(
                    launch, self._environ(), self.containment, port=port, python=self._python
                )
                await process.wait_ready(row.startup_timeout, self.proxy.session)
                committed = await self._set_health(key, launch.deployment_id, HEALTHY, process=process)
            except (StartFailed, DeploymentError) as exc:
                if process is not None:
                    await asyncio.shield(process.stop())
                report = exc.report() if isinstance(exc, StartFailed) else f"{exc}\n"
                with contextlib.suppress(Exception):
                    await self._set_health(key, launch.deployment_id, UNHEALTHY, error=report)
                continue
            except BaseException:
                if process is not None:
                    await asyncio.shield(process.stop())
                raise
            if not committed:
                await process.stop()
                return
            self._switch(key, _Live(key, launch, process))
            log.info(
                "endpoint %s serves again at port %s",
                launch.endpoint,
                process.port,
                extra={"action": "endpoint_restarted", "endpoint": launch.endpoint, "attempts": attempt},
            )
            return

    async def _set_health(
        self,
        key: tuple[str, str],
        deployment_id: str,
        state: str,
        *,
        error: str | None = None,
        process: ScoringProcess | None = None,
    ) -> bool:
        """Record a supervision change of the active deployment (never an event): ``Healthy``
        ↔ ``Unhealthy`` (other states are left as they are), the new pid and port."""
        async with self.core.transaction("endpoint.health") as tx:
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.active_deployment_id != deployment_id:
                return False
            changes: dict[str, Any] = {}
            if state == UNHEALTHY:
                if row.state in (HEALTHY, UNHEALTHY):
                    changes["state"] = UNHEALTHY
                    changes["error"] = error
            elif row.state == UNHEALTHY:
                changes["state"] = HEALTHY
                changes["error"] = None
            if process is not None and process.port is not None:
                changes.update(
                    pid=process.pid,
                    scoring_port=process.port,
                    scoring_uri=scoring_uri(process.port),
                    node=self.node_id,
                )
            if changes:
                row = row.replace(etag=new_etag(), updated_at=self.core.clock(), **changes)
                await endpoint_store.update(tx.conn, row)
        return True

    async def _forget(self, key: tuple[str, str], deployment_id: str | None = None) -> None:
        """Stop serving ``key`` on this node (deleted, or replaced through another node)."""
        live = self._live.get(key)
        if live is None or (deployment_id is not None and live.launch.deployment_id != deployment_id):
            return
        del self._live[key]
        self._ready.pop(key, None)
        await self._retire(live)

    def serves(self, workspace_name: str, name: str) -> bool:
        """Whether a scoring process of this node serves the endpoint (so its workspace exists:
        deleting a workspace stops its processes first). Lets the scoring route skip the
        workspace look-up on its hot path."""
        return (workspace_name.lower(), name.lower()) in self._live

    async def score(
        self, workspace_key: str, name: str, body: bytes, content_type: str | None, query: str
    ) -> ProxyAnswer:
        """Forward a scoring request to the endpoint's process."""
        key = (workspace_key.lower(), name.lower())
        for attempt in range(2):
            live = self._live.get(key)
            if live is None or live.process.exited:
                ready = self._ready.get(key)
                if ready is not None and not ready.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(ready.wait(), READY_WAIT_SECONDS)
                live = self._live.get(key)
            if live is None or live.process.exited or live.process.port is None:
                break
            live.enter()
            try:
                return await self.proxy.forward(live.process.port, body, content_type, query)
            except NotConnected as exc:
                if attempt == 0:
                    # Never delivered: the process died; the supervisor restarts it.
                    await asyncio.sleep(0.05)
                    continue
                raise ScoringUnavailable(f"the scoring process of endpoint {name!r} is down: {exc}") from exc
            finally:
                live.leave()
        row = await self._read(key)
        if row is None:
            raise NotFound(
                f"endpoint {name!r} does not exist in workspace {workspace_key!r}",
                code=ErrorCode.ENDPOINT_NOT_FOUND,
            )
        if (
            not self.single_node
            and row.node != self.node_id
            and row.active_deployment_id is not None
            and row.scoring_port is not None
        ):
            try:
                return await self.proxy.forward(row.scoring_port, body, content_type, query)
            except NotConnected as exc:
                raise ScoringUnavailable(f"endpoint {name!r} is not answering on node {row.node}") from exc
        raise ServiceUnavailable(
            f"endpoint {row.name!r} is {row.state} and no deployment serves it"
            + (f": {row.error.splitlines()[0]}" if row.error else ""),
            code=ErrorCode.ENDPOINT_NOT_READY,
        )

    # --- deleting --------------------------------------------------------------------------

    async def delete(self, workspace_name: str, name: str, *, if_match: str | None = None) -> None:
        """Delete the endpoint, stop its processes and remove its files."""
        async with self.core.transaction("endpoint.delete") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            row = await endpoint_store.get(tx.conn, ws.key, name, for_update=True)
            if row is None:
                raise self._not_found(name, ws)
            check_if_match(if_match, row.etag, f"endpoint {row.name!r}")
            await endpoint_store.delete_endpoint(tx.conn, ws.key, name)
        await self._stop_local((row.workspace_key, row.name_key))
        await asyncio.to_thread(discard, self.endpoint_dir(row.workspace_key, row.name))
        log.info("endpoint %s deleted", row.name, extra={"action": "endpoint_deleted", "endpoint": row.name})

    async def _stop_local(self, key: tuple[str, str]) -> None:
        task = self._deploys.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._forget(key)

    async def _delete_workspace_endpoints(self, workspace_key: str) -> None:
        """Before a workspace is deleted: stop its scoring processes and drop its endpoints."""
        keys = {k for k in (*self._live, *self._deploys) if k[0] == workspace_key}
        await asyncio.gather(*(self._stop_local(k) for k in keys), return_exceptions=True)
        async with self.core.db.write() as conn:
            await endpoint_store.delete_for_workspace(conn, workspace_key)

    # --- start-up, reconciliation, shutdown ------------------------------------------------

    def _owns(self, row: EndpointRow) -> bool:
        """Whether this node should run the endpoint's processes after a restart."""
        if self.single_node or row.node is None or row.node == self.node_id:
            return True
        host, _, pid = row.node.rpartition(":")
        return host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid))

    async def start(self) -> None:
        """At start-up: kill leftovers, bring serving deployments back, finish pending ones."""
        async with self.core.db.read() as conn:
            rows = await endpoint_store.list_all(conn)
        for row in rows:
            key = (row.workspace_key, row.name_key)
            if await self.core.find(row.workspace_key) is None:
                async with self.core.db.write() as conn:  # left by a workspace deleted meanwhile
                    await endpoint_store.delete_endpoint(conn, row.workspace_key, row.name)
                continue
            if not self._owns(row):
                continue
            if await asyncio.to_thread(kill_orphan, row.pid, row.active_deployment_id):
                log.warning(
                    "killed the leftover scoring process %s of endpoint %s",
                    row.pid,
                    row.name,
                    extra={"action": "endpoint_orphan_killed", "endpoint": row.name, "pid": row.pid},
                )
            if row.active_deployment_id is not None:
                self._ready_event(key).clear()
                launch = Launch(
                    deployment_id=row.active_deployment_id,
                    directory=self.endpoint_dir(row.workspace_key, row.name) / row.active_deployment_id,
                    model_ids=tuple(loads_exact(row.active_models_json or "[]")),
                    entry_script=self._stored_script_path(row),
                    endpoint=row.name,
                    workspace=row.workspace_key,
                )
                self._spawn(
                    self._keep_alive(key, launch, row.scoring_port or 0), f"mlgrid-restore-{row.name_key}"
                )
            if row.state == DEPLOYING:
                self._start_deployment(row)

    def _stored_script_path(self, row: EndpointRow) -> Path | None:
        """Where the active deployment's entry script was put by ``_materialise``."""
        if row.active_entry_script_json is None or row.active_deployment_id is None:
            return None
        script = parse_entry_script(loads_exact(row.active_entry_script_json))
        if script is None:
            return None
        directory = self.endpoint_dir(row.workspace_key, row.name) / row.active_deployment_id
        if script.source is not None:
            return directory / script.file_name
        assert script.path is not None
        versions: list[tuple[str, str]] = []
        for model_id in loads_exact(row.active_models_json or "[]"):
            name, version = str(model_id).rsplit(":", 1)
            versions.append((name, version))
        found = _script_in_models(directory / "models", versions, script.path)
        return found or directory / "models" / script.path  # missing: the start fails and says so

    async def run(self) -> None:
        """Background task: stop local processes whose endpoint another node replaced or deleted."""
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            if not self._live:
                continue
            try:
                async with self.core.db.read() as conn:
                    active = await endpoint_store.active_ids(conn, list(self._live))
                for key, live in list(self._live.items()):
                    if key not in active or active[key] != live.launch.deployment_id:
                        if key in self._deploys:
                            continue  # a deployment of ours is about to commit
                        await self._forget(key, live.launch.deployment_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("endpoint reconciliation failed", extra={"action": "endpoint_reconcile_failed"})

    async def shutdown(self) -> None:
        """Server shutdown: stop every scoring process of this node (the rows stay as they are,
        so the next start brings the endpoints back)."""
        self._stopping = True
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lives = [*self._live.values(), *self._retiring]
        self._live.clear()
        await asyncio.gather(*(live.process.stop(grace=2.0) for live in lives), return_exceptions=True)
        await self.proxy.close()
