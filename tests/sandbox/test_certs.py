"""Certificates the sandbox makes for itself and for certificate credentials."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from runner.sandbox.certs import make_client_certificate, make_server_certificates


def test_server_certificate_covers_loopback_names(tmp_path: Path) -> None:
    """The server certificate names localhost, 127.0.0.1 and ::1, signed by the CA."""
    made = make_server_certificates(tmp_path / "certs", ca_out=tmp_path / "ca.pem")

    cert = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(made.ca_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert made.ca_path == tmp_path / "ca.pem"
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    cert.verify_directly_issued_by(ca)


def test_key_file_is_private(tmp_path: Path) -> None:
    """The server key is readable by its owner only."""
    made = make_server_certificates(tmp_path)

    assert stat.S_IMODE(made.key_path.stat().st_mode) == 0o600


def test_client_certificate_thumbprint_is_sha1_of_the_certificate() -> None:
    """The thumbprint returned is the certificate's SHA-1 fingerprint in hex."""
    cert_pem, key_pem, thumbprint = make_client_certificate("app")

    cert = x509.load_pem_x509_certificate(cert_pem.encode())

    assert thumbprint == cert.fingerprint(hashes.SHA1()).hex()
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")
