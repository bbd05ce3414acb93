"""Starting, watching and stopping the processes that run user code, contained.

Jobs (``jobs.py``) and scoring processes (``scoring/process.py``) run code that workspace
users wrote: a job's command, an endpoint's entry script, a pickled model (unpickling runs
code). This module is the one place that starts such a process, and so the one place where it
is kept away from the server's secrets. How (see ``docs/security.md``):

* **``user``** — the server runs as root: each process runs under a fresh unprivileged uid and
  gid of its own (``setgroups([])``, ``setgid``, ``setuid`` in the child, a new session), in a
  private directory owned by that uid, with a scrubbed environment and umask 077. The data
  directory is 0700 and the secret key and admin token 0600, all owned by the server's user,
  so that uid cannot read them, nor ``/proc/<server pid>/environ`` (another uid's). One uid
  per process also keeps two workspaces' processes apart (they cannot read, signal or trace
  each other), and lets the server kill every process the code left behind by its uid.
* **``bubblewrap``** — not root, ``bwrap`` installed: the process runs in new namespaces
  (user, pid, ipc, uts, mount, and network unless it may use the host's) with the file system
  read-only, the data directory, the server user's home and the other sandboxes replaced by
  empty directories, and only its private directory writable; the namespaces die with the
  server (``--die-with-parent``).
* **``unsafe``** — neither, and the admin started the server with ``--unsafe-local-code``:
  the code runs as the server's user (a loud warning at start).
* **``disabled``** — neither, no opt-in: starting user code fails with
  ``CodeExecutionDisabled`` (409) saying how to enable it.

Every process also gets ``Limits`` (rlimits: address space, CPU time), niceness 10, and a
``network``: ``api`` (the default for jobs: a network namespace of its own where only the
server's API is relayed, through ``ApiSocket``), ``none``, or ``host`` (scoring processes,
which the proxy must reach, and jobs that ask). As root the launcher also leaves a watchdog
that kills the process's uid when its first process ends, so nothing survives a crashed
server; under bubblewrap the pid namespace does that.

A process gets only its private directory (a *sandbox*: the job's code snapshot and working
copy, or the deployment's model files and entry script) under ``<temp>/mlgrid-<uid>-<hash>``,
a directory the server creates 0711 (others may enter a sandbox they own, never list them).
The sandbox is removed when the process is stopped or ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlgrid.errors import CodeExecutionDisabled
from mlgrid.workspace.api_relay import API_SOCKET, api_relay_argv
from mlgrid.workspace.code_limits import NETWORK_API, NETWORK_HOST, NETWORKS, NICENESS, CodePolicy, Limits

log = logging.getLogger("mlgrid.workspace.processes")

USER = "user"
BUBBLEWRAP = "bubblewrap"
UNSAFE = "unsafe"
DISABLED = "disabled"

UID_BASE = 1_500_000_000
"""First uid of the range contained processes run under (far above any system or login uid,
and above the usual ``/etc/subuid`` ranges of container runtimes)."""
UID_SPAN = 1 << 24
STOP_GRACE_SECONDS = 3.0
SANDBOX_MODE = 0o700
ROOT_MODE = 0o711
PASSED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
"""Server environment variables a contained process still gets (nothing secret); plus ``LC_*``."""


def describe_exit(code: int | None, what: str) -> str:
    """``"<what> exited with code 3"`` / ``"<what> was killed by SIGKILL"``."""
    if code is None:
        return f"{what} is running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{what} was killed by {name}"
    return f"{what} exited with code {code}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_orphan(pid: int | None, variable: str, value: str | None) -> bool:
    """Kill the process group of a process left behind by a dead server, but only if ``/proc``
    proves it is ours (its environment holds ``variable=value``): pids are reused."""
    if pid is None or not value:
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    if f"{variable}={value}".encode() not in environ.split(b"\0"):
        return False
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    return True


# Run as root by ``kill_uid``: become ``uid`` and send SIGKILL to every process that uid may
# signal (``kill(-1)``: all of its processes but the caller, in one pass under the kernel's task
# list lock, so a process forking meanwhile cannot slip through as it could in a /proc scan).
_KILL_EVERY_PROCESS_OF = """
import os, signal, sys
uid = int(sys.argv[1])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
try:
    os.kill(-1, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def processes_of_uid(uid: int) -> list[int]:
    """Pids of live processes whose real uid is ``uid`` (blocking; from ``/proc``).

    Zombies are left out: they run nothing and hold nothing but their pid, and whether one is
    reaped is up to its parent — for a daemonised process that is the machine's pid 1, which in a
    container may never reap at all."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        state = real_uid = None
        for line in status.splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("Uid:"):
                real_uid = int(line.split()[1])
                break
        if real_uid == uid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_uid(uid: int) -> int:
    """SIGKILL every process whose uid is ``uid`` (what contained code left behind: daemonised,
    in another session, anywhere); returns how many there were (blocking, root only)."""
    found = processes_of_uid(uid)
    if not found:
        return 0
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [sys.executable, "-I", "-c", _KILL_EVERY_PROCESS_OF, str(uid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=10, check=False,
        )
    for pid in processes_of_uid(uid):  # the helper could not run: one signal each
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


def contained_environment(
    server: Mapping[str, str], extra: Mapping[str, str], sandbox: Path
) -> dict[str, str]:
    """A scrubbed environment: a few harmless server variables, ``HOME``/``TMPDIR`` in the
    sandbox, then ``extra`` (the caller's variables win)."""
    env = {k: v for k, v in server.items() if k in PASSED_VARIABLES or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=str(sandbox), TMPDIR=str(sandbox))
    env.update(extra)
    return env


def _bubblewrap_works(prefix: Sequence[str]) -> bool:
    try:
        done = subprocess.run(
            [*prefix, "--ro-bind", "/", "/", "--proc", "/proc", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class Containment:
    """How this server runs user code (decided once at start, see the module docstring)."""

    mode: str
    sandbox_root: Path
    hidden: tuple[Path, ...] = ()
    """Bubblewrap: directories replaced by an empty one inside the sandbox."""
    bubblewrap: str = ""
    """The ``bwrap`` binary (``bubblewrap`` mode)."""
    reach: tuple[tuple[str, str], ...] = ()
    """``user`` mode: mounts that make the runtime reachable for any uid (``reachable_mounts``)."""
    policy: CodePolicy = field(default_factory=CodePolicy)
    """Limits and network of user code (settings)."""
    api_port: int | None = None
    """The server's port, relayed into a job's network namespace (network ``api``)."""
    api_scheme: str = "http"

    @property
    def api_socket(self) -> Path:
        """The Unix socket through which jobs with network ``api`` reach the server's API."""
        return self.sandbox_root / API_SOCKET

    @property
    def api_url(self) -> str:
        """``MLGRID_URL`` inside a job with network ``api``."""
        return f"{self.api_scheme}://127.0.0.1:{self.api_port}"

    @classmethod
    def detect(
        cls,
        data_dir: Path,
        *,
        unsafe_local_code: bool,
        euid: int | None = None,
        bubblewrap: str | None = None,
        policy: CodePolicy | None = None,
    ) -> Containment:
        data_dir = Path(data_dir).resolve()
        euid = os.geteuid() if euid is None else euid
        root = sandbox_root_for(data_dir, euid)
        binary = bubblewrap if bubblewrap is not None else (shutil.which("bwrap") or "")
        policy = policy or CodePolicy()
        if euid == 0:
            return cls(USER, root, reach=tuple(reachable_mounts(runtime_paths())), policy=policy)
        if binary and _bubblewrap_works([binary, "--unshare-all", "--share-net"]):
            home = Path(os.path.expanduser("~")).resolve()
            hidden = tuple(p for p in (data_dir, home) if p != Path("/"))
            return cls(BUBBLEWRAP, root, hidden, binary, policy=policy)
        return cls(UNSAFE if unsafe_local_code else DISABLED, root, policy=policy)

    @property
    def contained(self) -> bool:
        return self.mode in (USER, BUBBLEWRAP)

    @property
    def sees_parent(self) -> bool:
        """Whether the process sees the server as its parent (not in a pid namespace)."""
        return self.mode != BUBBLEWRAP

    def describe(self) -> str:
        return {
            USER: "each user process runs under its own unprivileged uid",
            BUBBLEWRAP: f"user processes run in a bubblewrap sandbox ({self.bubblewrap})",
            UNSAFE: "UNSAFE: user code runs as the server's own user and can read its secrets "
            "(--unsafe-local-code)",
            DISABLED: "user code is refused: no containment is available (run as root, install "
            "bubblewrap, or start with --unsafe-local-code)",
        }[self.mode]

    def check_allowed(self, what: str) -> None:
        """Raise ``CodeExecutionDisabled`` when this server may not run user code."""
        if self.mode == DISABLED:
            raise CodeExecutionDisabled(
                f"this server does not run {what}: no containment is available for user code; "
                "run the server as root (a dedicated uid per process), install bubblewrap "
                "(`make bubblewrap`), or start it with --unsafe-local-code"
            )

    def prepare(self) -> None:
        """Create the sandbox root (0711, ours) and remove sandboxes of dead servers."""
        root = self.sandbox_root
        try:
            root.mkdir(mode=ROOT_MODE)
        except FileExistsError:
            info = root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
                raise RuntimeError(
                    f"{root} exists but is not a directory owned by this user and writable only by it; "
                    "remove it"
                ) from None
        os.chmod(root, ROOT_MODE)
        for entry in root.iterdir():
            if entry.name == API_SOCKET:
                continue
            owner_pid = entry.name.split("-", 1)[0]
            if owner_pid.isdigit() and not process_alive(int(owner_pid)):
                self._kill_leftovers(entry)
                remove_tree(entry)

    def _kill_leftovers(self, sandbox: Path) -> None:
        """A sandbox of a server that died (SIGKILL, power loss): as root, every process still
        running under its uid — the sandbox directory's owner, a uid used for nothing else —
        is killed, whatever session or process group it moved to. (Under bubblewrap the pid
        namespace died with the server: nothing to do.)"""
        if self.mode != USER:
            return
        with contextlib.suppress(OSError):
            owner = sandbox.lstat().st_uid
            if UID_BASE <= owner < UID_BASE + UID_SPAN:
                killed = kill_uid(owner)
                if killed:
                    log.warning(
                        "killed %d process(es) left behind by a stopped server under uid %d",
                        killed,
                        owner,
                        extra={"action": "orphans_killed", "uid": owner},
                    )

    def close(self) -> None:
        """At shutdown: remove the sandbox root if no sandbox is left in it (blocking)."""
        with contextlib.suppress(OSError):
            self.sandbox_root.rmdir()

    def new_sandbox(self, label: str) -> Sandbox:
        """A private directory (and, as root, a fresh uid) for one process (blocking)."""
        if not self.sandbox_root.is_dir():
            self.prepare()
        path = self.sandbox_root / f"{os.getpid()}-{label}-{secrets.token_hex(8)}"
        path.mkdir(mode=SANDBOX_MODE)
        uid = gid = None
        if self.mode == USER:
            uid = gid = UID_BASE + secrets.randbelow(UID_SPAN)
            os.chown(path, uid, gid)
        return Sandbox(path, uid, gid)


def sandbox_root_for(data_dir: Path, euid: int) -> Path:
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mlgrid-{euid}-{digest}"


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Sandbox:
    """The private directory of one contained process, and the uid/gid it runs as (root only)."""

    path: Path
    uid: int | None = None
    gid: int | None = None

    def give(self, path: Path) -> None:
        """Hand ``path`` (inside the sandbox, copied by the server) to the sandbox's uid."""
        if self.uid is None or self.gid is None:
            return
        for current, directories, files in os.walk(path):
            os.chown(current, self.uid, self.gid, follow_symlinks=False)
            for name in (*directories, *files):
                os.chown(os.path.join(current, name), self.uid, self.gid, follow_symlinks=False)

    def copy_in(self, source: Path, relative: str) -> Path:
        """Copy a server-owned file or directory into the sandbox (symlinks copied as links,
        never followed) and hand it over; returns where it is."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target, follow_symlinks=False)
        if self.uid is not None and self.gid is not None:
            for parent in target.relative_to(self.path).parents:
                if parent != Path("."):
                    os.chown(self.path / parent, self.uid, self.gid)
        self.give(target)
        return target


@dataclass
class Command:
    """What to run: arguments, environment (already scrubbed), the log file it writes to, its
    limits and its network."""

    argv: Sequence[str]
    environment: Mapping[str, str]
    log_path: Path
    append_log: bool = False
    die_with_parent: bool = True
    """Kill the process when the server dies: bubblewrap's ``--die-with-parent`` (with its pid
    namespace, everything the code started dies too), as root ``PR_SET_PDEATHSIG`` (what it
    started in other sessions is killed by uid when the server starts again)."""
    extra_hidden: Iterable[Path] = field(default_factory=tuple)
    limits: Limits = field(default_factory=Limits)
    network: str = NETWORK_HOST


class ManagedProcess:
    """One running contained process: wait for it, stop it (its whole group, and as root every
    process of its uid), and remove its sandbox."""

    def __init__(self, process: asyncio.subprocess.Process, sandbox: Sandbox, log_start: int) -> None:
        self.process = process
        self.sandbox = sandbox
        self.log_start = log_start
        self._released = False

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if not self.exited:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), 5.0)
        await self.release()

    async def release(self) -> None:
        """After the process ended: kill what it left behind and remove its sandbox (once)."""
        if self._released:
            return
        self._released = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.sandbox.uid is not None:
            await asyncio.to_thread(kill_uid, self.sandbox.uid)
        await asyncio.to_thread(remove_tree, self.sandbox.path)


def _open_log(path: Path, append: bool) -> tuple[int, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    return fd, os.lseek(fd, 0, os.SEEK_END)


# Run by the server's interpreter in isolated mode (-I: no environment, no site directories),
# in the process that then becomes the user's (same pid: no fork). Its plan (JSON) says what to do:
# 1. as root, with ``network`` "none" or "api": a network namespace of its own, loopback up;
# 2. as root, with ``mounts`` (``reachable_mounts``): a private mount namespace gets them — bind
#    sources are opened first, since a tmpfs may then cover them;
# 3. as root, with a ``uid`` and ``watchdog``: a watchdog process (below);
#    then the rlimits (``Limits``) and the niceness;
# 4. as root, with a ``uid``: leave every supplementary group, take the sandbox's gid and uid
#    (real, effective and saved: no way back), forbid gaining privileges through set-uid files,
#    umask 077, and die with the server (PR_SET_PDEATHSIG, re-armed after the uid change that
#    clears it; if the server is already gone, exit);
# 5. exec the command (or bubblewrap). (The event loop's spawner, uvloop, can do none of this.)
_LAUNCH = """
import ctypes, fcntl, json, os, resource, select, signal, socket, struct, sys
plan = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        sys.exit("containment: " + what + ": " + os.strerror(ctypes.get_errno()))
if plan.get("network") in ("none", "api"):
    check(libc.unshare(0x40000000), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22s", b"lo", 0, b"")
        flags = struct.unpack("16sH22s", fcntl.ioctl(s, 0x8913, request))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22s", b"lo", flags | 1, b""))
mounts = plan.get("mounts") or []
if mounts:
    check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None), "make / private")
    sources = {path: os.open(path, os.O_PATH) for kind, path in mounts if kind == "bind"}
    for kind, path in mounts:
        if kind == "tmpfs":
            check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, b"mode=0755"), "tmpfs " + path)
        else:
            source = "/proc/self/fd/%d" % sources[path]
            os.makedirs(path, exist_ok=True) if os.path.isdir(source) else open(path, "a").close()
            source = source.encode()
            check(libc.mount(source, path.encode(), None, 0x1000 | 0x4000, None), "bind " + path)
    for fd in sources.values():
        os.close(fd)
uid, gid = plan.get("uid"), plan.get("gid")
if uid is not None and plan.get("watchdog") and hasattr(os, "pidfd_open"):
    # A watchdog, still root, outside the code's session and out of its reach (another uid):
    # when this process (the code's first one) ends, however — killed with the server by
    # PR_SET_PDEATHSIG included — it becomes the uid and kills every process of it.
    watched = os.getpid()
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            try:
                pidfd = os.pidfd_open(watched)
                select.select([pidfd], [], [])
            except OSError:
                pass
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            for _ in range(3):
                try:
                    os.kill(-1, signal.SIGKILL)
                except OSError:
                    break
        os._exit(0)
    os.waitpid(first, 0)
for which, soft, hard in plan.get("rlimits") or []:
    resource.setrlimit(which, (soft, hard))
if plan.get("nice"):
    os.nice(plan["nice"])
if uid is not None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid or os.getgroups():
        sys.exit("containment: could not drop privileges")
    check(libc.prctl(38, 1, 0, 0, 0), "no new privileges")
    os.umask(0o077)
if plan.get("parent"):
    check(libc.prctl(1, signal.SIGKILL, 0, 0, 0), "die with the server")
    if os.getppid() != plan["parent"]:
        sys.exit("containment: the server is gone")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def launch_argv(
    argv: Sequence[str],
    *,
    uid: int | None = None,
    gid: int | None = None,
    mounts: Sequence[tuple[str, str]] = (),
    limits: Limits | None = None,
    network: str = NETWORK_HOST,
    niceness: int = 0,
    parent: int | None = None,
    watchdog: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """``argv`` started through the launcher above: in a network namespace of its own when
    ``network`` is ``none`` (root only), with ``mounts`` (root only), ``limits`` and
    ``niceness``, as ``uid``/``gid`` (root only: no supplementary groups, no new privileges,
    umask 077), killed when ``parent`` dies."""
    plan = {
        "network": network,
        "mounts": list(mounts),
        "rlimits": limits.rlimits() if limits is not None else [],
        "nice": niceness,
        "uid": uid,
        "gid": gid,
        "parent": parent,
        "watchdog": watchdog,
    }
    return [python, "-I", "-c", _LAUNCH, json.dumps(plan), *argv]


def drop_privileges_argv(
    uid: int,
    gid: int,
    argv: Sequence[str],
    plan: Sequence[tuple[str, str]] = (),
    python: str = sys.executable,
) -> list[str]:
    """``argv`` run as ``uid``/``gid``: no supplementary groups, no new privileges, umask 077,
    after the mounts of ``plan`` in a mount namespace of its own."""
    return launch_argv(argv, uid=uid, gid=gid, mounts=plan, python=python)


def reachable_mounts(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """Mounts that let any uid reach ``paths`` (the interpreter, its libraries, mlgrid itself)
    when an ancestor is closed to others (``/root`` 0700 holding pyenv): that ancestor becomes
    an empty tmpfs (0755) into which only the next step of the path is bound again — nothing
    else of it shows. ``[("tmpfs", "/root"), ("bind", "/root/.pyenv")]``; empty when every
    path is reachable already."""
    plan: list[tuple[str, str]] = []
    emptied: set[Path] = set()
    bound: set[Path] = set()
    for target in paths:
        current = Path("/")
        for part in Path(target).resolve().parts[1:]:
            following = current / part
            if current not in emptied and not os.stat(current).st_mode & stat.S_IXOTH:
                plan.append(("tmpfs", str(current)))
                emptied.add(current)
            if current in emptied and following not in bound:
                plan.append(("bind", str(following)))
                bound.add(following)
            current = following
    return plan


def runtime_paths() -> list[Path]:
    """What a contained Python process needs to reach: the interpreter and libraries, the
    virtual environment, the directory mlgrid is imported from."""
    return [Path(sys.base_prefix), Path(sys.prefix), Path(__file__).resolve().parents[2]]


def bubblewrap_argv(containment: Containment, sandbox: Sandbox, command: Command) -> list[str]:
    """bubblewrap: new user, pid, ipc, uts, mount and cgroup namespaces, and a network namespace
    unless the command may use the host's network; the file system read-only."""
    argv = [containment.bubblewrap, "--unshare-all"]
    if command.network == NETWORK_HOST:
        argv.append("--share-net")
    argv += ["--ro-bind", "/", "/"]
    argv += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc"]
    # The other sandboxes belong to the same user here: hide them all, then bind this one back.
    for hidden in (*containment.hidden, *command.extra_hidden, containment.sandbox_root):
        argv += ["--tmpfs", str(hidden)]
    argv += ["--bind", str(sandbox.path), str(sandbox.path), "--chdir", str(sandbox.path)]
    if command.network == NETWORK_API:
        argv += ["--bind", str(containment.api_socket), str(containment.api_socket)]
    if command.die_with_parent:
        argv.append("--die-with-parent")
    return argv


def contained_argv(containment: Containment, sandbox: Sandbox, command: Command) -> list[str]:
    """The full argument vector that starts ``command`` the way ``containment`` says."""
    if command.network not in NETWORKS:
        raise ValueError(f"unknown network {command.network!r}")
    argv = list(command.argv)
    # Without containment (unsafe) there is no namespace to relay into: the host's network.
    if command.network == NETWORK_API and containment.mode != UNSAFE:
        if containment.api_port is None:
            raise ValueError("network api needs the server's port (Containment.api_port)")
        argv = api_relay_argv(containment.api_socket, containment.api_port, argv)
    parent = os.getpid() if command.die_with_parent else None
    if containment.mode == BUBBLEWRAP:
        # Limits and niceness are set outside (inherited by bwrap and everything in it); the
        # network namespace and --die-with-parent are bubblewrap's.
        argv = [*bubblewrap_argv(containment, sandbox, command), "--", *argv]
        return launch_argv(argv, limits=command.limits, niceness=NICENESS)
    if sandbox.uid is not None and sandbox.gid is not None:
        return launch_argv(
            argv,
            uid=sandbox.uid,
            gid=sandbox.gid,
            mounts=containment.reach,
            limits=command.limits,
            network=command.network,
            niceness=NICENESS,
            parent=parent,
            watchdog=True,
        )
    # unsafe: the server's own user; limits and niceness still apply, the network cannot be
    # taken away without privileges.
    return launch_argv(argv, limits=command.limits, niceness=NICENESS, parent=parent)


async def start(containment: Containment, sandbox: Sandbox, command: Command) -> ManagedProcess:
    """Start ``command`` contained, in ``sandbox``, in a new session (its own process group:
    stopping it kills what it started too). ``CodeExecutionDisabled`` when not allowed."""
    containment.check_allowed("user code")
    argv = contained_argv(containment, sandbox, command)
    log_fd, log_start = await asyncio.to_thread(_open_log, command.log_path, command.append_log)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(sandbox.path),
            env=dict(command.environment),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop kills what it started too
        )
    except BaseException:
        await asyncio.to_thread(remove_tree, sandbox.path)
        raise
    finally:
        os.close(log_fd)
    return ManagedProcess(process, sandbox, log_start)
