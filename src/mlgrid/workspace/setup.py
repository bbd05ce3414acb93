"""Start-up of the ML workspace: services, orphaned jobs, the job supervisor.

``server.py`` awaits ``setup`` after the subscription and delivery layers, so events emitted
while failing orphaned jobs are routed to the subscriptions that exist. It sets
``rt.workspace`` (``WorkspaceServices``): ``core`` — ``WorkspaceService``: workspace look-up,
RBAC scope, transactions with ``emit`` and Sequencers (what deployments and drift monitors build
on) — and ``runs``, ``jobs``, ``models``, ``datasets``.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from mlgrid.runtime import Runtime, WorkspaceServices
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.jobs import JobRunner, default_node_id
from mlgrid.workspace.models import ModelService
from mlgrid.workspace.runs import RunService
from mlgrid.workspace.service import WorkspaceService

log = logging.getLogger("mlgrid.workspace")


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
    )
    runs = RunService(core)
    jobs = JobRunner(
        runs,
        base_url=rt.settings.base_url,
        node_id=default_node_id(rt.settings.node_id),
        single_node=rt.db.is_sqlite,
    )
    rt.workspace = WorkspaceServices(
        core=core, runs=runs, jobs=jobs, models=ModelService(core, runs), datasets=DatasetService(core)
    )
    failed = await jobs.recover_orphans()
    if failed:
        log.warning(
            "marked %d orphaned job(s) Failed", failed, extra={"action": "jobs_orphaned", "count": failed}
        )
    rt.tasks.append(asyncio.create_task(jobs.run(), name="mlgrid-jobs"))
    rt.closers.append(jobs.shutdown)
