"""Extreme filter numbers through API → store → UI → CLI (a property test).

Decision (docs/decisions.md, "Reliability"): the API refuses filter numbers beyond a double's
range (``1e400``) with a 400 naming the field, and changes nothing. Every number it accepts,
integers of any size within that range included (``2**64``), comes back from the API with the
same value, leaves the UI's pages answering 200, and is printed by the CLI (``-o json``) with
the same value, read exactly (``Decimal``).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.cli_runner import Cli
from tests.support.server import ServerProcess

from mlgrid.filters.parse import MAX_MAGNITUDE

FIELD = "properties.filter.advancedFilters[0].values[0]"

integers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64, -(2**64) - 1, 10**30, 10**308, 10**309, -(10**400)]),
)
decimals = st.builds(
    lambda mantissa, exponent: Decimal(f"{mantissa}e{exponent}"),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-400, max_value=400),
) | st.sampled_from([Decimal("1e400"), Decimal("-1e400"), Decimal("1.7976931348623157e308"),
                     Decimal("1.7976931348623158e308"), Decimal("0.30000000000000001"), Decimal("1e-400")])


def _accepted(value: int | Decimal) -> bool:
    return abs(value) <= MAX_MAGNITUDE


def _body(value: int | Decimal) -> str:
    # Integers as integer literals; other numbers always with an exponent, so that the API
    # reads them as the non-integers they are (``5e+0`` is a number, not the integer 5).
    literal = str(value) if isinstance(value, int) else format(value, "e")
    return (
        '{"properties": {"destination": {"endpointType": "Queue", "properties": {}}, '
        '"filter": {"advancedFilters": [{"operatorType": "NumberIn", "key": "data.n", '
        f'"values": [{literal}]}}]}}}}}}'
    )


@pytest.fixture(scope="module")
def topic(sqlite_server: ServerProcess) -> str:
    name = "numbers" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as client:
        assert client.put(f"/topics/{name}", json={"properties": {}}).status_code == 201
    return name


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(integers, decimals))
def test_filter_numbers_round_trip_or_are_refused(
    value: int | Decimal, sqlite_server: ServerProcess, topic: str
) -> None:
    name = "n" + uuid.uuid4().hex[:12]
    path = f"/topics/{topic}/eventSubscriptions/{name}"
    with sqlite_server.client() as client:
        response = client.put(path, content=_body(value), headers={"Content-Type": "application/json"})
        if not _accepted(value):
            assert response.status_code == 400, response.text
            assert response.json()["error"]["details"][0]["target"] == FIELD
            assert client.get(path).status_code == 404  # nothing was created
            return
        assert response.status_code == 201, response.text
        stored = json.loads(client.get(path).text, parse_float=Decimal)
        [filter_] = stored["properties"]["filter"]["advancedFilters"]
        assert Decimal(filter_["values"][0]) == Decimal(value)

    with httpx.Client(base_url=sqlite_server.url, timeout=30.0) as ui:
        signed_in = ui.post("/ui/login", data={"token": sqlite_server.admin_token, "next": "/"})
        assert signed_in.status_code == 303
        for page in ("/ui/topics", "/ui/deadletters"):
            assert ui.get(page).status_code == 200, page

    cli = Cli(sqlite_server)
    shown = cli.run("eventgrid", "event-subscription", "show", "--name", name,
                    "--source-resource-id", topic, "-o", "json")
    printed = json.loads(shown.stdout, parse_float=Decimal)
    [cli_filter] = printed["properties"]["filter"]["advancedFilters"]
    assert Decimal(cli_filter["values"][0]) == Decimal(value)
    with sqlite_server.client() as client:
        assert client.delete(path).status_code in (200, 204)
