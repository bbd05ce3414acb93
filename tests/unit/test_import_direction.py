"""Imports point down only: the layer rule of ``docs/architecture.md``, checked on the source.

Every ``import mlgrid...`` / ``from mlgrid... import`` in ``src/mlgrid`` (including the ones
inside functions and under ``TYPE_CHECKING``: a type-only import still ties two layers) is
read with ``ast`` and its two ends placed in a layer. An import from a lower or the same layer
is fine; one that points up fails the test, naming the file and line. Three rules on top:
``delivery/`` never imports ``broker/`` (the broker uses the delivery layer, not the reverse),
``api/`` never imports ``store/`` (routes reach data through services; what they render comes
from ``domain/``), and the pure layers never import ``store/``, ``api/``, ``cli/`` or ``ui/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "mlgrid"

#: Lowest first. A module may import from its own layer and the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("domain",),
    ("errors",),
    ("store", "blobs"),
    ("events", "filters", "auth", "storage", "config", "metrics", "tracing", "etags", "body"),
    ("cluster",),  # this process as a node: heartbeat, leases of background duties, NOTIFY
    ("delivery",),
    ("broker",),
    ("workspace",),
    ("connectors",),
    ("wiring",),  # runtime.py and every area's setup module (see ``layer_of``)
    ("api",),
    ("client",),  # the SDK over HTTP; its transport also serves the web UI's in-process calls
    ("ui",),  # pages and forms served by the same app
    # builds the app (api/ and ui/ routes, the runtime, background tasks) and serves it
    ("server", "connection_limits", "tls", "data_dir_lock"),
    ("cli", "config_docs", "package"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

PURE = frozenset({"domain", "events", "filters", "auth"})
FORBIDDEN: dict[str, frozenset[str]] = {
    "delivery": frozenset({"broker"}),
    "api": frozenset({"store"}),
    **{pure: frozenset({"store", "api", "cli", "ui"}) for pure in PURE},
}

#: (importing module, imported module) pairs that point the wrong way on purpose.
ALLOWED: dict[tuple[str, str], str] = {
    ("mlgrid.store.drift", "mlgrid.events.jsoncodec"): (
        "drift rows keep metric JSON written by the exact-number codec, a leaf that imports only "
        "errors; moving the codec below store/ touches 38 files and is left for a quiet moment"
    ),
    ("mlgrid.runtime", "mlgrid.ui.common"): (
        "the runtime's typed `ui` field names the web UI's state (under TYPE_CHECKING only); "
        "that state is built by ui/setup.py and holds the runtime itself"
    ),
    ("mlgrid.api.errors", "mlgrid.store.faults"): (
        "the one exception-to-response mapping answers database faults with 503; telling a fault "
        "(unreachable, read-only, full) from a bug needs the drivers' exceptions, which only "
        "store/ knows. It imports the classifier, never a row type"
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of a dotted ``mlgrid...`` module name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    top = parts[1]
    last = parts[-1]
    # Wiring: the runtime and the setup module of each area assemble services into it and are
    # only ever imported by server.py (the layer rule below keeps it that way).
    if top == "runtime" or last == "setup" or last.endswith("_setup"):
        return "wiring"
    return top


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every absolute import of mlgrid in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mlgrid":
                # ``from mlgrid import x``: x is a submodule or a name of the package root;
                # ``__version__`` is the one root name every layer may read.
                for alias in node.names:
                    submodule = (SOURCE / alias.name).is_dir() or (SOURCE / f"{alias.name}.py").is_file()
                    if submodule:
                        yield node.lineno, f"mlgrid.{alias.name}"
                    elif alias.name != "__version__":
                        yield node.lineno, "mlgrid"
            elif node.module.startswith("mlgrid."):
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mlgrid" or alias.name.startswith("mlgrid."):
                    yield node.lineno, alias.name


def wrong_way(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when it may."""
    if (importer, imported) in ALLOWED or (importer, imported.rsplit(".", 1)[0]) in ALLOWED:
        return None
    source, target = layer_of(importer), layer_of(imported)
    if source == target:
        return None
    if source == "wiring" and importer.split(".")[1] == imported.split(".")[1]:
        return None  # an area's setup module assembles that area's own services
    if target in FORBIDDEN.get(source, frozenset()):
        return f"{source}/ must never import {target}/"
    if RANK[target] > RANK[source]:
        return f"{source} (layer {RANK[source]}) imports {target} (layer {RANK[target]}), which is above it"
    return None


def all_violations() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        importer = module_name(path)
        for line, imported in imports_of(path):
            reason = wrong_way(importer, imported)
            if reason is not None:
                found.append(f"{path.relative_to(SOURCE.parent)}:{line}: {importer} -> {imported}: {reason}")
    return found


def test_every_module_has_a_layer() -> None:
    unknown = {layer_of(module_name(p)) for p in SOURCE.rglob("*.py")} - RANK.keys()
    assert not unknown, f"place these in LAYERS (tests/unit/test_import_direction.py): {sorted(unknown)}"


def test_imports_point_down() -> None:
    assert all_violations() == []


def test_domain_imports_nothing_of_mlgrid_but_itself() -> None:
    for path in (SOURCE / "domain").rglob("*.py"):
        for line, imported in imports_of(path):
            assert imported.startswith("mlgrid.domain"), f"{path.name}:{line} imports {imported}"


def test_allow_list_entries_are_still_needed() -> None:
    """A stale exception would hide the next wrong import between the same two modules."""
    used = set()
    for path in SOURCE.rglob("*.py"):
        importer = module_name(path)
        for _, imported in imports_of(path):
            for key in ((importer, imported), (importer, imported.rsplit(".", 1)[0])):
                if key in ALLOWED:
                    used.add(key)
    assert used == set(ALLOWED)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("mlgrid.delivery.dispatcher", "mlgrid.broker.subscriptions"),  # the two services, reversed
        ("mlgrid.api.deliveries", "mlgrid.store.deliveries"),  # a route reaching for rows
        ("mlgrid.events.publish", "mlgrid.store.events"),  # pure logic doing IO
        ("mlgrid.filters.compile", "mlgrid.api.errors"),
        ("mlgrid.domain.schemas", "mlgrid.errors"),  # domain is the bottom
        ("mlgrid.store.events", "mlgrid.broker.ingest"),
        ("mlgrid.workspace.runs", "mlgrid.runtime"),  # only setup modules see the runtime
        ("mlgrid.broker.topics", "mlgrid.workspace.service"),
        ("mlgrid.ui.routes", "mlgrid.server"),
    ],
)
def test_the_rule_catches_wrong_imports(importer: str, imported: str) -> None:
    assert wrong_way(importer, imported) is not None


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("mlgrid.broker.subscription_body", "mlgrid.delivery.signing"),
        ("mlgrid.delivery.dispatcher", "mlgrid.domain.subscription"),
        ("mlgrid.api.deliveries", "mlgrid.domain.records"),
        ("mlgrid.workspace.setup", "mlgrid.runtime"),
        ("mlgrid.server", "mlgrid.api.errors"),
        ("mlgrid.cli.main", "mlgrid.server"),
        ("mlgrid.ui.setup", "mlgrid.ui.feed"),
    ],
)
def test_the_rule_lets_downward_imports_through(importer: str, imported: str) -> None:
    assert wrong_way(importer, imported) is None
