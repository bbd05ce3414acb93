"""The supervisor of scoring processes: what serves each endpoint on this node, and keeping it up.

Every scoring process this node runs is watched. One that exits on its own marks the endpoint
``Unhealthy`` (with the log), is restarted from the same directory (on the same port when it
is free) with growing pauses between attempts, and the endpoint returns to ``Healthy`` —
without a new event: the deployment did not change. Scoring requests that arrive meanwhile
wait (up to ``READY_WAIT_SECONDS``) for the restart. A replaced process is stopped once its
requests in flight are answered. The deployer (``endpoint_deployer.py``) hands a new healthy
process over with :meth:`ScoringSupervisor.switch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgrid.domain.endpoints import DeploymentState
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import NotFound, ServiceUnavailable
from mlgrid.etags import new_etag
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import endpoints as endpoint_store
from mlgrid.store.endpoints import EndpointRow
from mlgrid.store.faults import QuietFailures
from mlgrid.workspace import processes
from mlgrid.workspace.endpoint_files import DeploymentError, endpoint_dir, materialise, stored_script_path
from mlgrid.workspace.files import discard
from mlgrid.workspace.models import ModelService
from mlgrid.workspace.scoring.process import Launch, ScoringProcess, StartFailed, describe_exit
from mlgrid.workspace.scoring.proxy import NotConnected, ProxyAnswer, ScoringProxy, ScoringUnavailable
from mlgrid.workspace.service import WorkspaceService

log = logging.getLogger("mlgrid.workspace.endpoints")

RESTART_PAUSES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before each restart attempt of a crashed scoring process; the last one repeats."""
READY_WAIT_SECONDS = 15.0
DRAIN_SECONDS = 10.0
RECONCILE_SECONDS = 2.0
#: A scoring request forwarded by another node carries this header; the receiving node
#: answers it itself (or 503), never forwards it again.
FORWARDED_HEADER = "x-mlgrid-forwarded"

#: Checks in a write transaction that this node still holds the endpoint's lease.
Fence = Callable[[Any], Awaitable[None]]
#: The advertised URL of the node serving an endpoint, when that is another node.
OwnerLookup = Callable[[tuple[str, str]], Awaitable[str | None]]


def scoring_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}/score"


@dataclass(eq=False)
class Live:
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


class ScoringSupervisor:
    """The scoring processes of this node, by endpoint key ``(workspace key, name key)``."""

    def __init__(
        self,
        core: WorkspaceService,
        models: ModelService,
        containment: processes.Containment,
        *,
        node_id: str,
        single_node: bool,
        environ: Callable[[], Mapping[str, str]] = lambda: dict(os.environ),
        python: str = sys.executable,
    ) -> None:
        self.core = core
        self.models = models
        self.containment = containment
        self.node_id = node_id
        self.single_node = single_node
        self._environ = environ
        self._python = python
        self.proxy = ScoringProxy()
        self._live: dict[tuple[str, str], Live] = {}
        self._ready: dict[tuple[str, str], asyncio.Event] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._failures = QuietFailures(log, "endpoint supervisor", core.db.health)
        self._retiring: list[Live] = []
        self.stopping = False
        #: Several nodes: the lease check of each endpoint this node holds (its writes call it).
        self.fences: dict[tuple[str, str], Fence] = {}
        #: Several nodes: where the endpoints served by other nodes are (``endpoint_cluster``).
        self.owner: OwnerLookup | None = None

    def spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def read(self, key: tuple[str, str]) -> EndpointRow | None:
        async with self.core.db.read() as conn:
            return await endpoint_store.get(conn, key[0], key[1])

    def _ready_event(self, key: tuple[str, str]) -> asyncio.Event:
        event = self._ready.get(key)
        if event is None:
            event = self._ready[key] = asyncio.Event()
        return event

    def switch(self, key: tuple[str, str], live: Live) -> None:
        """Route scoring to ``live`` and retire whatever served before."""
        old = self._live.get(key)
        self._live[key] = live
        live.idle.set()
        live.watcher = self.spawn(self._watch(live), f"mlgrid-endpoint-watch-{key[1]}")
        self._ready_event(key).set()
        if old is not None and old is not live:
            self.spawn(
                self._retire(old, keep_files=old.launch.deployment_id == live.launch.deployment_id),
                f"mlgrid-endpoint-retire-{key[1]}",
            )

    async def _retire(self, live: Live, *, keep_files: bool = False) -> None:
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

    async def _watch(self, live: Live) -> None:
        """Supervise one serving process: after a crash, ``Unhealthy`` and restarts."""
        code = await live.process.wait()
        if live.retiring or self.stopping or self._live.get(live.key) is not live:
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
            await self._set_health(
                live.key, live.launch.deployment_id, DeploymentState.UNHEALTHY, error=report
            )
        await self.keep_alive(live.key, live.launch, live.process.port or 0)

    async def keep_alive(self, key: tuple[str, str], launch: Launch, port: int) -> None:
        """(Re)start the scoring process of the active deployment until it answers; no event."""
        attempt = 0
        while not self.stopping:
            await asyncio.sleep(RESTART_PAUSES[min(attempt, len(RESTART_PAUSES) - 1)])
            attempt += 1
            try:
                row = await self.read(key)
            except Exception as exc:
                self._failures.failed(exc, f"cannot read endpoint {key[1]}", "endpoint_restart_error")
                continue
            self._failures.succeeded()
            if row is None or row.active_deployment_id != launch.deployment_id:
                await self.forget(key, launch.deployment_id)
                return
            process: ScoringProcess | None = None
            try:
                if not (launch.directory / "models").is_dir():
                    directory = endpoint_dir(self.core, row.workspace_key, row.name) / launch.deployment_id
                    launch = await materialise(
                        self.models,
                        directory,
                        row,
                        launch.deployment_id,
                        list(launch.model_ids),
                        row.active_entry_script_json,
                    )
                process = await self.start_process(launch, port=port)
                await process.wait_ready(row.startup_timeout, self.proxy.session)
                committed = await self._set_health(
                    key, launch.deployment_id, DeploymentState.HEALTHY, process=process
                )
            except (StartFailed, DeploymentError) as exc:
                if process is not None:
                    await asyncio.shield(process.stop())
                report = exc.report() if isinstance(exc, StartFailed) else f"{exc}\n"
                with contextlib.suppress(Exception):
                    await self._set_health(key, launch.deployment_id, DeploymentState.UNHEALTHY, error=report)
                continue
            except BaseException:
                if process is not None:
                    await asyncio.shield(process.stop())
                raise
            if not committed:
                await process.stop()
                return
            self.switch(key, Live(key, launch, process))
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
            fence = self.fences.get(key)
            if fence is not None:
                await fence(tx.conn)
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.active_deployment_id != deployment_id:
                return False
            changes: dict[str, Any] = {}
            if state == DeploymentState.UNHEALTHY:
                if row.state in (DeploymentState.HEALTHY, DeploymentState.UNHEALTHY):
                    changes["state"] = DeploymentState.UNHEALTHY
                    changes["error"] = error
            elif row.state == DeploymentState.UNHEALTHY:
                changes["state"] = DeploymentState.HEALTHY
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

    async def mark_unhealthy(self, key: tuple[str, str], deployment_id: str, error: str) -> None:
        """``Unhealthy`` with ``error`` (a takeover in progress); no event."""
        await self._set_health(key, deployment_id, DeploymentState.UNHEALTHY, error=error)

    def has_live(self, key: tuple[str, str]) -> bool:
        """Whether this node runs (or restarts) a process for ``key``."""
        return key in self._live

    async def forget(self, key: tuple[str, str], deployment_id: str | None = None) -> None:
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
        self,
        workspace_key: str,
        name: str,
        body: bytes,
        content_type: str | None,
        query: str,
        forward: tuple[str, Mapping[str, str]] | None = None,
    ) -> ProxyAnswer:
        """Forward a scoring request to the endpoint's process: this node's, or (several
        nodes) the serving node's, at ``forward``'s path with its headers (None: the request
        was forwarded to us already, answer it here or not at all)."""
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
        row = await self.read(key)
        if row is None:
            raise NotFound(
                f"endpoint {name!r} does not exist in workspace {workspace_key!r}",
                code=ErrorCode.ENDPOINT_NOT_FOUND,
            )
        if self.owner is not None:
            url = await self.owner(key) if forward is not None else None
            if url is not None and forward is not None:
                path, headers = forward
                target = url + path + (f"?{query}" if query else "")
                try:
                    return await self.proxy.forward_to(target, body, content_type, headers)
                except NotConnected as exc:
                    raise ScoringUnavailable(
                        f"endpoint {name!r} is not answering on node {url}: {exc}"
                    ) from exc
        elif (
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

    def restore(self, row: EndpointRow, *, same_port: bool = True) -> asyncio.Task[Any]:
        """At start-up, or when this node takes an endpoint over: bring back the deployment
        that served ``row`` (no event); its files are materialised again when missing."""
        key = (row.workspace_key, row.name_key)
        assert row.active_deployment_id is not None
        self._ready_event(key).clear()
        directory = endpoint_dir(self.core, row.workspace_key, row.name) / row.active_deployment_id
        launch = Launch(
            deployment_id=row.active_deployment_id,
            directory=directory,
            model_ids=tuple(loads_exact(row.active_models_json or "[]")),
            entry_script=stored_script_path(directory, row),
            endpoint=row.name,
            workspace=row.workspace_key,
        )
        port = (row.scoring_port or 0) if same_port else 0
        return self.spawn(self.keep_alive(key, launch, port), f"mlgrid-restore-{row.name_key}")

    async def start_process(self, launch: Launch, *, port: int = 0) -> ScoringProcess:
        """Spawn a scoring process for ``launch`` and wait for nothing (see ``wait_ready``)."""
        return await ScoringProcess.start(
            launch, self._environ(), self.containment, port=port, python=self._python
        )

    def serving(self, workspace_key: str) -> set[tuple[str, str]]:
        """The endpoints of a workspace this node serves."""
        return {key for key in self._live if key[0] == workspace_key}

    async def run(self, deploying: Container[tuple[str, str]]) -> None:
        """Background task: stop local processes whose endpoint another node replaced or
        deleted (not those whose ``deploying`` deployment of ours is about to commit)."""
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            if not self._live:
                continue
            try:
                async with self.core.db.read() as conn:
                    active = await endpoint_store.active_ids(conn, list(self._live))
                for key, live in list(self._live.items()):
                    if key not in active or active[key] != live.launch.deployment_id:
                        if key in deploying:
                            continue  # a deployment of ours is about to commit
                        await self.forget(key, live.launch.deployment_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures.failed(exc, "endpoint reconciliation failed", "endpoint_reconcile_failed")
            else:
                self._failures.succeeded()

    async def shutdown(self) -> None:
        """Server shutdown: stop every task and scoring process of this node (the rows stay
        as they are, so the next start brings the endpoints back)."""
        self.stopping = True
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lives = [*self._live.values(), *self._retiring]
        self._live.clear()
        await asyncio.gather(*(live.process.stop(grace=2.0) for live in lives), return_exceptions=True)
        await self.proxy.close()
