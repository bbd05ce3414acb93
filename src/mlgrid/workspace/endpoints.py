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

The work is split three ways: this module is the resource (reading, the deploy request,
deleting, start-up and ownership); ``endpoint_deployer.py`` runs a deployment;
``endpoint_supervisor.py`` keeps the serving processes up and proxies scoring to them;
``endpoint_files.py`` puts a deployment's files in place.

Supervision: every scoring process this node runs is watched. One that exits on its own marks
the endpoint ``Unhealthy`` (with the log), is restarted from the same directory (on the same
port when it is free) with growing pauses between attempts, and the endpoint returns to
``Healthy`` — without a new event: the deployment did not change. Scoring requests that arrive
meanwhile wait (up to ``READY_WAIT_SECONDS``) for the restart.

Server lifetime: scoring processes die with the server (process group killed on shutdown; the
Linux parent-death signal and a watchdog in the process after a crash). A starting server
kills leftovers that ``/proc`` proves are ours, restarts the deployments that were serving
(no event), and finishes the ones that were still ``Deploying`` (event when healthy).

Several nodes on one PostgreSQL database: an endpoint's processes run on the node holding its
lease, the others forward scoring requests to that node's advertised URL, and another node
takes the endpoint over when the holder dies (``endpoint_cluster.py``). A node notices within
``RECONCILE_SECONDS`` that another node replaced or deleted an endpoint it serves and stops
its process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgrid.broker.names import check_name
from mlgrid.cluster.node import Node
from mlgrid.domain.endpoints import DeploymentState
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import NotFound, PreconditionFailed, invalid
from mlgrid.etags import new_etag
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.store import endpoints as endpoint_store
from mlgrid.store import leases as lease_store
from mlgrid.store.endpoints import EndpointRow
from mlgrid.workspace import processes
from mlgrid.workspace.endpoint_cluster import EndpointOwnership, lease_name
from mlgrid.workspace.endpoint_deployer import EndpointDeployer
from mlgrid.workspace.endpoint_files import endpoint_dir
from mlgrid.workspace.endpoint_spec import EndpointSpec, EntryScript, parse_endpoint_body
from mlgrid.workspace.endpoint_supervisor import ScoringSupervisor
from mlgrid.workspace.files import discard
from mlgrid.workspace.jobs import _process_alive
from mlgrid.workspace.models import ModelService, ModelView
from mlgrid.workspace.scoring.process import kill_orphan, read_log_tail
from mlgrid.workspace.scoring.proxy import ProxyAnswer
from mlgrid.workspace.service import Workspace, WorkspaceService, check_if_match

log = logging.getLogger("mlgrid.workspace.endpoints")

def _json_text(value: Any) -> str:
    return dumps(value).decode()


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


class EndpointService:
    def __init__(
        self,
        core: WorkspaceService,
        models: ModelService,
        *,
        node_id: str,
        single_node: bool,
        containment: processes.Containment,
        supervisor: ScoringSupervisor | None = None,
        node: Node | None = None,
    ) -> None:
        """``supervisor`` (its environment and Python for the scoring processes) defaults to
        one with this process's; every scoring process runs under ``containment``."""
        self.core = core
        self.containment = containment
        self.models = models
        self.node_id = node_id
        self.single_node = single_node
        self.supervisor = supervisor or ScoringSupervisor(
            core, models, containment, node_id=node_id, single_node=single_node
        )
        self.deployer = EndpointDeployer(core, models, self.supervisor, node_id=node_id)
        self.proxy = self.supervisor.proxy
        core.before_delete.append(self._delete_workspace_endpoints)
        #: Several nodes (PostgreSQL): who serves which endpoint, by lease.
        self.cluster: EndpointOwnership | None = None
        if node is not None and node.shared:
            self.cluster = EndpointOwnership(node, self.supervisor, self.deployer)
            self.supervisor.owner = self._owner_elsewhere

    # --- paths and small helpers -----------------------------------------------------------

    def endpoint_dir(self, workspace_key: str, name: str) -> Path:
        return endpoint_dir(self.core, workspace_key, name)

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
        token: int | None = None
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
                "state": DeploymentState.DEPLOYING,
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
            if self.cluster is not None:
                # This node runs the deployment and serves it: it takes the endpoint's lease
                # (the previous holder serves the old deployment until the new one commits).
                token = await lease_store.hand_over(
                    tx.conn, lease_name((ws.key, row.name_key)), self.cluster.node.id, now.timestamp()
                )
            tx.after_commit(lambda: self.deployer.start(committed))
        if self.cluster is not None and token is not None:
            await self.cluster.deployed((ws.key, row.name_key), token)
        log.info(
            "deploying endpoint %s/%s (%s)",
            ws.name,
            row.name,
            ",".join(model_ids) or "entry script only",
            extra={"action": "endpoint_deploying", "endpoint": row.name, "deployment_id": row.deployment_id},
        )
        return EndpointView.of(row)

    # --- serving ---------------------------------------------------------------------------

    def serves(self, workspace_name: str, name: str) -> bool:
        """Whether a scoring process of this node serves the endpoint (see the supervisor)."""
        return self.supervisor.serves(workspace_name, name)

    async def score(
        self,
        workspace_key: str,
        name: str,
        body: bytes,
        content_type: str | None,
        query: str,
        forward: tuple[str, Mapping[str, str]] | None = None,
    ) -> ProxyAnswer:
        """Forward a scoring request to the endpoint's process (on another node: ``forward``
        is the request's path and the headers to pass on; None when it was forwarded here)."""
        return await self.supervisor.score(workspace_key, name, body, content_type, query, forward)

    async def _owner_elsewhere(self, key: tuple[str, str]) -> str | None:
        """The advertised URL of the node holding the endpoint's lease, if not this one."""
        assert self.cluster is not None
        async with self.core.db.read() as conn:
            holder = await lease_store.holder_of(conn, lease_name(key))
        if holder is None or holder.node_id == self.cluster.node.id:
            return None
        return holder.advertise_url

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
        if self.cluster is not None:
            await self.cluster.deleted((row.workspace_key, row.name_key))
        await asyncio.to_thread(discard, self.endpoint_dir(row.workspace_key, row.name))
        log.info("endpoint %s deleted", row.name, extra={"action": "endpoint_deleted", "endpoint": row.name})

    async def _stop_local(self, key: tuple[str, str]) -> None:
        await self.deployer.cancel(key)
        await self.supervisor.forget(key)

    async def _delete_workspace_endpoints(self, workspace_key: str) -> None:
        """Before a workspace is deleted: stop its scoring processes and drop its endpoints."""
        keys = self.supervisor.serving(workspace_key) | self.deployer.keys(workspace_key)
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
        """At start-up: kill leftovers, bring serving deployments back, finish pending ones.
        Several nodes: register a duty per endpoint instead; the holder of each serves it."""
        if self.cluster is not None:
            await self.cluster.start()
            return
        async with self.core.db.read() as conn:
            rows = await endpoint_store.list_all(conn)
        for row in rows:
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
                self.supervisor.restore(row)
            if row.state == DeploymentState.DEPLOYING:
                self.deployer.start(row)

    async def run(self) -> None:
        """Background task: stop local processes whose endpoint another node replaced or
        deleted (and, several nodes, keep a duty per endpoint)."""
        if self.cluster is not None:
            await asyncio.gather(self.supervisor.run(self.deployer.in_progress()), self.cluster.run())
        else:
            await self.supervisor.run(self.deployer.in_progress())

    def rejoined(self, node_id: str) -> None:
        """This node rejoined under a new id (it was declared dead): rows it writes say so."""
        self.node_id = self.supervisor.node_id = self.deployer.node_id = node_id

    async def shutdown(self) -> None:
        """Server shutdown: stop every scoring process of this node (the rows stay as they are,
        so the next start brings the endpoints back)."""
        await self.supervisor.shutdown()
