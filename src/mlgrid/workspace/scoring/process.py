"""The server's handle on one scoring process: start it, wait until it answers, stop it.

A scoring process runs ``python -m mlgrid.workspace.scoring.server`` (the server's own
interpreter) in its own process group and working directory (the deployment directory), with
standard output and error appended to ``scoring.log`` there. Its environment is the server's
minus every ``MLGRID_*`` variable (no secrets reach model code), plus:

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
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

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
    if code is None:
        return "the scoring process is running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the scoring process was killed by {name}"
    if code == LOAD_FAILED_EXIT_CODE:
        return f"the scoring process could not load the deployment (exit code {code})"
    return f"the scoring process exited with code {code}"


def scoring_environment(base: Mapping[str, str], launch: Launch) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("MLGRID_")}
    # One request is scored at a time: numeric libraries' thread pools only compete with the
    # server for cores (and spin while waiting). The server's own setting wins if it has one.
    for variable in THREAD_VARIABLES:
        env.setdefault(variable, "1")
    model_dir = str(launch.model_dir)
    env.update(
        AZUREML_MODEL_DIR=model_dir,
        MLGRID_MODEL_DIR=model_dir,
        MLGRID_ENDPOINT=launch.endpoint,
        MLGRID_WORKSPACE=launch.workspace,
        PYTHONUNBUFFERED="1",
    )
    env[DEPLOYMENT_ID_VARIABLE] = launch.deployment_id
    return env


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
    if pid is None or not deployment_id:
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    if f"{DEPLOYMENT_ID_VARIABLE}={deployment_id}".encode() not in environ.split(b"\0"):
        return False
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    return True


class ScoringProcess:
    """One running scoring process."""

    def __init__(self, launch: Launch, process: asyncio.subprocess.Process, log_start: int) -> None:
        self.launch = launch
        self.process = process
        self.log_start = log_start
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    @classmethod
    async def start(
        cls, launch: Launch, environ: Mapping[str, str], *, port: int = 0, python: str = sys.executable
    ) -> ScoringProcess:
        """Spawn the process (it loads, then listens); ``port`` 0 lets it choose, another
        value is tried first (a restart keeps its ``scoringUri`` when it can)."""
        port_file = launch.directory / PORT_FILE

        def prepare() -> tuple[int, int]:
            launch.directory.mkdir(parents=True, exist_ok=True)
            port_file.unlink(missing_ok=True)
            fd = os.open(launch.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            return fd, os.lseek(fd, 0, os.SEEK_END)

        log_fd, log_start = await asyncio.to_thread(prepare)
        args = [
            python,
            "-m",
            "mlgrid.workspace.scoring.server",
            "--port",
            str(port),
            "--any-port",
            "--model-dir",
            str(launch.model_root),
            "--port-file",
            str(port_file),
            "--parent-pid",
            str(os.getpid()),
        ]
        for model_id in launch.model_ids:
            args += ["--model", model_id]
        if launch.entry_script is not None:
            args += ["--entry-script", str(launch.entry_script)]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                cwd=str(launch.directory),
                env=scoring_environment(environ, launch),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop kills what it started too
            )
        finally:
            os.close(log_fd)
        return cls(launch, process, log_start)

    async def log(self) -> str:
        """What this process wrote since it started (the tail of it)."""
        return await asyncio.to_thread(read_log_tail, self.launch.log_path, self.log_start)

    async def _read_port(self) -> int | None:
        def read() -> int | None:
            try:
                text = (self.launch.directory / PORT_FILE).read_text().strip()
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
        """SIGTERM to the process group, SIGKILL to what is left after ``grace`` seconds."""
        pid = self.pid
        if not self.exited:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
        # The group may outlive its leader (a script that forked): kill the rest too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if not self.exited:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), 5.0)
