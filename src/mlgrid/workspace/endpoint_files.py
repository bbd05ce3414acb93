"""The files of a model deployment: where they live and how they get there.

Each deployment has its own directory on the node that runs it
(``<data-dir>/workspaces/<ws>/endpoints/<name>/<deployment-id>/``): the model files are
downloaded from the blob store under ``models/<name>/<version>/`` (so a model deleted or re-registered
later does not change what runs) and an inline entry script is written beside them. The
deployer fills a new deployment's directory; the supervisor refills it when a restart finds
it gone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path

from mlgrid.errors import NotFound
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store.endpoints import EndpointRow
from mlgrid.workspace.endpoint_spec import parse_entry_script
from mlgrid.workspace.files import discard
from mlgrid.workspace.models import ModelService, ModelView
from mlgrid.workspace.scoring.process import Launch
from mlgrid.workspace.service import WorkspaceService


class DeploymentError(Exception):
    """A deployment could not be prepared (its files); the text becomes ``error``."""


def endpoint_dir(core: WorkspaceService, workspace_key: str, name: str) -> Path:
    """The directory of an endpoint's deployments."""
    return core.files.workspace_dir(workspace_key) / "endpoints" / name.lower()


def script_in_models(models_root: Path, versions: Iterable[tuple[str, str]], path: str) -> Path | None:
    """Where a model-relative entry script is in a deployment: the first deployed model
    version (``models_root/<name>/<version>/``) that holds ``path``."""
    for name, version in versions:
        candidate = models_root / name / version / path
        if candidate.is_file():
            return candidate
    return None


async def materialise(
    models: ModelService,
    directory: Path,
    row: EndpointRow,
    deployment_id: str,
    model_ids: list[str],
    script_json: str | None,
) -> Launch:
    """Copy the models (and the entry script) into ``directory``, the deployment's own."""
    views: list[ModelView] = []
    for model_id in model_ids:
        name, version = model_id.rsplit(":", 1)
        try:
            views.append(await models.get(row.workspace_key, name, version))
        except NotFound as exc:
            raise DeploymentError(f"model {model_id} is no longer registered") from exc
    script = None if script_json is None else parse_entry_script(loads_exact(script_json))
    models_root = directory / "models"
    await asyncio.to_thread(models_root.mkdir, parents=True, exist_ok=True)  # a script-only one too
    for view in views:
        target = models_root / view.name / str(view.version)
        if await asyncio.to_thread(target.exists):
            continue  # a restart reuses what an earlier start copied
        partial = models_root / view.name / f".{view.version}.partial"
        await asyncio.to_thread(discard, partial)
        try:
            await models.materialise(view, partial)
        except NotFound as exc:
            await asyncio.to_thread(discard, partial)
            raise DeploymentError(str(exc)) from exc
        await asyncio.to_thread(os.replace, partial, target)

    def place_script() -> Path | None:
        if script is None:
            return None
        if script.source is not None:
            path = directory / script.file_name
            path.write_text(script.source, encoding="utf-8")
            return path
        assert script.path is not None
        versions = [(view.name, str(view.version)) for view in views]
        found = script_in_models(models_root, versions, script.path)
        if found is not None:
            return found
        raise DeploymentError(f"the entry script {script.path!r} is not a file of the deployed models")

    entry = await asyncio.to_thread(place_script)
    return Launch(
        deployment_id=deployment_id,
        directory=directory,
        model_ids=tuple(model_ids),
        entry_script=entry,
        endpoint=row.name,
        workspace=row.workspace_key,
    )


def stored_script_path(directory: Path, row: EndpointRow) -> Path | None:
    """Where :func:`materialise` put the active deployment's entry script (``directory`` is
    that deployment's)."""
    if row.active_entry_script_json is None or row.active_deployment_id is None:
        return None
    script = parse_entry_script(loads_exact(row.active_entry_script_json))
    if script is None:
        return None
    if script.source is not None:
        return directory / script.file_name
    assert script.path is not None
    versions: list[tuple[str, str]] = []
    for model_id in loads_exact(row.active_models_json or "[]"):
        name, version = str(model_id).rsplit(":", 1)
        versions.append((name, version))
    found = script_in_models(directory / "models", versions, script.path)
    return found or directory / "models" / script.path  # missing: the start fails and says so
