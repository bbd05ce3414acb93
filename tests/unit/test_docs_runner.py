"""The documentation runner itself: which blocks it runs, its marks, and a reader's shell that
keeps what earlier blocks set and fails a block on any failing command."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.docs_runner import ReaderShell, blocks, page_skip_reason

PAGE = """# A page

```bash
echo one
```

*Not run by the documentation test: it needs a cloud account.*

<!-- a comment between the mark and the block is allowed -->
```python
print("two")
```

```json
{"not": "run"}
```

```
plain text
```
"""


def test_blocks_languages_and_marks() -> None:
    found = blocks(PAGE)
    assert [(b.language, b.runnable, b.skip_reason) for b in found] == [
        ("bash", True, None),
        ("python", True, "it needs a cloud account"),
        ("json", False, None),
        ("", False, None),
    ]
    assert found[0].text == "echo one\n" and found[0].line == 3
    assert page_skip_reason(PAGE) is None
    marked = PAGE + "\n*The documentation test does not run this page: it needs Azure.*\n"
    assert page_skip_reason(marked) == "it needs Azure"


def one(text: str) -> str:
    return f"```bash\n{text}\n```\n"


def test_a_reader_shell_keeps_state_and_fails_on_any_command(tmp_path: Path) -> None:
    workdir = tmp_path / "clone"
    workdir.mkdir()
    shell = ReaderShell(workdir, "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert shell.run(blocks(one("NAME=kept\nexport SHARED=yes\nmkdir sub && cd sub"))[0])[0]
    kept = 'test "$NAME" = kept && test "$SHARED" = yes && test "$(basename $PWD)" = sub'
    assert shell.run(blocks(one(kept))[0])[0]
    passed, output = shell.run(blocks(one("false\necho after"))[0])
    assert not passed and "after" not in output
    envelope = one("""echo '{"error": {"code": "NotFound", "message": "x"}}'""")
    assert not shell.run(blocks(envelope)[0])[0]
    # The fixed addresses of the pages are the test's own.
    url = one("echo http://127.0.0.1:8780/x http://127.0.0.1:9000/y")
    assert "http://127.0.0.1:1/x http://127.0.0.1:2/y" in shell.run(blocks(url)[0])[1]
    # A fresh reader has no virtualenv on PATH until a page says so.
    assert "mlgrid: command not found" in shell.run(blocks(one("mlgrid --help"))[0])[1]


def test_nothing_a_block_starts_outlives_it(tmp_path: Path) -> None:
    workdir = tmp_path / "clone"
    workdir.mkdir()
    shell = ReaderShell(workdir, "http://127.0.0.1:1", "http://127.0.0.1:2")
    assert shell.run(blocks(one("sleep 300 &\necho $! > sleeper.pid"))[0])[0]
    pid = int((workdir / "sleeper.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "zombie" in status.read_text():
            return  # gone, or killed and waiting to be reaped
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started by the block is still running")
