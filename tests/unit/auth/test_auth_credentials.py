"""Recognising the credential of a publish or pull request, in every form clients send."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers, QueryParams

from mlgrid.auth.credentials import (
    BearerCredential,
    Credential,
    KeyCredential,
    NoCredential,
    SasCredential,
    key_matches,
    parse_bearer,
    parse_publish_credentials,
)

SAS = "r=http%3A%2F%2Fh%2Ftopics%2Ft1&e=2026-11-22T10%3A00%3A00Z&s=abc%3D"


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"aeg-sas-key": "k1"}, {}, KeyCredential("k1", source="aeg-sas-key header")),
        ({"AEG-SAS-KEY": "k1"}, {}, KeyCredential("k1", source="aeg-sas-key header")),
        ({}, {"aeg-sas-key": "k1"}, KeyCredential("k1", source="aeg-sas-key query parameter")),
        ({"aeg-sas-token": SAS}, {}, SasCredential(SAS, source="aeg-sas-token header")),
        ({"Aeg-Sas-Token": "SharedAccessSignature " + SAS}, {}, SasCredential(SAS)),
        ({}, {"aeg-sas-token": SAS}, SasCredential(SAS, source="aeg-sas-token query parameter")),
        (
            {"Authorization": "SharedAccessSignature " + SAS},
            {},
            SasCredential(SAS, source="Authorization: SharedAccessSignature"),
        ),
        (
            {"authorization": "sharedaccesssignature  " + SAS},
            {},
            SasCredential(SAS, source="Authorization: SharedAccessSignature"),
        ),
        (
            {"Authorization": "SharedAccessKey k1"},
            {},
            KeyCredential("k1", source="Authorization: SharedAccessKey"),
        ),
        ({"Authorization": "Bearer mlg_abc"}, {}, BearerCredential("mlg_abc")),
        ({"AUTHORIZATION": "bearer mlg_abc "}, {}, BearerCredential("mlg_abc")),
        ({}, {}, NoCredential()),
        ({"aeg-sas-key": "  "}, {}, NoCredential()),
    ],
)
def test_every_form(headers: dict[str, str], query: dict[str, str], expected: Credential) -> None:
    assert parse_publish_credentials(headers, query) == expected


@pytest.mark.parametrize(
    ("headers", "query", "kind"),
    [
        ({"aeg-sas-key": "k", "aeg-sas-token": SAS, "Authorization": "Bearer t"}, {}, KeyCredential),
        ({"aeg-sas-token": SAS, "Authorization": "SharedAccessKey k"}, {}, SasCredential),
        ({"Authorization": "Bearer t"}, {"aeg-sas-token": SAS}, SasCredential),
        ({"aeg-sas-token": SAS}, {"aeg-sas-key": "k"}, KeyCredential),
        ({"aeg-sas-key": " ", "Authorization": "Bearer t"}, {}, BearerCredential),
    ],
)
def test_order_of_precedence(headers: dict[str, str], query: dict[str, str], kind: type[Credential]) -> None:
    assert isinstance(parse_publish_credentials(headers, query), kind)


def test_header_wins_over_query_for_the_same_name() -> None:
    result = parse_publish_credentials({"aeg-sas-key": "from-header"}, {"aeg-sas-key": "from-query"})
    assert result == KeyCredential("from-header", source="aeg-sas-key header")


def test_works_with_starlette_request_types() -> None:
    headers = Headers(raw=[(b"aeg-sas-token", SAS.encode()), (b"content-type", b"application/json")])
    assert parse_publish_credentials(headers, QueryParams("api-version=2018-01-01")) == SasCredential(SAS)
    query = QueryParams([("aeg-sas-key", "k+/=")])
    expected = KeyCredential("k+/=", source="aeg-sas-key query parameter")
    assert parse_publish_credentials(Headers(), query) == expected


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported Authorization scheme 'Basic'"),
        ("Bearer", "Authorization: Bearer carries no value"),
        ("SharedAccessKey   ", "carries no value"),
    ],
)
def test_unusable_authorization_says_why(authorization: str, reason: str) -> None:
    result = parse_publish_credentials({"Authorization": authorization}, {})
    assert isinstance(result, NoCredential)
    assert reason in result.reason


def test_secrets_are_not_in_repr() -> None:
    for credential in (
        KeyCredential("secret-key-value"),
        SasCredential("secret-sas-value"),
        BearerCredential("secret-token-value"),
    ):
        assert "secret" not in repr(credential)


def test_kinds() -> None:
    credentials = (KeyCredential("k"), SasCredential("s"), BearerCredential("b"), NoCredential())
    assert [c.kind for c in credentials] == ["key", "sas", "bearer", "none"]


def test_parse_bearer() -> None:
    assert parse_bearer({"Authorization": "Bearer mlg_x"}) == BearerCredential("mlg_x")
    assert isinstance(parse_bearer({}), NoCredential)
    refused = parse_bearer({"Authorization": "SharedAccessKey k"})
    assert isinstance(refused, NoCredential)
    assert "Authorization: SharedAccessKey" in refused.reason
    assert isinstance(parse_bearer({"aeg-sas-key": "k"}), NoCredential)


@pytest.mark.parametrize(
    ("given", "key1", "key2", "expected"),
    [
        ("a", "a", "b", True),
        ("b", "a", "b", True),
        ("c", "a", "b", False),
        ("A", "a", "b", False),
        ("a ", "a", "b", False),
        ("", "", "b", False),
        ("", "a", "", False),
        ("ключ", "ключ", "b", True),
    ],
)
def test_key_matches(given: str, key1: str, key2: str, expected: bool) -> None:
    assert key_matches(given, key1, key2) is expected
