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
import logging
import sys

from fastapi import FastAPI

from mlgrid.runtime import Runtime, WorkspaceServices
from mlgrid.workspace.code_snapshot import SnapshotLimits
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.jobs import JobRunner, default_node_id
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


async def setup(rt: Runtime, app: FastAPI) -> None:
    def topic_deleted(topic_key: str) -> None:
        # Looked up at call time, so the hook follows whatever service the runtime holds.
        rt.subscriptions.drop_topic(topic_key)

    core = WorkspaceService(
        rt.db,
        rt.topics,
        rt.ingestor,
        WorkspaceFiles(rt.settings.data_dir),
        subscription_id=rt.subscription_id,
        topic_deleted=topic_deleted,
        tracing=rt.tracing,
    )
    runs = RunService(core)
    containment = Containment.detect(rt.settings.data_dir, unsafe_local_code=rt.settings.unsafe_local_code)
    await asyncio.to_thread(containment.prepare)
    _announce(containment)
    jobs = JobRunner(
        runs,
        base_url=rt.settings.base_url,
        node_id=default_node_id(rt.settings.node_id),
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

    async def close_containment() -> None:
        await asyncio.to_thread(containment.close)

    rt.closers.append(close_containment)  # closers run in reverse: after every process stopped
    rt.closers.append(jobs.shutdown)
