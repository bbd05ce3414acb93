"""The limits and the network of user code: what the server allows (``CodePolicy``, from the
settings), what one process gets (``Limits``, a network name), and how a failure caused by a
limit is explained. Enforced by ``workspace/processes.py`` (rlimits, namespaces); see
docs/security.md#limits and decisions.md for why rlimits and not cgroups.
"""

from __future__ import annotations

import resource
import signal
from dataclasses import dataclass

from mlgrid.errors import invalid

NETWORK_NONE = "none"
NETWORK_API = "api"
NETWORK_HOST = "host"
NETWORKS = (NETWORK_API, NETWORK_NONE, NETWORK_HOST)
"""``api``: a network namespace of its own holding only a loopback interface, on which the
server's API (only it) is relayed at ``127.0.0.1:<server port>``; ``none``: the same without
the API; ``host``: the host's network (every service the host reaches, loopback included)."""
NICENESS = 10
"""User code runs at this niceness: the server (delivering events, answering requests) gets the
cores first when both want them."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one contained process, enforced with rlimits (see docs/security.md):
    ``memory_bytes`` caps each process's address space (``RLIMIT_AS``: an allocation beyond it
    fails, Python raises ``MemoryError``), ``cpu_seconds`` each process's CPU time
    (``RLIMIT_CPU``: SIGXCPU, then SIGKILL a second later)."""

    memory_bytes: int | None = None
    cpu_seconds: int | None = None

    def rlimits(self) -> list[tuple[int, int, int]]:
        """``(resource, soft, hard)`` to set in the child."""
        result = []
        if self.memory_bytes is not None:
            result.append((resource.RLIMIT_AS, self.memory_bytes, self.memory_bytes))
        if self.cpu_seconds is not None:
            result.append((resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1))
        return result

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"memory {format_bytes(self.memory_bytes)}")
        if self.cpu_seconds is not None:
            parts.append(f"CPU time {self.cpu_seconds} s")
        return ", ".join(parts) or "none"


def format_bytes(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


OUT_OF_MEMORY_MARKS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def explain_limit(code: int | None, limits: Limits, log_tail: str) -> str | None:
    """Why a process that ended with ``code`` most likely failed because of ``limits`` (to add
    to its error), or None: SIGXCPU/SIGKILL with a CPU limit, an out-of-memory message in the
    log with a memory limit."""
    if code is None or code == 0:
        return None
    # A signal that ended the process itself (-N), or a child of the job's shell (128 + N).
    signalled = -code if code < 0 else code - 128 if code > 128 else 0
    if limits.cpu_seconds is not None and signalled in (signal.SIGXCPU, signal.SIGKILL):
        return f"it reached its CPU time limit ({limits.cpu_seconds} s)"
    if limits.memory_bytes is not None and any(mark in log_tail for mark in OUT_OF_MEMORY_MARKS):
        return f"it ran out of its memory limit ({format_bytes(limits.memory_bytes)} of address space)"
    return None


@dataclass(frozen=True)
class CodePolicy:
    """The server's limits and network for user code (settings ``code_memory_limit_mb``,
    ``job_cpu_seconds``, ``job_network``): the defaults a job gets, and the most it may ask for."""

    memory_bytes: int | None = None
    job_cpu_seconds: int | None = None
    job_network: str = NETWORK_API

    def job(self, memory_mb: int | None, cpu_seconds: int | None, network: str | None) -> tuple[Limits, str]:
        """A job's limits and network from what it asked for (``resources.memoryMb``,
        ``resources.cpuSeconds``, ``network``; None: the default); asking for more than the
        server allows is a 400 naming the field."""
        memory = self.memory_bytes
        if memory_mb is not None:
            if memory is not None and memory_mb * (1 << 20) > memory:
                raise invalid(
                    "resources.memoryMb",
                    f"must be at most {memory >> 20} (the server's code_memory_limit_mb)",
                )
            memory = memory_mb * (1 << 20)
        cpu = self.job_cpu_seconds
        if cpu_seconds is not None:
            if cpu is not None and cpu_seconds > cpu:
                raise invalid("resources.cpuSeconds", f"must be at most {cpu} (the server's job_cpu_seconds)")
            cpu = cpu_seconds
        return Limits(memory, cpu), network or self.job_network

    def scoring(self) -> Limits:
        """A scoring process: the memory limit only (a CPU time limit would end a long-lived
        server after so many seconds of work, however slowly spent)."""
        return Limits(self.memory_bytes, None)
