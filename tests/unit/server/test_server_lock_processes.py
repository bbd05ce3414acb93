"""The data directory lock across processes: held while its owner lives, free once it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlgrid.data_dir_lock import LOCK_FILE, DataDirectoryInUse, DataDirectoryLock

HOLD = (
    "import sys, time; from pathlib import Path; from mlgrid.data_dir_lock import DataDirectoryLock; "
    "DataDirectoryLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
)


def test_a_live_owner_keeps_the_lock_and_its_death_frees_it(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirectoryInUse) as refused:
            DataDirectoryLock(tmp_path).acquire()
        assert str(refused.value) == f"another mlgrid server (pid {owner.pid}) is using {tmp_path.resolve()}"
        assert (tmp_path / LOCK_FILE).read_text() == f"{owner.pid}\n"  # the refused one wrote nothing
    finally:
        owner.kill()
        owner.wait(10)
    lock = DataDirectoryLock(tmp_path)
    lock.acquire()  # a killed owner leaves no stale lock behind
    lock.release()
