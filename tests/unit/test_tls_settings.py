"""``mlgrid.tls.tls_files``: which pair to serve with, and the settings mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgrid.config import Settings
from mlgrid.errors import InvalidField
from mlgrid.tls import ensure_self_signed, tls_files


def test_plain_http_is_the_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert tls_files(settings) is None
    assert settings.base_url.startswith("http://")


def test_self_signed_pair_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tls_self_signed=True)
    first = tls_files(settings)
    assert first is not None and first.generated
    assert first.keyfile.stat().st_mode & 0o077 == 0
    cert = first.certfile.read_bytes()
    assert tls_files(settings) == first and first.certfile.read_bytes() == cert
    assert settings.base_url.startswith("https://")


def test_self_signed_certificate_names_loopback_and_verifies_itself(tmp_path: Path) -> None:
    import ssl

    from cryptography import x509

    pair = ensure_self_signed(tmp_path, host="0.0.0.0")
    certificate = x509.load_pem_x509_certificate(pair.certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    context = ssl.create_default_context(cafile=str(pair.certfile))  # loads as a CA
    assert context.cert_store_stats()["x509_ca"] == 1


def test_given_pair_is_used(tmp_path: Path) -> None:
    pair = ensure_self_signed(tmp_path / "own")
    settings = Settings(data_dir=tmp_path, tls_certfile=str(pair.certfile), tls_keyfile=str(pair.keyfile))
    found = tls_files(settings)
    assert found is not None and not found.generated and found.certfile == pair.certfile


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tls_certfile": "/etc/hostname"}, "tls_keyfile"),
        ({"tls_keyfile": "/etc/hostname"}, "tls_certfile"),
        ({"tls_self_signed": True, "tls_keyfile": "/etc/hostname"}, "tls_self_signed"),
        ({"tls_certfile": "/nonexistent.pem", "tls_keyfile": "/nonexistent.key"}, "tls_certfile"),
    ],
)
def test_bad_combinations_name_the_setting(tmp_path: Path, changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        tls_files(Settings(data_dir=tmp_path).replace(**changes))
    assert caught.value.field_name == field
