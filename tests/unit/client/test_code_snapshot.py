"""The job code snapshot: which files go (checked against git itself), limits, and the
server's safe unpacking of what the client zips."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from mlgrid.client.code_snapshot import CodeSnapshotError, build_archive, collect
from mlgrid.errors import BadRequest, PayloadTooLarge
from mlgrid.workspace.code_snapshot import SnapshotLimits, extract

TREE = {
    ".gitignore": "*.log\n!keep.log\nbuild/\n/top_only.txt\n**/cache/**\n",
    "train.py": "x",
    "a.log": "x",
    "keep.log": "x",
    "top_only.txt": "x",
    "build/out.bin": "x",
    "src/top_only.txt": "x",
    "src/.gitignore": "*.tmp\n!important.tmp\n",
    "src/x.tmp": "x",
    "src/important.tmp": "x",
    "src/deep/cache/blob": "x",
    "src/deep/code.py": "x",
    "src/deep/z.log": "x",
    "notes/.gitignore": "*\n!.gitignore\n!readme.md\n",
    "notes/readme.md": "x",
    "notes/draft.md": "x",
}


def _write(root: Path, tree: dict[str, str]) -> None:
    for name, text in tree.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _git_files(root: Path) -> list[str]:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return sorted(listed)


def test_the_snapshot_has_the_files_git_would_track(tmp_path: Path) -> None:
    _write(tmp_path, TREE)
    ours = [f.path for f in collect(tmp_path)]
    assert ours == _git_files(tmp_path)  # git's own answer; .git/ itself is never included
    assert "keep.log" in ours and "src/important.tmp" in ours and "a.log" not in ours


def test_an_amlignore_replaces_the_gitignore_of_its_directory(tmp_path: Path) -> None:
    _write(tmp_path, {".gitignore": "*.log\n", ".amlignore": "data/\n", "a.log": "x", "data/d.csv": "x"})
    assert [f.path for f in collect(tmp_path)] == [".amlignore", ".gitignore", "a.log"]


def test_limits_are_checked_before_anything_is_zipped(tmp_path: Path) -> None:
    _write(tmp_path, {"big.bin": "x" * 2000, "small.py": "x"})
    with pytest.raises(CodeSnapshotError, match=r"more than the limit.*big\.bin"):
        build_archive(tmp_path, max_bytes=1000)
    with pytest.raises(CodeSnapshotError, match="2 files"):
        build_archive(tmp_path, max_files=1)
    with pytest.raises(CodeSnapshotError, match="does not exist"):
        build_archive(tmp_path / "missing")


def test_what_the_client_zips_the_server_unpacks_identically(tmp_path: Path) -> None:
    _write(tmp_path / "code", TREE)
    (tmp_path / "code" / "train.py").chmod(0o755)
    archive, files = build_archive(tmp_path / "code")
    with archive:
        unpacked = extract(archive, tmp_path / "out", SnapshotLimits(max_bytes=10_000))
    assert [f.path for f in unpacked] == [f.path for f in files]
    for item in unpacked:
        assert (tmp_path / "out" / item.path).read_bytes() == (tmp_path / "code" / item.path).read_bytes()
    assert (tmp_path / "out" / "train.py").stat().st_mode & 0o100
    assert not (tmp_path / "out" / "keep.log").stat().st_mode & 0o100


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_an_archive_over_the_limit_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(PayloadTooLarge, match="job_code_max_mb"):
        extract(_zip({"zeros": b"\0" * 5000}), target, SnapshotLimits(max_bytes=4000))
    assert not target.exists()
    with pytest.raises(BadRequest, match="3 files"):
        extract(_zip({"a": b"", "b": b"", "c": b""}), target, SnapshotLimits(max_bytes=100, max_files=2))
    assert not target.exists()


def test_an_archive_that_lies_about_its_sizes_is_stopped_while_unpacking(tmp_path: Path) -> None:
    buffer = _zip({"bomb": b"\0" * 100_000})
    raw = bytearray(buffer.getvalue())
    # Patch the declared uncompressed size (local header and central directory) to 10 bytes.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = raw.index(signature)
        raw[start + offset : start + offset + 4] = (10).to_bytes(4, "little")
    target = tmp_path / "out"
    with pytest.raises((PayloadTooLarge, BadRequest)):
        extract(io.BytesIO(bytes(raw)), target, SnapshotLimits(max_bytes=1000))
    assert not target.exists()
