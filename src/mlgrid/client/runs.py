"""A run of a workspace in the Python SDK: its lifecycle, tags, metrics and artifacts.

``Workspace.start_run`` / ``Workspace.run`` / ``Workspace.submit_job`` hand these out
(``client/workspace.py``); the run's state comes back as ``RunInfo``.
"""

from __future__ import annotations

import math
import mimetypes
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from mlgrid.client.http import ApiError, Transport, if_match_header
from mlgrid.client.workspace_records import Artifact, Metric, RunInfo, segment

if TYPE_CHECKING:
    from mlgrid.client.workspace import Workspace

__all__ = ["Run"]


class Run:
    """A handle on one run. As a context manager it completes the run when the block ends
    normally and marks it Failed (storing the error) when the block raises, then re-raises."""

    def __init__(self, workspace: Workspace, info: RunInfo) -> None:
        self.workspace = workspace
        self.info = info

    @property
    def id(self) -> str:
        return self.info.run_id

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def _path(self) -> str:
        return f"{self.workspace.path}/runs/{segment(self.id)}"

    @property
    def _http(self) -> Transport:
        return self.workspace.http

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.info.is_terminal:
            return  # already completed, failed or canceled inside the block
        if exc is None:
            self.complete()
            return
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            self.fail(message)
        except ApiError:
            pass  # the original exception matters more than a failure to record it

    def refresh(self) -> RunInfo:
        self.info = RunInfo.from_json(self._http.call("GET", self._path))
        return self.info

    def update(
        self,
        *,
        status: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, str] | None = None,
        error: str | None = None,
        if_match: str | None = None,
    ) -> RunInfo:
        """PATCH the run: a status, tags to merge (``None`` values remove a tag), properties."""
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if tags is not None:
            body["tags"] = dict(tags)
        if properties is not None:
            body["properties"] = dict(properties)
        if error is not None:
            body["error"] = error
        headers = if_match_header(if_match)
        self.info = RunInfo.from_json(self._http.call("PATCH", self._path, body, headers=headers))
        return self.info

    def complete(self) -> RunInfo:
        return self.update(status="Completed")

    def fail(self, error: str | BaseException) -> RunInfo:
        return self.update(status="Failed", error=str(error))

    def cancel(self) -> RunInfo:
        """Cancel: a submitted job is killed and ends Canceled (see ``wait``); another run
        becomes Canceled at once."""
        if self.info.raw.get("job"):
            return self.update(status="CancelRequested")
        return self.update(status="Canceled")

    def wait(self, timeout: float = 600.0, poll_interval: float = 0.2) -> RunInfo:
        """Poll until the run is Completed, Failed or Canceled; ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.refresh().is_terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} is still {self.status} after {timeout} s")
            time.sleep(poll_interval)
        return self.info

    def set_tags(self, tags: Mapping[str, Any]) -> RunInfo:
        return self.update(tags=tags)

    def set_properties(self, properties: Mapping[str, str]) -> RunInfo:
        return self.update(properties=properties)

    def log_metric(self, name: str, value: float | int | Decimal, step: int = 0) -> None:
        self.log_metrics({name: value}, step=step)

    def log_metrics(
        self,
        metrics: Mapping[str, float | int | Decimal] | Iterable[tuple[str, float | int | Decimal, int]],
        step: int = 0,
    ) -> None:
        """Log several metrics at once: ``{"name": value}`` (all at ``step``) or
        ``(name, value, step)`` tuples."""
        items = (
            [(name, value, step) for name, value in metrics.items()]
            if isinstance(metrics, Mapping)
            else [(name, value, item_step) for name, value, item_step in metrics]
        )
        body = []
        for name, value, item_step in items:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metric {name!r}: {value} is not a finite number")
            body.append({"name": name, "value": value, "step": item_step})
        if body:
            self._http.call("POST", f"{self._path}/metrics", {"metrics": body})

    def metrics(self, name: str | None = None) -> list[Metric]:
        body = self._http.call("GET", f"{self._path}/metrics", params={"name": name})
        return [Metric.from_json(m) for m in body["value"]]

    def upload_file(self, path: str | Path, name: str | None = None) -> Artifact:
        """Upload a local file as the artifact ``name`` (default: the file's name)."""
        source = Path(path)
        with source.open("rb") as handle:
            return self.upload_bytes(name or source.name, handle)

    def upload_bytes(self, name: str, data: bytes | BinaryIO) -> Artifact:
        """Upload bytes (or the contents of an open binary file) as the artifact ``name``."""
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        content = data if isinstance(data, bytes) else data.read()
        response = self._http.request(
            "PUT",
            f"{self._path}/artifacts/{quote(name, safe='/')}",
            content=content,
            headers={"Content-Type": media_type},
            timeout=600.0,
        )
        return Artifact.from_json(response.json())

    def artifacts(self, prefix: str | None = None) -> list[Artifact]:
        body = self._http.call("GET", f"{self._path}/artifacts", params={"prefix": prefix})
        return [Artifact.from_json(a) for a in body["value"]]

    def download_artifact(self, name: str) -> bytes:
        return self._http.request(
            "GET", f"{self._path}/artifacts/{quote(name, safe='/')}", timeout=600.0
        ).content
