"""Registered tabular datasets: CSV or Parquet uploads, versioned per name, with UUID ids.

Registration reads the whole file once (row count, columns and dtypes) and checks the optional
``timestampColumn`` (it must exist and parse as date-times): a bad file or column is a 400
naming ``file`` or ``timestampColumn`` and registers nothing. Datasets emit no event.
``frame`` loads a registered version for the drift monitors.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from mlgrid.blobs import BlobNotFound
from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import NotFound, invalid
from mlgrid.etags import new_etag
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import datasets as dataset_store
from mlgrid.store.datasets import DatasetRow
from mlgrid.workspace import tabular
from mlgrid.workspace.files import discard, stage_file
from mlgrid.workspace.runs import to_json_text
from mlgrid.workspace.service import WorkspaceService

if TYPE_CHECKING:
    import pandas as pd

DATASET_VERSION_COUNTER = "dataset-version"
MAX_DATASET_BYTES = 2 * 1024**3
MAX_FILE_NAME = 255


@dataclass(frozen=True)
class DatasetView:
    row: DatasetRow
    columns: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return self.row.id

    @classmethod
    def of(cls, row: DatasetRow) -> DatasetView:
        return cls(row, loads_exact(row.columns_json))


def _file_name(filename: str | None, file_format: str) -> str:
    """A safe single-segment name for the stored file."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = "".join(c for c in base if c.isalnum() or c in "._-")[:MAX_FILE_NAME].lstrip(".")
    return cleaned or f"data.{file_format}"


class DatasetService:
    def __init__(self, core: WorkspaceService) -> None:
        self.core = core

    async def register(
        self,
        workspace_name: str,
        name: str,
        filename: str | None,
        data: BinaryIO,
        *,
        timestamp_column: str | None = None,
        description: str = "",
    ) -> DatasetView:
        check_name(name, "datasetName")
        if timestamp_column is not None and not timestamp_column.strip():
            timestamp_column = None
        ws = await self.core.get(workspace_name)
        staging = self.core.files.staging_path(ws.key)

        def stage_and_inspect() -> tuple[Any, tabular.TableSummary]:
            staged = stage_file(data, staging, MAX_DATASET_BYTES, "file")
            with staging.open("rb") as head:
                file_format = tabular.detect_format(filename or "", head.read(4))
            try:
                summary, problem = tabular.inspect(staging, file_format, timestamp_column)
            except ValueError as exc:
                raise invalid("file", str(exc)) from exc
            if problem is not None:
                raise invalid("timestampColumn", problem)
            return staged, summary

        try:
            staged, summary = await asyncio.to_thread(stage_and_inspect)
            now = self.core.clock()
            async with self.core.transaction("dataset.register") as tx:
                ws = await self.core.get_in(tx.conn, ws.name)
                version = await tx.counter(ws, DATASET_VERSION_COUNTER, name.lower())
                row = DatasetRow(
                    id=str(uuid.uuid4()),
                    workspace_key=ws.key,
                    name=name,
                    version=version,
                    file_name=_file_name(filename, summary.file_format),
                    file_format=summary.file_format,
                    size=staged.size,
                    sha256=staged.sha256,
                    columns_json=to_json_text(summary.columns),
                    row_count=summary.row_count,
                    timestamp_column=timestamp_column,
                    description=description,
                    etag=new_etag(),
                    created_at=now,
                )
                await dataset_store.insert(tx.conn, row)
                await tx.place(staging, self.blob_name(row), f"dataset {name}:{version}")
        finally:
            discard(staging)
        return DatasetView.of(row)

    def blob_name(self, row: DatasetRow) -> str:
        return self.core.files.dataset_name(row.workspace_key, row.id, row.file_name)

    async def get(self, workspace_name: str, name: str, version: str | int) -> DatasetView:
        text = str(version)
        if not text.isdigit() or int(text) < 1 or len(text) > 9:
            raise invalid("version", f"{text!r} is not a dataset version (1, 2, 3...)")
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await dataset_store.get(conn, ws.key, name, int(text))
        if row is None:
            raise NotFound(
                f"dataset {name}:{text} does not exist in workspace {ws.name!r}",
                code=ErrorCode.DATASET_NOT_FOUND,
            )
        return DatasetView.of(row)

    async def get_by_id(self, workspace_name: str, dataset_id: str) -> DatasetView:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await dataset_store.get_by_id(conn, ws.key, dataset_id)
        if row is None:
            raise NotFound(
                f"dataset {dataset_id!r} does not exist in workspace {ws.name!r}",
                code=ErrorCode.DATASET_NOT_FOUND,
            )
        return DatasetView.of(row)

    async def list_datasets(self, workspace_name: str, name: str | None = None) -> list[DatasetView]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            rows = await dataset_store.list_datasets(conn, ws.key, name)
        return [DatasetView.of(r) for r in rows]

    async def frame(self, workspace_name: str, dataset_id: str) -> pd.DataFrame:
        """The dataset's rows, timestamp column parsed to UTC date-times (for drift monitors)."""
        view = await self.get_by_id(workspace_name, dataset_id)
        # Parquet needs a seekable file: materialise the blob in the staging area, then load it.
        local = self.core.files.staging_path(view.row.workspace_key)
        try:
            try:
                await self.core.files.download(self.blob_name(view.row), local)
            except BlobNotFound as exc:
                raise NotFound(
                    f"the file of dataset {dataset_id!r} is missing from the blob store",
                    code=ErrorCode.DATASET_FILE_MISSING,
                ) from exc
            row = view.row
            return await asyncio.to_thread(tabular.load, local, row.file_format, row.timestamp_column)
        finally:
            await asyncio.to_thread(discard, local)
