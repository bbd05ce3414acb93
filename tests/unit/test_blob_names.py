"""The one blob-name check (``mlgrid.blobs.names``) and the blob settings: what is refused,
and that a name that passes can never leave the local backend's directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.blobs import InvalidBlobName, check_name
from mlgrid.blobs.azure import _account_name, is_connection_string
from mlgrid.blobs.local import LocalBlobContainer
from mlgrid.blobs.names import check_container, check_prefix
from mlgrid.config import Settings
from mlgrid.errors import InvalidField


@pytest.mark.parametrize("name", ["a", "runs/r1/artifacts/model.pkl", "x" * 1024, "ünïcode/名前", "a b/c"])
def test_good_names_pass_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "relative"),
        ("../x", "'..'"),
        ("a/./b", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("x" * 1025, "1024"),
        ("/".join("s" * 255), "segments"),
        (".partial-1", "store's own"),
    ],
)
def test_bad_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(InvalidBlobName) as caught:
        check_name(name)
    assert reason in str(caught.value)
    assert caught.value.status == 400


@given(st.lists(st.sampled_from(["a", "/", ".", "..", "\\", "b", "-", " ", "\n"]), max_size=30).map("".join))
def test_a_name_that_passes_stays_inside_the_container(raw: str) -> None:
    root = Path("/srv/blobs/c")
    container = LocalBlobContainer("c", root)
    try:
        path = container.path_of(raw)
    except InvalidBlobName:
        return
    assert path.resolve().is_relative_to(root)
    assert path != root


def test_prefixes_may_end_with_a_slash_or_be_empty() -> None:
    assert check_prefix("") == ""
    assert check_prefix("runs/") == "runs/"
    with pytest.raises(InvalidBlobName):
        check_prefix("../")


@pytest.mark.parametrize("name", ["ab", "A-b", "-ab", "ab-", "a--b", "a_b", "x" * 64])
def test_container_names_follow_azures_rule(name: str) -> None:
    with pytest.raises(InvalidBlobName):
        check_container(name)
    assert check_container("dead-letters-1") == "dead-letters-1"


def test_connection_strings_and_account_urls_are_told_apart() -> None:
    assert is_connection_string("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k==")
    assert is_connection_string("UseDevelopmentStorage=true")
    assert not is_connection_string("https://acct.blob.core.windows.net")
    assert not is_connection_string("https://acct.blob.core.windows.net/?sv=2024&sig=abc%3D")
    assert _account_name("https://acct.blob.core.windows.net") == "acct"
    assert _account_name("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"


def test_blob_settings_keep_secrets_out_of_repr_and_check_their_values() -> None:
    url = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=SECRETKEY=="
    settings = Settings.from_sources({}, {"MLGRID_BLOB_URL": url, "MLGRID_BLOB_KEY": "OTHERSECRET"})
    assert settings.blob_url == url and settings.blob_key == "OTHERSECRET"
    assert "SECRETKEY" not in repr(settings) and "OTHERSECRET" not in repr(settings)
    assert Settings.from_sources({}).blob_container == "mlgrid"
    with pytest.raises(InvalidField) as caught:
        Settings.from_sources({"blob_container": "Not_Valid"})
    assert "blob_container" in str(caught.value.details[0].target)
    with pytest.raises(InvalidField) as caught:
        Settings.from_sources({"blob_key": "k"})
    assert "blob_key" in str(caught.value.details[0].target)
