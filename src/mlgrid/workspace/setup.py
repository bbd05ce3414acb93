"""Start-up of the ML workspace: services, orphaned jobs, the job supervisor.

``server.py`` awaits ``setup`` after the subscription and delivery layers, so events emitted
while failing orphaned jobs are routed to the subscriptions that exist. It sets
``rt.workspace`` (``WorkspaceServices``): ``core`` — ``WorkspaceService``: workspace look-up,
RBAC scope, transactions with ``emit`` and Sequencers (what deployments and drift monitors build
on) — and ``runs``, ``jobs``, ``models``, ``datasets``, and ``containment``: how user code
runs (``workspace.processes``, decided once here and announced in the log).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys

from fastapi import FastAPI

from mlgrid.cluster.node import Lease
from mlgrid.runtime import Runtime, WorkspaceServices
from mlgrid.workspace.api_relay import ApiSocket
from mlgrid.workspace.code_limits import CodePolicy
from mlgrid.workspace.code_snapshot import SnapshotLimits
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.jobs import SWEEPER_DUTY, JobRunner
from mlgrid.workspace.models import ModelService
from mlgrid.workspace.processes import UNSAFE, Containment
from mlgrid.workspace.runs import RunService
from mlgrid.workspace.service import WorkspaceService

log = logging.getLogger("mlgrid.workspace")


def _announce(containment: Containment) -> None:
    """Say at start how user code runs; loudly (stderr, a banner) when it is not contained."""
    extra = {"action": "containment", "mode": containment.mode}
    if containment.contained:
        log.info("user code: %s", containment.describe(), extra=extra)
        return
    log.warning("user code: %s", containment.describe(), extra=extra)
    if containment.mode == UNSAFE:
        line = "!" * 78
        print(f"{line}\n!! {containment.describe()}\n{line}", file=sys.stderr, flush=True)


def _loopback(host: str) -> str:
    """Where the server itself reaches its own listening socket."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    return "::1" if host == "::" else host


async def setup(rt: Runtime, app: FastAPI) -> None:
    def topic_deleted(topic_key: str) -> None:
        # Looked up at call time, so the hook follows whatever service the runtime holds.
        rt.subscriptions.drop_topic(topic_key)

    core = WorkspaceService(
        rt.db,
        rt.topics,
        rt.ingestor,
        WorkspaceFiles.of(rt.blobs, rt.settings.data_dir),
        subscription_id=rt.subscription_id,
        topic_deleted=topic_deleted,
        tracing=rt.tracing,
    )
    runs = RunService(core)
    settings = rt.settings
    policy = CodePolicy(
        memory_bytes=settings.code_memory_limit_mb * (1 << 20) or None,
        job_cpu_seconds=settings.job_cpu_seconds or None,
        job_network=settings.job_network,
    )
    containment = Containment.detect(
        settings.data_dir, unsafe_local_code=settings.unsafe_local_code, policy=policy
    )
    containment = dataclasses.replace(containment, api_port=settings.port, api_scheme=settings.scheme)
    await asyncio.to_thread(containment.prepare)
    api_socket = ApiSocket(containment.api_socket, _loopback(settings.host), settings.port)
    await api_socket.start()
    _announce(containment)
    jobs = JobRunner(
        runs,
        base_url=rt.settings.base_url,
        node_id=rt.node.id,
        single_node=rt.db.is_sqlite,
        containment=containment,
        issue_token=rt.access.issue_run_token,
        code_limits=SnapshotLimits(max_bytes=rt.settings.job_code_max_mb * 1000 * 1000),
    )
    rt.workspace = WorkspaceServices(
        core=core,
        runs=runs,
        jobs=jobs,
        models=ModelService(core, runs),
        datasets=DatasetService(core),
        containment=containment,
    )
    failed = await jobs.recover_orphans()
    if failed:
        log.warning(
            "marked %d orphaned job(s) Failed", failed, extra={"action": "jobs_orphaned", "count": failed}
        )
    rt.tasks.append(asyncio.create_task(jobs.run(), name="mlgrid-jobs"))

    async def sweep_jobs(_lease: Lease) -> None:
        await jobs.sweep_stale_forever()

    rt.node.duty(SWEEPER_DUTY, sweep_jobs)
    # Jobs started after this node rejoined (declared dead, new id) carry the new id.
    rt.node.on_rejoin(lambda _old, new: setattr(jobs, "node_id", new))

    async def close_containment() -> None:
        await asyncio.to_thread(containment.close)

    rt.closers.append(close_containment)  # closers run in reverse: after every process stopped
    rt.closers.append(api_socket.close)
    rt.closers.append(jobs.shutdown)
