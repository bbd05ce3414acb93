"""Advanced filters looked up by the event's value instead of evaluated one by one.

One ``KeyIndex`` holds the anchors (``compile.Anchor``) filed on one key, read one way (with or
without ``enableAdvancedFilteringOnArrays``): a hash table per equality kind, a character trie
of ``StringBeginsWith`` prefixes, and sorted bounds for the numeric thresholds. ``collect``
reads the key once and adds every subscription whose anchor the value satisfies; the subject
index (``index.py``) keeps one ``KeyIndex`` per key for each group of subscriptions that share
a type and subject prefix.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from typing import Any, Final

from mlgrid.domain.event_filter import Number
from mlgrid.filters.compile import MISMATCH, Anchor, as_lower_string, as_number

__all__ = ["KeyIndex"]

_TABLES: Final = {"strings": "strings", "numbers": "numbers", "bool": "bools"}
"""The ``KeyIndex`` attribute holding each equality kind's table."""


class _TrieNode:
    """One character step of the ``StringBeginsWith`` prefixes of a key."""

    __slots__ = ("children", "ids")

    def __init__(self) -> None:
        self.children: dict[str, _TrieNode] = {}
        self.ids: set[str] = set()


class _Thresholds:
    """Subscriptions filed by one numeric bound, kept sorted so a bisection finds those passed."""

    __slots__ = ("bounds", "ids")

    def __init__(self) -> None:
        self.bounds: list[Number] = []
        self.ids: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, bound: Number, subscription_id: str) -> None:
        at = bisect_right(self.bounds, bound)
        self.bounds.insert(at, bound)
        self.ids.insert(at, subscription_id)

    def discard(self, bound: Number, subscription_id: str) -> None:
        for at in range(bisect_left(self.bounds, bound), bisect_right(self.bounds, bound)):
            if self.ids[at] == subscription_id:
                del self.bounds[at], self.ids[at]
                return


class KeyIndex:
    """The anchors on one key (read one way): equality tables, a prefix trie, sorted thresholds.

    ``collect`` reads the event value once, coerces it the way the predicates do, and adds the
    subscriptions whose anchor that value satisfies (for arrays, any element's). A value the
    anchor cannot read (absent, null, another type) satisfies no positive filter, so it adds
    nothing; the lookups are exact for equality and prefixes and for thresholds.
    """

    __slots__ = ("arrays", "bools", "get", "greater", "less", "numbers", "size", "strings", "trie")

    def __init__(self, get: Callable[[Mapping[str, Any]], Any], arrays: bool) -> None:
        self.get = get
        self.arrays = arrays
        self.strings: dict[str, set[str]] = {}
        self.numbers: dict[Number, set[str]] = {}
        self.bools: dict[bool, set[str]] = {}
        self.trie: _TrieNode | None = None
        # ``greater[strict]``: value must exceed the bound (gt when strict, ge otherwise);
        # ``less[strict]``: value must stay under it (lt when strict, le otherwise).
        self.greater = (_Thresholds(), _Thresholds())
        self.less = (_Thresholds(), _Thresholds())
        self.size = 0

    def add(self, anchor: Anchor, subscription_id: str) -> None:
        self.size += 1
        kind = anchor.kind
        if kind in ("strings", "numbers", "bool"):
            table: dict[Any, set[str]] = getattr(self, _TABLES[kind])
            for value in anchor.values:
                table.setdefault(value, set()).add(subscription_id)
        elif kind == "prefixes":
            for prefix in anchor.values:
                assert isinstance(prefix, str)
                node = self.trie = self.trie or _TrieNode()
                for char in prefix:
                    node = node.children.setdefault(char, _TrieNode())
                node.ids.add(subscription_id)
        else:
            for bound in anchor.values:
                self._thresholds(kind).add(bound, subscription_id)  # type: ignore[arg-type]

    def discard(self, anchor: Anchor, subscription_id: str) -> None:
        self.size -= 1
        kind = anchor.kind
        if kind in ("strings", "numbers", "bool"):
            table: dict[Any, set[str]] = getattr(self, _TABLES[kind])
            for value in anchor.values:
                ids = table.get(value)
                if ids is not None:
                    ids.discard(subscription_id)
                    if not ids:
                        del table[value]
        elif kind == "prefixes":
            for prefix in anchor.values:
                assert isinstance(prefix, str)
                self._discard_prefix(prefix, subscription_id)
        else:
            for bound in anchor.values:
                self._thresholds(kind).discard(bound, subscription_id)  # type: ignore[arg-type]

    def _thresholds(self, kind: str) -> _Thresholds:
        if kind in ("gt", "ge"):
            return self.greater[kind == "gt"]
        return self.less[kind == "lt"]

    def _discard_prefix(self, prefix: str, subscription_id: str) -> None:
        if self.trie is None:
            return
        path = [self.trie]
        for char in prefix:
            child = path[-1].children.get(char)
            if child is None:
                return
            path.append(child)
        path[-1].ids.discard(subscription_id)
        # Prune the branch back to the last node still in use.
        for depth in range(len(prefix), 0, -1):
            node = path[depth]
            if node.ids or node.children:
                break
            del path[depth - 1].children[prefix[depth - 1]]
        if not self.trie.ids and not self.trie.children:
            self.trie = None

    def collect(self, event: Mapping[str, Any], out: set[str]) -> None:
        value = self.get(event)
        if self.arrays and isinstance(value, list | tuple):
            for element in value:
                self._collect_value(element, out)
        else:
            self._collect_value(value, out)

    def _collect_value(self, value: Any, out: set[str]) -> None:
        if self.strings or self.trie is not None:
            text = as_lower_string(value)
            if text is not MISMATCH:
                hit = self.strings.get(text)
                if hit:
                    out |= hit
                node = self.trie
                if node is not None:
                    out |= node.ids
                    for char in text:
                        node = node.children.get(char)
                        if node is None:
                            break
                        out |= node.ids
        if self.numbers or self.greater[0] or self.greater[1] or self.less[0] or self.less[1]:
            number = as_number(value)
            if number is not MISMATCH:
                hit = self.numbers.get(number)
                if hit:
                    out |= hit
                ge, gt = self.greater
                if ge:  # bound <= value
                    out.update(ge.ids[: bisect_right(ge.bounds, number)])
                if gt:  # bound < value
                    out.update(gt.ids[: bisect_left(gt.bounds, number)])
                le, lt = self.less
                if le:  # bound >= value
                    out.update(le.ids[bisect_left(le.bounds, number) :])
                if lt:  # bound > value
                    out.update(lt.ids[bisect_right(lt.bounds, number) :])
        if self.bools and type(value) is bool:
            hit = self.bools.get(value)
            if hit:
                out |= hit
