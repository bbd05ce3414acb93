"""Defaults that depend on where the server listens (docs/security.md): private endpoints and an
open /metrics are fine on loopback only, refused/closed on any other address; both are
configurable either way."""

from __future__ import annotations

import pytest

from mlgrid.config import Settings, is_loopback_host
from mlgrid.errors import InvalidField


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_binds_allow_private_endpoints_and_open_metrics(host: str) -> None:
    assert is_loopback_host(host)
    settings = Settings.from_sources({"host": host})
    assert settings.deny_private_endpoints is False
    assert settings.metrics_require_token is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "mlgrid.example.org"])
def test_other_binds_deny_private_endpoints_and_guard_metrics(host: str) -> None:
    assert not is_loopback_host(host)
    settings = Settings.from_sources({"host": host})
    assert settings.deny_private_endpoints is True
    assert settings.metrics_require_token is True


def test_explicit_choices_win_both_ways() -> None:
    exposed = Settings.from_sources(
        {"host": "0.0.0.0", "deny_private_endpoints": False, "metrics_require_token": False}
    )
    assert (exposed.deny_private_endpoints, exposed.metrics_require_token) == (False, False)
    local = Settings.from_sources({"host": "127.0.0.1"}, {"MLGRID_DENY_PRIVATE_ENDPOINTS": "true",
                                                          "MLGRID_METRICS_REQUIRE_TOKEN": "1"})
    assert (local.deny_private_endpoints, local.metrics_require_token) == (True, True)
    auto = Settings.from_sources({"host": "0.0.0.0"}, {"MLGRID_DENY_PRIVATE_ENDPOINTS": "auto"})
    assert auto.deny_private_endpoints is True


def test_connection_limits_are_validated() -> None:
    settings = Settings.from_sources({}, {"MLGRID_HEADER_TIMEOUT": "2.5", "MLGRID_MAX_CONNECTIONS": "10"})
    assert (settings.header_timeout, settings.body_timeout, settings.max_connections) == (2.5, 30.0, 10)
    for name, value in (("header_timeout", "0"), ("body_timeout", "-1"), ("header_timeout", "soon"),
                        ("max_connections", "0")):
        with pytest.raises(InvalidField) as info:
            Settings.from_sources({name: value})
        assert info.value.field_name == name
    with pytest.raises(InvalidField):
        Settings.from_sources({}, {"MLGRID_UI": "auto"})  # only the automatic settings know "auto"
