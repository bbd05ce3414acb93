"""The deployer: a stored deployment request becomes a healthy scoring process, or ``Failed``.

For one deployment (one ``generation`` of an endpoint row, stored ``Deploying`` by
``EndpointService.deploy``), in the background:

1. the model files are copied into the deployment's own directory (``endpoint_files.py``);
2. a scoring process starts there on a free loopback port;
3. its health check is polled until ``startupTimeoutSeconds`` pass;
4. then ONE transaction sets ``Healthy``, the ``scoringUri``, a new ETag and emits
   ModelDeployed with the endpoint's next Sequencer, and the supervisor switches scoring to
   the new process. A process that exits, never answers or fails to load its model sets
   ``Failed`` with the scoring log in ``error`` and emits nothing; the previous deployment
   keeps serving. A newer request supersedes a deployment still in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Container

from mlgrid.domain.endpoints import DeploymentState
from mlgrid.etags import new_etag
from mlgrid.events import ml
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import endpoints as endpoint_store
from mlgrid.store.endpoints import EndpointRow
from mlgrid.workspace.endpoint_files import DeploymentError, endpoint_dir, materialise
from mlgrid.workspace.endpoint_supervisor import Fence, Live, ScoringSupervisor, scoring_uri
from mlgrid.workspace.files import discard
from mlgrid.workspace.models import ModelService
from mlgrid.workspace.scoring.process import Launch, ScoringProcess, StartFailed
from mlgrid.workspace.service import WorkspaceService

log = logging.getLogger("mlgrid.workspace.endpoints")

ENDPOINT_SEQUENCER = "endpoint"


class EndpointDeployer:
    """Runs deployments in the background, at most one per endpoint."""

    def __init__(
        self, core: WorkspaceService, models: ModelService, supervisor: ScoringSupervisor, *, node_id: str
    ) -> None:
        self.core = core
        self.models = models
        self.node_id = node_id
        self._supervisor = supervisor
        self._deploys: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: Several nodes: the lease check of each endpoint this node holds.
        self.fences: dict[tuple[str, str], Fence] = {}

    def start(self, row: EndpointRow) -> None:
        key = (row.workspace_key, row.name_key)
        previous = self._deploys.pop(key, None)
        if previous is not None:
            previous.cancel()  # superseded: its generation would not be committed anyway
        if self._supervisor.stopping:
            return
        task = self._supervisor.spawn(self._run(key, row.generation), f"mlgrid-deploy-{row.name_key}")
        self._deploys[key] = task
        task.add_done_callback(
            lambda done: self._deploys.pop(key, None) if self._deploys.get(key) is done else None
        )

    async def _run(self, key: tuple[str, str], generation: int) -> None:
        row = await self._supervisor.read(key)
        if row is None or row.generation != generation:
            return
        directory = endpoint_dir(self.core, row.workspace_key, row.name) / row.deployment_id
        process: ScoringProcess | None = None
        commit: asyncio.Task[bool] | None = None
        switched = False
        try:
            launch = await materialise(
                self.models,
                directory,
                row,
                row.deployment_id,
                list(loads_exact(row.models_json)),
                row.entry_script_json,
            )
            process = await self._supervisor.start_process(launch)
            await process.wait_ready(row.startup_timeout, self._supervisor.proxy.session)
            # Shielded: once the commit started, its outcome (not a cancellation that arrives
            # meanwhile) decides whether this process serves.
            commit = asyncio.create_task(self._commit(key, generation, launch, process))
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

    async def _commit(
        self, key: tuple[str, str], generation: int, launch: Launch, process: ScoringProcess
    ) -> bool:
        """Healthy, scoringUri and ModelDeployed in one transaction, then switch the proxy."""
        assert process.port is not None
        now = self.core.clock()
        async with self.core.transaction("endpoint.deployed") as tx:
            fence = self.fences.get(key)
            if fence is not None:
                await fence(tx.conn)
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.generation != generation:
                return False  # deleted or superseded while it started
            ws = await self.core.get_in(tx.conn, key[0])
            row = row.replace(
                state=DeploymentState.HEALTHY,
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
            sequencer = await tx.sequencer(ws, ENDPOINT_SEQUENCER, row.name_key)
            await tx.emit(
                ws,
                ml.model_deployed(
                    topic_id=ws.resource_id,
                    service_name=row.name,
                    compute_type=row.compute_type,
                    model_ids=list(loads_exact(row.models_json)),
                    service_tags=dict(loads_exact(row.tags_json)),
                    service_properties=dict(loads_exact(row.properties_json)),
                    etag=row.etag,
                    sequencer=sequencer,
                    event_time=now,
                ),
            )
        self._supervisor.switch(key, Live(key, launch, process))
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
            fence = self.fences.get(key)
            if fence is not None:
                await fence(tx.conn)
            row = await endpoint_store.get(tx.conn, key[0], key[1], for_update=True)
            if row is None or row.generation != generation:
                return
            row = row.replace(
                state=DeploymentState.FAILED, error=report, etag=new_etag(), updated_at=self.core.clock()
            )
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

    def in_progress(self) -> Container[tuple[str, str]]:
        """The endpoints whose deployment runs now (their commit may switch the process)."""
        return self._deploys

    def keys(self, workspace_key: str) -> set[tuple[str, str]]:
        """The endpoints of a workspace with a deployment running."""
        return {key for key in self._deploys if key[0] == workspace_key}

    async def cancel(self, key: tuple[str, str]) -> None:
        """Stop the deployment of ``key`` that runs now, if any, and wait for it to end."""
        task = self._deploys.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
