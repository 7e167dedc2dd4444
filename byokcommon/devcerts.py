"""Development and test certificates: a CA and leaf certificates with SPIFFE URI SANs, written as PEM files.

Production certificates come from Vault's PKI engine or cert-manager (see docs/operations.md); this exists so
`make run` and the tests have an mTLS setup without any external service, including deliberately bad
certificates (expired, not yet valid, from another CA) for negative tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from byokcommon.tls import TlsFiles

TRUST_DOMAIN = "byok.local"


def spiffe_id(name: str, trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/{name}"


@dataclass
class CertificateAuthority:
    """An in-memory CA that signs leaf certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "byok dev CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, spiffe: str | None = None, dns: tuple[str, ...] = ("localhost",),
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              ) -> tuple[bytes, bytes]:
        """Issue a leaf certificate usable as both TLS server and client; returns (cert_pem, key_pem)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        if spiffe:
            sans.append(x509.UniformResourceIdentifier(spiffe))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def write_identity(self, directory: Path, name: str, *, spiffe: str | None = None,
                       not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> TlsFiles:
        """Issue a certificate and write name.crt, name.key and ca.crt under `directory` (keys mode 0600)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = self.issue(name, spiffe=spiffe, not_before=not_before, not_after=not_after)
        (directory / f"{name}.crt").write_bytes(cert)
        key_path = directory / f"{name}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        (directory / "ca.crt").write_bytes(self.pem)
        return TlsFiles(cert=str(directory / f"{name}.crt"), key=str(key_path), ca=str(directory / "ca.crt"))
