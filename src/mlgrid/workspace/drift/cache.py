"""Where calibration nulls are kept: in memory, per process (see ``calibration`` for why).

Imports nothing heavy, so the monitor service can own a cache without loading pandas and
scikit-learn at server start.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class NullCache(Generic[T]):
    """Null distributions kept in memory, least recently used dropped beyond ``max_entries``.

    Thread-safe (windows are analysed in worker threads); two threads asking for the same
    missing null may both compute it — the results are identical, the second one is kept.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.computed = 0

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        built = build()
        with self._lock:
            self.computed += 1
            self._entries[key] = built
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return built

    def __len__(self) -> int:
        return len(self._entries)
