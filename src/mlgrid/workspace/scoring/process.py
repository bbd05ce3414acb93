"""The server's handle on one scoring process: start it, wait until it answers, stop it.

A scoring process runs ``python -m mlgrid.workspace.scoring.server`` (the server's own
interpreter), started contained by ``workspace.processes``: loading a pickled model runs the
model's code, and so does an entry script. It works in a private copy of the deployment
(``models/<name>/<version>/`` and the entry script, copied from the deployment directory in the
data directory, which it cannot read), in its own process group, with standard output and
error appended to the deployment's ``scoring.log``. Its environment is scrubbed (nothing of
the server's), plus:

* ``AZUREML_MODEL_DIR`` and ``MLGRID_MODEL_DIR`` — the model's own directory
  (``models/<name>/<version>``) when one model is deployed, else the ``models`` directory that
  holds ``<name>/<version>/`` of each (Azure ML's convention);
* ``MLGRID_ENDPOINT``, ``MLGRID_WORKSPACE``, ``MLGRID_DEPLOYMENT_ID`` — the last one also lets a
  restarted server prove, through ``/proc/<pid>/environ``, that a leftover pid is really one of
  its scoring processes before killing it (pids are reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from mlgrid.workspace import code_limits, processes

LOG_FILE = "scoring.log"
PORT_FILE = "port"
LOG_TAIL_BYTES = 32 * 1024
POLL_SECONDS = 0.05
PROBE_TIMEOUT_SECONDS = 2.0
STOP_GRACE_SECONDS = 3.0
DEPLOYMENT_ID_VARIABLE = "MLGRID_DEPLOYMENT_ID"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LOAD_FAILED_EXIT_CODE = 3  # the scoring server's exit code for a model that fails to load


class StartFailed(Exception):
    """The scoring process exited, or did not answer its health check in time."""

    def __init__(self, reason: str, log: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log

    def report(self) -> str:
        """The text of ``properties.error``: the reason, then the scoring log."""
        log = self.log.rstrip() or "(the scoring process wrote nothing)"
        return f"{self.reason}\n--- scoring log ---\n{log}\n"


@dataclass(frozen=True)
class Launch:
    """Everything needed to (re)start the scoring process of one deployment."""

    deployment_id: str
    directory: Path
    model_ids: Sequence[str]
    entry_script: Path | None
    endpoint: str
    workspace: str

    @property
    def model_root(self) -> Path:
        return self.directory / "models"

    @property
    def model_dir(self) -> Path:
        """``AZUREML_MODEL_DIR``: the one model's directory, or the root of several."""
        if len(self.model_ids) == 1:
            name, version = self.model_ids[0].rsplit(":", 1)
            return self.model_root / name / version
        return self.model_root

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


def describe_exit(code: int | None) -> str:
    if code == LOAD_FAILED_EXIT_CODE:
        return f"the scoring process could not load the deployment (exit code {code})"
    return processes.describe_exit(code, "the scoring process")


def scoring_environment(
    base: Mapping[str, str], launch: Launch, model_dir: Path, sandbox: Path
) -> dict[str, str]:
    variables = {variable: base.get(variable, "1") for variable in THREAD_VARIABLES}
    # One request is scored at a time: numeric libraries' thread pools only compete with the
    # server for cores (and spin while waiting). The server's own setting wins if it has one.
    variables.update(
        AZUREML_MODEL_DIR=str(model_dir),
        MLGRID_MODEL_DIR=str(model_dir),
        MLGRID_ENDPOINT=launch.endpoint,
        MLGRID_WORKSPACE=launch.workspace,
        PYTHONUNBUFFERED="1",
    )
    variables[DEPLOYMENT_ID_VARIABLE] = launch.deployment_id
    return processes.contained_environment(base, variables, sandbox)


def read_log_tail(path: Path, start: int = 0, limit: int = LOG_TAIL_BYTES) -> str:
    """The log from byte ``start`` on, at most its last ``limit`` bytes (blocking)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            begin = max(start, end - limit)
            handle.seek(begin)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return ("...\n" + text) if begin > start else text


def kill_orphan(pid: int | None, deployment_id: str | None) -> bool:
    """Kill a scoring process left behind by a dead server, but only if ``/proc`` proves it is
    that deployment's process (its environment holds ``MLGRID_DEPLOYMENT_ID=<id>``)."""
    return processes.kill_orphan(pid, DEPLOYMENT_ID_VARIABLE, deployment_id)


def _copy_deployment(launch: Launch, sandbox: processes.Sandbox) -> tuple[Path, Path | None]:
    """Copy the deployment's models and entry script into the sandbox (blocking); returns the
    copies' model root and entry script."""
    models = sandbox.copy_in(launch.model_root, "models")
    script = None
    if launch.entry_script is not None:
        try:
            relative = launch.entry_script.relative_to(launch.directory)
        except ValueError:
            relative = Path(launch.entry_script.name)
        script = sandbox.path / relative
        if not script.exists() and launch.entry_script.is_file():  # in models/ it came with them
            sandbox.copy_in(launch.entry_script, str(relative))
    return models, script


class ScoringProcess:
    """One running scoring process."""

    def __init__(self, launch: Launch, process: processes.ManagedProcess) -> None:
        self.launch = launch
        self.process = process
        self.log_start = process.log_start
        self.port_file = process.sandbox.path / PORT_FILE
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process.exited

    @classmethod
    async def start(
        cls,
        launch: Launch,
        environ: Mapping[str, str],
        containment: processes.Containment,
        *,
        port: int = 0,
        python: str = sys.executable,
    ) -> ScoringProcess:
        """Spawn the process (it loads, then listens); ``port`` 0 lets it choose, another
        value is tried first (a restart keeps its ``scoringUri`` when it can)."""
        containment.check_allowed("model deployments")

        def prepare() -> tuple[processes.Sandbox, Path, Path | None]:
            launch.directory.mkdir(parents=True, exist_ok=True)
            sandbox = containment.new_sandbox("scoring")
            try:
                models, script = _copy_deployment(launch, sandbox)
            except BaseException:
                processes.remove_tree(sandbox.path)
                raise
            return sandbox, models, script

        sandbox, model_root, entry_script = await asyncio.to_thread(prepare)
        model_dir = model_root / launch.model_dir.relative_to(launch.model_root)
        args = [
            python,
            "-m",
            "mlgrid.workspace.scoring.server",
            "--port",
            str(port),
            "--any-port",
            "--model-dir",
            str(model_root),
            "--port-file",
            str(sandbox.path / PORT_FILE),
        ]
        if containment.sees_parent:
            args += ["--parent-pid", str(os.getpid())]
        for model_id in launch.model_ids:
            args += ["--model", model_id]
        if entry_script is not None:
            args += ["--entry-script", str(entry_script)]
        command = processes.Command(
            argv=args,
            environment=scoring_environment(environ, launch, model_dir, sandbox.path),
            log_path=launch.log_path,
            append_log=True,
            die_with_parent=True,
            limits=containment.policy.scoring(),
            network=code_limits.NETWORK_HOST,  # the proxy reaches it on 127.0.0.1:<port>
        )
        return cls(launch, await processes.start(containment, sandbox, command))

    async def log(self) -> str:
        """What this process wrote since it started (the tail of it)."""
        return await asyncio.to_thread(read_log_tail, self.launch.log_path, self.log_start)

    async def _read_port(self) -> int | None:
        def read() -> int | None:
            try:
                text = self.port_file.read_text().strip()
            except OSError:
                return None
            return int(text) if text.isdigit() else None

        return await asyncio.to_thread(read)

    async def wait_ready(self, timeout: float, session: aiohttp.ClientSession) -> None:
        """Return once ``GET /health`` answers 200; ``StartFailed`` (with the log) when the
        process exits first or ``timeout`` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        probe = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
        while True:
            if self.exited:
                reason = describe_exit(self.process.returncode)
                raise StartFailed(f"{reason} before answering its health check", await self.log())
            if self.port is None:
                self.port = await self._read_port()
            if self.port is not None:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/health", timeout=probe) as answer:
                        if answer.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
            if loop.time() >= deadline:
                raise StartFailed(
                    f"the scoring process did not answer its health check within {timeout:g} s",
                    await self.log(),
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), POLL_SECONDS)

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the process group, SIGKILL to what is left after ``grace`` seconds; then
        its private copy goes."""
        await self.process.stop(grace)
