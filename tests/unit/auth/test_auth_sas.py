"""Event Grid SAS tokens: the official SDK's tokens, other SDKs' formats, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import pytest
from azure.eventgrid import generate_sas as azure_generate_sas
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.auth.sas import (
    generate_sas,
    parse_sas_expiry,
    parse_sas_token,
    resource_matches,
    verify_sas,
)
from mlgrid.auth.tokens import new_topic_key
from mlgrid.errors import Unauthorized

KEY1 = new_topic_key()
KEY2 = new_topic_key()
ENDPOINT = "http://127.0.0.1:8780/topics/orders/api/events"
EXPIRES = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
BEFORE = EXPIRES - timedelta(minutes=1)


def _signed(raw_resource: str, raw_expiry: str, key: str) -> str:
    """A token assembled by hand from already-encoded fields, as another SDK would send it."""
    unsigned = f"r={raw_resource}&e={raw_expiry}"
    digest = hmac.new(base64.b64decode(key), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}&s={quote(base64.b64encode(digest).decode(), safe='')}"


# --- the official Python SDK -------------------------------------------------------------------


@pytest.mark.parametrize(
    "expires",
    [
        EXPIRES,
        EXPIRES.replace(tzinfo=None),
        EXPIRES.astimezone(timezone(timedelta(hours=5, minutes=30))),
        EXPIRES.replace(microsecond=250000),
        EXPIRES.astimezone(timezone(timedelta(hours=-8))),
    ],
    ids=["utc", "naive", "plus-0530", "microseconds", "minus-08"],
)
def test_tokens_from_the_azure_sdk_verify(expires: datetime) -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, expires)
    verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)
    assert parse_sas_token(token).expires == EXPIRES.replace(microsecond=expires.microsecond)


def test_azure_sdk_token_expires() -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, EXPIRES)
    with pytest.raises(Unauthorized, match="expired at 2026-11-22T10:00:00Z"):
        verify_sas(token, KEY1, KEY2, "/topics/orders", EXPIRES)


def test_azure_sdk_token_naive_expiry_is_utc() -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, EXPIRES.replace(tzinfo=None))
    verify_sas(token, KEY1, KEY2, None, EXPIRES - timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        verify_sas(token, KEY1, KEY2, None, EXPIRES + timedelta(seconds=1))


def test_key2_works() -> None:
    token = azure_generate_sas(ENDPOINT, KEY2, EXPIRES)
    verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)


def test_wrong_key_is_refused() -> None:
    token = azure_generate_sas(ENDPOINT, new_topic_key(), EXPIRES)
    with pytest.raises(Unauthorized, match="signature does not match") as caught:
        verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)
    assert caught.value.status == 401


def test_signature_is_checked_before_expiry() -> None:
    token = azure_generate_sas(ENDPOINT, new_topic_key(), EXPIRES)
    with pytest.raises(Unauthorized, match="signature does not match"):
        verify_sas(token, KEY1, KEY2, None, EXPIRES + timedelta(days=1))


def test_empty_keys_never_match() -> None:
    token = _signed(quote(ENDPOINT, safe=""), "2026-11-22T10%3A00%3A00Z", base64.b64encode(b"x").decode())
    with pytest.raises(Unauthorized, match="signature"):
        verify_sas(token, "", "", None, BEFORE)


def test_altered_expiry_breaks_the_signature() -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, EXPIRES)
    altered = token.replace("2026-11-22", "2036-11-22")
    with pytest.raises(Unauthorized, match="signature does not match"):
        verify_sas(altered, KEY1, KEY2, None, BEFORE)


# --- expiry formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22 10:00:00+00:00", EXPIRES),
        ("2026-11-22 10:00:00", EXPIRES),
        ("2026-11-22 10:00:00.250000", EXPIRES.replace(microsecond=250000)),
        ("2026-11-22 15:30:00+05:30", EXPIRES),
        ("2026-11-22T10:00:00Z", EXPIRES),
        ("2026-11-22T10:00:00", EXPIRES),
        ("2026-11-22T12:00:00+02:00", EXPIRES),
        ("2026-11-22T02:00:00-08:00", EXPIRES),
        ("2026-11-22T10:00:00.1234567Z", EXPIRES.replace(microsecond=123456)),
        ("2026-11-22T10:00:00.5+00:00", EXPIRES.replace(microsecond=500000)),
        ("11/22/2026 10:00:00 AM", EXPIRES),
        ("11/22/2026 10:00:00 am", EXPIRES),
        ("11/22/2026 10:00:00\u202fAM", EXPIRES),
        ("11/22/2026 10:00:00 AM +00:00", EXPIRES),
        ("11/22/2026 12:00:00 PM +02:00", EXPIRES),
        ("11/22/2026 10:00:00 PM", EXPIRES.replace(hour=22)),
        ("11/22/2026 12:00:00 AM", EXPIRES.replace(hour=0)),
        ("11/22/2026 12:30:00 PM", EXPIRES.replace(hour=12, minute=30)),
        ("1/2/2027 3:04:05 PM", datetime(2027, 1, 2, 15, 4, 5, tzinfo=UTC)),
        ("1/2/2027 15:04:05", datetime(2027, 1, 2, 15, 4, 5, tzinfo=UTC)),
    ],
)
def test_expiry_formats(text: str, expected: datetime) -> None:
    parsed = parse_sas_expiry(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["tomorrow", "13/01/2026 10:00:00 AM", "11/22/2026 13:00:00 PM", "11/22/2026 0:00:00 AM", ""]
)
def test_expiry_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sas_expiry(text)


@pytest.mark.parametrize(
    "raw_expiry",
    [
        quote("2026-11-22T10:00:00Z", safe=""),
        quote("2026-11-22T12:00:00+02:00", safe=""),
        "2026-11-22T12:00:00+02:00",  # '+' left unencoded: an offset sign, not a space
        quote("2026-11-22 10:00:00+00:00", safe=""),
        quote("11/22/2026 10:00:00 AM", safe=""),
        quote_plus("11/22/2026 10:00:00 AM", safe=""),  # Java URLEncoder / .NET HttpUtility
        "11%2f22%2f2026+10%3a00%3a00+AM",  # .NET lower-case escapes
    ],
)
def test_tokens_in_other_encodings_verify(raw_expiry: str) -> None:
    raw_resource = quote_plus(ENDPOINT + "?api-version=2018-01-01", safe="")
    token = _signed(raw_resource, raw_expiry, KEY1)
    verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)
    with pytest.raises(Unauthorized, match="expired"):
        verify_sas(token, KEY1, KEY2, "/topics/orders", EXPIRES)


def test_dotnet_lower_case_resource_escapes_verify() -> None:
    raw_resource = "http%3a%2f%2flocalhost%3a8780%2ftopics%2forders%2fapi%2fevents%3fapi-version%3d2018-01-01"
    token = _signed(raw_resource, "11%2f22%2f2026+10%3a00%3a00+AM", KEY2)
    verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)


# --- malformed tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not a name=value pair"),
        ("garbage", "not a name=value pair"),
        ("r=x&e=2026-11-22T10%3A00%3A00Z", "missing 's'"),
        ("r=x&s=AAAA", "missing 'e'"),
        ("e=2026-11-22T10%3A00%3A00Z&s=AAAA", "missing 'r'"),
        ("r=&e=2026-11-22&s=AAAA", "missing 'r'"),
        ("r=x&r=y&e=2026-11-22&s=AAAA", "more than once"),
        ("r=x&e=soon&s=" + "A" * 44, "'e'.*not an expiry time"),
        ("r=x&e=2026-11-22&s=not*base64", "not base64"),
        ("r=x&e=2026-11-22&s=AAAA", "3 bytes"),
    ],
)
def test_malformed_tokens_say_why(token: str, reason: str) -> None:
    with pytest.raises(Unauthorized, match=f"malformed: .*{reason}") as caught:
        verify_sas(token, KEY1, KEY2, None, BEFORE)
    assert caught.value.status == 401


def test_error_messages_never_show_the_expected_signature() -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, EXPIRES)
    forged = token.rsplit("&s=", 1)[0] + "&s=" + quote(base64.b64encode(bytes(32)).decode(), safe="")
    with pytest.raises(Unauthorized) as caught:
        verify_sas(forged, KEY1, KEY2, None, BEFORE)
    assert token.rsplit("&s=", 1)[1] not in caught.value.message


def test_authorization_scheme_word_is_tolerated() -> None:
    token = azure_generate_sas(ENDPOINT, KEY1, EXPIRES)
    verify_sas("SharedAccessSignature " + token, KEY1, KEY2, "/topics/orders", BEFORE)


def test_signature_whose_plus_became_a_space_still_verifies() -> None:
    for _ in range(50):  # find a signature containing '+'
        key = new_topic_key()
        token = azure_generate_sas(ENDPOINT, key, EXPIRES)
        if "%2B" in token.rsplit("&s=", 1)[1]:
            break
    else:
        pytest.skip("no signature with '+' found")
    head, signature = token.rsplit("&s=", 1)
    verify_sas(head + "&s=" + signature.replace("%2B", " "), key, KEY2, None, BEFORE)


# --- resource check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8780/topics/orders/api/events",
        "https://grid.example.org/topics/ORDERS/api/events",
        "http://localhost:8780/topics/orders:publish",
        "http://localhost:8780/topics/orders",
        "http://localhost:8780/topics/orders/",
        "https://proxy.example.org/mlgrid/topics/orders/api/events",
        "localhost:8780/topics/orders/api/events",
        "/topics/orders/eventsubscriptions/s1:receive",
    ],
)
def test_resource_of_this_topic_is_accepted_whatever_the_host(endpoint: str) -> None:
    token = azure_generate_sas(endpoint, KEY1, EXPIRES)
    verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)
    verify_sas(token, KEY1, KEY2, "http://public.example.org/topics/Orders/", BEFORE)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8780/topics/orders2/api/events",
        "http://127.0.0.1:8780/topics/other/api/events",
        "http://127.0.0.1:8780/systemTopics/orders/api/events",
        "http://127.0.0.1:8780/api/events",
        "http://orders.example.org/api/events",
    ],
)
def test_resource_of_another_topic_is_refused(endpoint: str) -> None:
    token = azure_generate_sas(endpoint, KEY1, EXPIRES)
    with pytest.raises(Unauthorized, match=r"issued for .*not for this topic \(/topics/orders\)"):
        verify_sas(token, KEY1, KEY2, "/topics/orders", BEFORE)


def test_several_expected_prefixes_for_aliases() -> None:
    token = azure_generate_sas("http://h/workspaces/ws1/eventsubscriptions/s:receive", KEY1, EXPIRES)
    verify_sas(token, KEY1, KEY2, ("/systemTopics/ws1", "/workspaces/ws1"), BEFORE)
    with pytest.raises(Unauthorized, match="/systemtopics/ws2 or /workspaces/ws2"):
        verify_sas(token, KEY1, KEY2, ("/systemTopics/ws2", "/workspaces/ws2"), BEFORE)


def test_resource_matches_on_segment_boundaries() -> None:
    assert resource_matches("http://h/topics/t1?apiVersion=2018-01-01", "/topics/t1")
    assert resource_matches("http://h/topics/t1:publish", "topics/t1")
    assert not resource_matches("http://h/topics/t10/api/events", "/topics/t1")
    assert not resource_matches("http://h/topics/t1x", "/topics/t1")
    assert resource_matches("http://h/anything", "")


# --- our generator ----------------------------------------------------------------------------


def test_generate_sas_format() -> None:
    token = generate_sas(ENDPOINT, KEY1, EXPIRES)
    assert token.startswith("r=http%3A%2F%2F127.0.0.1%3A8780%2Ftopics%2Forders%2Fapi%2Fevents&e=")
    assert "&e=2026-11-22T10%3A00%3A00Z&s=" in token
    head, signature = token.rsplit("&s=", 1)
    expected = hmac.new(base64.b64decode(KEY1), head.encode(), hashlib.sha256).digest()
    assert signature == quote(base64.b64encode(expected).decode(), safe="")


def test_generate_sas_refuses_a_non_base64_key_or_no_endpoint() -> None:
    with pytest.raises(ValueError, match="base64"):
        generate_sas(ENDPOINT, "", EXPIRES)
    with pytest.raises(ValueError, match="endpoint"):
        generate_sas("", KEY1, EXPIRES)


_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_earliest, _latest = datetime(2000, 1, 2), datetime(2100, 1, 1)
_expiries = st.datetimes(_earliest, _latest) | st.datetimes(
    _earliest, _latest, timezones=st.just(UTC) | _offsets
)
_keys = st.binary(min_size=1, max_size=64).map(lambda raw: base64.b64encode(raw).decode())
_names = st.from_regex(r"[A-Za-z0-9_-]{3,64}", fullmatch=True)
_hosts = st.sampled_from(["http://127.0.0.1:8780", "https://grid.example.org", "http://[::1]:8780", ""])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@given(host=_hosts, name=_names, key=_keys, expires=_expiries)
def test_generate_then_verify_round_trip(host: str, name: str, key: str, expires: datetime) -> None:
    token = generate_sas(f"{host}/topics/{name}/api/events", key, expires)
    verify_sas(token, key, KEY2, f"/topics/{name.upper()}", _utc(expires) - timedelta(microseconds=1))
    with pytest.raises(Unauthorized, match="expired"):
        verify_sas(token, KEY2, key, f"/topics/{name}", _utc(expires))


@given(name=_names, key=_keys, expires=_expiries)
def test_azure_sdk_round_trip(name: str, key: str, expires: datetime) -> None:
    token = azure_generate_sas(f"http://127.0.0.1:8780/topics/{name}/api/events", key, expires)
    verify_sas(token, KEY1, key, f"/topics/{name}", _utc(expires) - timedelta(seconds=1))


@given(endpoint=st.text(alphabet=st.characters(codec="utf-8"), min_size=1), key=_keys)
def test_any_resource_text_survives_encoding(endpoint: str, key: str) -> None:
    token = generate_sas(endpoint, key, EXPIRES)
    assert parse_sas_token(token).resource == endpoint
    verify_sas(token, key, KEY2, None, BEFORE)
