"""TLS for ``mlgrid serve``: the certificate files to serve with, or a self-signed pair.

Azure's SDKs send bearer tokens only over https (``azure-core`` refuses them on plain http),
so a server that should accept ``TokenCredential`` must speak TLS. ``--tls-certfile`` and
``--tls-keyfile`` name a real pair; ``--tls-self-signed`` makes one for development, once, in
the data directory (``tls/cert.pem``, ``tls/key.pem``), valid for ``127.0.0.1``, ``::1``,
``localhost`` and the bind host. The certificate is its own CA: clients trust it by pointing
``MLGRID_CA_BUNDLE`` (mlgrid's SDK and CLI) or ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``
(Azure's SDKs) at ``cert.pem``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from mlgrid.auth.private_files import create_private_file
from mlgrid.config import Settings
from mlgrid.errors import invalid

__all__ = ["SELF_SIGNED_DIRECTORY", "TlsFiles", "ensure_self_signed", "tls_files"]

SELF_SIGNED_DIRECTORY = "tls"
_VALID_DAYS = 825  # the longest validity Apple and Chrome accept for a server certificate


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files uvicorn serves with; ``generated`` when mlgrid made them itself."""

    certfile: Path
    keyfile: Path
    generated: bool = False


def tls_files(settings: Settings) -> TlsFiles | None:
    """The pair to serve with, or None for plain http. Bad combinations are a 400-style error
    naming the setting, raised before anything listens."""
    certfile, keyfile = settings.tls_certfile, settings.tls_keyfile
    if settings.tls_self_signed:
        if certfile or keyfile:
            raise invalid("tls_self_signed", "give either --tls-self-signed or --tls-certfile/--tls-keyfile")
        return ensure_self_signed(Path(settings.data_dir), settings.host)
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        missing = "tls_keyfile" if certfile else "tls_certfile"
        raise invalid(missing, "--tls-certfile and --tls-keyfile go together")
    for name, value in (("tls_certfile", certfile), ("tls_keyfile", keyfile)):
        if not Path(value).is_file():
            raise invalid(name, f"{value!r} is not a readable file")
    return TlsFiles(Path(certfile), Path(keyfile))


def ensure_self_signed(data_dir: Path, host: str = "127.0.0.1") -> TlsFiles:
    """The data directory's self-signed pair, generated on first use and kept afterwards (a
    client that trusted it once keeps working across restarts)."""
    directory = data_dir / SELF_SIGNED_DIRECTORY
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", generated=True)
    if files.certfile.is_file() and files.keyfile.is_file():
        return files
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = _generate(host)
    # The key first, private from its first byte; the certificate last, as the marker that
    # the pair is complete. A concurrent start that lost the race reads the winner's files.
    if create_private_file(files.keyfile, key_pem):
        files.certfile.unlink(missing_ok=True)
        create_private_file(files.certfile, cert_pem)
    return files


def _generate(host: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlgrid development certificate")])
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified and x509.IPAddress(address) not in names:
            names.append(x509.IPAddress(address))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Its own CA, so that a CA bundle holding just this file verifies it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
