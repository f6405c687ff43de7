"""A throw-away PKI for the TLS tests (no tests here): the ``pki`` fixture
(conftest.py) writes one per test."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


Key = ec.EllipticCurvePrivateKey


def _cert(
    subject: str, key: Key, issuer: tuple[str, Key] | None, *, ca: bool = False,
    server: bool = False,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = (subject, key) if issuer is None else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    crt, pem = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(crt), str(pem)


def make_pki(folder: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, all
    ECDSA P-256, written into ``folder``: {"ca", "server_crt", "server_key",
    "client_crt", "client_key"}: their paths."""
    ca_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("test-ca", ca_key, None, ca=True)
    ca_crt, _ = _write(folder / "ca", ca, ca_key)
    srv_crt, srv_key_path = _write(
        folder / "server", _cert("gateway", srv_key, ("test-ca", ca_key), server=True), srv_key
    )
    cli_crt, cli_key_path = _write(
        folder / "client", _cert("scada", cli_key, ("test-ca", ca_key)), cli_key
    )
    return {
        "ca": ca_crt,
        "server_crt": srv_crt,
        "server_key": srv_key_path,
        "client_crt": cli_crt,
        "client_key": cli_key_path,
    }
