"""Running the documentation as a reader would: every fenced shell and Python block of a page,
top to bottom, in a fresh shell that has only what the page told the reader to do.

* **Blocks.** Fences labelled ``bash``, ``sh``, ``shell`` or ``python`` run; others (``json``,
  ``text``, unlabelled) are shown output or syntax and are not counted.
* **Marks** are visible in the rendered page, with their reason:
  a block preceded by ``*Not run by the documentation test: REASON.*`` is skipped;
  a page holding ``*The documentation test does not run this page: REASON.*`` is skipped whole.
* **The reader's machine.** A working folder laid out like a clone of the repository (its
  top-level entries linked in, ``.venv`` included) with a fresh server whose data directory is
  the folder's ``.mlgrid`` (so ``cat .mlgrid/admin.token`` works), and a real local webhook
  receiver that answers the validation handshake. The shell starts with a bare ``PATH`` (no
  virtualenv: a page must say ``source .venv/bin/activate``), a fresh ``HOME`` and no
  ``MLGRID_*`` variable except ``MLGRID_URL``.
* **Two substitutions** stand for the reader's fixed ports, which a test may not take:
  ``http://127.0.0.1:8780`` (the server the README starts) becomes the test server's URL,
  and ``MLGRID_URL`` points the CLI there; ``http://127.0.0.1:9000`` (the receiver the pages
  ask the reader to start) becomes the test receiver's URL.
* **Failure** is a non-zero exit of any command of a block, or the API's error envelope
  (``{"error": {"code": ...``) in its output (``curl`` exits 0 on a 4xx).
* **State between blocks.** Each block runs in its own ``bash -e -o pipefail`` (a failing
  command fails the block) after restoring the variables, exports and working directory the
  earlier blocks left, as one terminal session would have them. Python blocks run as
  ``python BLOCK.py`` in that same session, so ``python`` must be the one the page set up.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
RUNNABLE: Final = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python"}
BLOCK_MARK: Final = re.compile(r"^\*Not run by the documentation test: (?P<reason>.+?)\.?\*\s*$")
PAGE_MARK: Final = re.compile(r"^\*The documentation test does not run this page: (?P<reason>.+?)\.?\*\s*$",
                              re.MULTILINE)
FENCE: Final = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
API_ERROR: Final = re.compile(r'\{\s*"error"\s*:\s*\{\s*"code"')
SERVER_URL: Final = "http://127.0.0.1:8780"
RECEIVER_URL: Final = "http://127.0.0.1:9000"
BLOCK_TIMEOUT_SECONDS: Final = 120
BARE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
#: Variables a fresh ``bash`` has by itself: not carried from one block to the next.
_SHELL_OWN: Final = frozenset({
    "BASH", "BASHOPTS", "BASHPID", "BASH_ALIASES", "BASH_ARGC", "BASH_ARGV", "BASH_ARGV0", "BASH_CMDS",
    "BASH_COMMAND", "BASH_LINENO", "BASH_LOADABLES_PATH", "BASH_SOURCE", "BASH_SUBSHELL",
    "BASH_VERSINFO", "BASH_VERSION", "COLUMNS", "COMP_WORDBREAKS", "DIRSTACK", "EPOCHREALTIME",
    "EPOCHSECONDS", "EUID", "FUNCNAME", "GROUPS", "HISTCMD", "HISTFILE", "HISTFILESIZE", "HISTSIZE",
    "HOSTNAME", "HOSTTYPE", "IFS", "LINENO", "LINES", "MACHTYPE", "MAILCHECK", "OLDPWD", "OPTERR",
    "OPTIND", "OSTYPE", "PIPESTATUS", "PPID", "PS1", "PS2", "PS4", "PWD", "RANDOM", "SECONDS", "SHELL",
    "SHELLOPTS", "SHLVL", "SRANDOM", "UID", "_",
})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its text and its skip reason if marked."""

    line: int
    language: str
    text: str
    skip_reason: str | None

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE


def page_skip_reason(markdown: str) -> str | None:
    found = PAGE_MARK.search(markdown)
    return found.group("reason") if found else None


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of a page in order, with the visible mark before each (if any)."""
    lines = markdown.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening.group("fence"), opening.group("info").strip()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end])
            end += 1
        # The mark is the nearest line above that is neither blank nor an HTML comment.
        previous = next((lines[i] for i in range(index - 1, -1, -1)
                         if lines[i].strip() and not lines[i].strip().startswith("<!--")), "")
        mark = BLOCK_MARK.match(previous.strip())
        language = info.split()[0].lower() if info else ""
        reason = mark.group("reason") if mark else None
        found.append(Block(index + 1, language, "\n".join(body) + "\n", reason))
        index = end + 1
    return found


def pages() -> list[Path]:
    """README.md and every docs/*.md page, discovered (pages added later are checked too)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class BlockResult:
    block: Block
    passed: bool | None  # None: skipped
    output: str = ""


@dataclass
class PageReport:
    page: str
    results: list[BlockResult] = field(default_factory=list)
    page_skipped: str | None = None

    @property
    def run(self) -> int:
        return sum(1 for r in self.results if r.passed is not None)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def skipped(self) -> list[BlockResult]:
        return [r for r in self.results if r.passed is None]

    def summary(self) -> str:
        if self.page_skipped:
            return f"{self.page}: page not run ({self.page_skipped})"
        text = f"{self.page}: {self.run} run, {self.passed} passed, {len(self.skipped)} skipped"
        for result in self.skipped:
            text += f"\n    line {result.block.line}: skipped: {result.block.skip_reason}"
        for result in self.results:
            if result.passed is False:
                text += f"\n    line {result.block.line}: FAILED"
        return text


class ReaderShell:
    """One reader's terminal session in ``workdir``, one block at a time (see module docstring)."""

    def __init__(self, workdir: Path, server_url: str, receiver_url: str) -> None:
        self.workdir = workdir
        self.server_url = server_url
        self.receiver_url = receiver_url
        self._state = workdir.parent / "shell-state.sh"
        self._cwd = workdir.parent / "shell-cwd"
        self._state.write_text("")
        self._cwd.write_text(str(workdir))
        self._count = 0
        home = workdir.parent / "home"
        home.mkdir(exist_ok=True)
        self.environment = {
            "PATH": BARE_PATH, "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb", "COLUMNS": "100",
            "MLGRID_URL": server_url,
        }

    def substitute(self, text: str) -> str:
        return text.replace(SERVER_URL, self.server_url).replace(RECEIVER_URL, self.receiver_url)

    def run(self, block: Block) -> tuple[bool, str]:
        self._count += 1
        source = self.workdir.parent / f"block-{self._count}.{'py' if block.language == 'python' else 'sh'}"
        source.write_text(self.substitute(block.text))
        command = (f"python {shlex.quote(str(source))}" if RUNNABLE[block.language] == "python"
                   else f". {shlex.quote(str(source))}")
        script = textwrap.dedent(f"""\
            . {shlex.quote(str(self._state))} >/dev/null 2>&1
            cd "$(cat {shlex.quote(str(self._cwd))})"
            set -eo pipefail
            {command}
            set +e
            pwd > {shlex.quote(str(self._cwd))}
            {{ export -p; for name in $(compgen -v); do
                case " {' '.join(sorted(_SHELL_OWN))} " in *" $name "*) continue;; esac
                declare -p "$name" 2>/dev/null; done; }} > {shlex.quote(str(self._state))}.new
            mv {shlex.quote(str(self._state))}.new {shlex.quote(str(self._state))}
            """)
        # Its own process group, ended after the block: nothing a block starts (a server, a
        # command waiting for input) outlives it, even when the block times out. Output goes to
        # files, so a background process holding them open does not hold the block up.
        out_path, err_path = source.with_suffix(".out"), source.with_suffix(".err")
        with out_path.open("w") as out, err_path.open("w") as err:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", script], env=self.environment, cwd=self.workdir,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            try:
                process.wait(timeout=BLOCK_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                timed_out = True
            else:
                timed_out = False
            finally:
                _end_group(process)
                process.wait()
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if timed_out:
            tail = f"stdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-4000:]}"
            return False, f"timed out after {BLOCK_TIMEOUT_SECONDS} s\n{tail}"
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        output = f"exit {done.returncode}\nstdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
        # curl exits 0 on an error status: the API's error envelope in the output is a failure too.
        return done.returncode == 0 and not API_ERROR.search(done.stdout), output


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the block's process group (whatever it left running)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def lay_out_clone(workdir: Path) -> None:
    """A folder that looks like the reader's clone: a copy of the repository's files (so a
    block that writes or deletes files touches only the copy), with ``.venv`` linked in, and
    without ``.git``, ``.mlgrid`` or local caches."""
    workdir.mkdir(parents=True)
    skipped = {".git", ".mlgrid", ".pytest_cache", ".mypy_cache", ".ruff_cache", "test-artifacts",
               ".hypothesis", ".venv", ".venv-install.log"}
    for entry in ROOT.iterdir():
        if entry.name in skipped:
            continue
        if entry.is_dir():
            shutil.copytree(entry, workdir / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, workdir / entry.name)
    (workdir / ".venv").symlink_to(ROOT / ".venv")


def runnable_blocks(markdown: str) -> Iterator[Block]:
    return (b for b in blocks(markdown) if b.runnable)
