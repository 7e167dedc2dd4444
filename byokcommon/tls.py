"""mTLS for both services: server credentials that reload from disk, client channel credentials that notice
new files, and the peer identity of an authenticated caller: its certificate's canonical SPIFFE URI SAN (a
subject CN only behind an explicit setting, see `identity_from_pem`).

Certificates are files (mounted Secrets in Kubernetes, rotated by cert-manager or Vault PKI); a rotation needs
no restart: the server fetcher re-reads them when their modification time changes, so new connections present
the new certificate and trust the new CA while open streams continue on theirs.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a PEM certificate chain, its private key, and the CA bundle that peers must chain to."""

    cert: str
    key: str
    ca: str

    def check(self, prefix: str) -> None:
        """Fail at start with the variable's name when a file is missing or unreadable."""
        for attr in ("cert", "key", "ca"):
            path = getattr(self, attr)
            if not path:
                raise FileNotFoundError(f"{prefix}_{attr.upper()} is not set")
            if not os.access(path, os.R_OK):
                raise FileNotFoundError(f"{prefix}_{attr.upper()}: cannot read {path}")

    def stamp(self) -> tuple[float, ...]:
        """Modification times: a change means the files were rotated."""
        return tuple(Path(p).stat().st_mtime_ns for p in (self.cert, self.key, self.ca))

    def read(self) -> tuple[bytes, bytes, bytes]:
        return Path(self.cert).read_bytes(), Path(self.key).read_bytes(), Path(self.ca).read_bytes()


class ReloadingServerCredentials:
    """Server credentials requiring a client certificate, re-read whenever the files change on disk."""

    def __init__(self, files: TlsFiles, on_reload: Callable[[], None] | None = None) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self._on_reload = on_reload
        self.reloads = 0
        # gRPC's fetch callback may return None ("keep the current configuration"); the stubs say otherwise.
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._config(), self._fetch, require_client_authentication=True  # type: ignore[arg-type]
        )

    def _config(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self._files.read()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on each new TLS handshake; returning None keeps the current configuration.
        try:
            stamp = self._files.stamp()
        except OSError:
            return None  # mid-rotation (file briefly absent): keep serving with what we have
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                config = self._config()
            except (OSError, ValueError):
                return None
            self._stamp = stamp
            self.reloads += 1
        if self._on_reload:
            self._on_reload()
        return config


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    cert, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


# SPIFFE ID syntax (spiffe.io, SPIFFE-ID standard section 2): lower-case scheme and trust domain of [a-z0-9.-_], no
# port, user info, query or fragment; path segments of [A-Za-z0-9.-_], none empty, "." or "..", no trailing
# slash, no percent-encoding. Only such a string, from the URI SAN, is a SPIFFE identity.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_MAX_SPIFFE_ID = 2048


def canonical_spiffe_id(value: str) -> bool:
    """Whether `value` is a SPIFFE ID in its one canonical spelling (no dot segments, no empty segments...)."""
    if len(value) > _MAX_SPIFFE_ID or not value.startswith("spiffe://"):
        return False
    domain, slash, path = value[len("spiffe://"):].partition("/")
    if not _TRUST_DOMAIN.fullmatch(domain):
        return False
    if not slash:
        return True  # the trust domain's own ID
    return all(_SEGMENT.fullmatch(seg) and seg not in (".", "..") for seg in path.split("/"))


@dataclass
class IdentityPolicy:
    """How a certificate names its holder, process-wide (each service sets it once at start from its settings,
    `configure_identity`). `cn_fallback`: a certificate without a URI SAN is named by its subject CN."""

    cn_fallback: bool = False


IDENTITY_POLICY = IdentityPolicy()


def configure_identity(*, cn_fallback: bool) -> None:
    IDENTITY_POLICY.cn_fallback = cn_fallback


def identity_from_pem(pem: bytes, *, cn_fallback: bool | None = None) -> str:
    """The identity a certificate names, "" for none (the caller is then refused as unauthenticated):

    - its URI SAN when that is a canonical SPIFFE ID; a certificate with more than one URI SAN, or whose URI SAN
      is not a canonical SPIFFE ID, names no one (an SVID carries exactly one);
    - without a URI SAN, its subject CN only when the CN fallback is on (`IdentityPolicy`, off by default), and
      never a CN that looks like a SPIFFE ID: SPIFFE identities come from the URI SAN alone.
    """
    fallback = IDENTITY_POLICY.cn_fallback if cn_fallback is None else cn_fallback
    return _identity(pem, fallback)


def identity_from_der(der: bytes) -> str:
    """`identity_from_pem` for a DER certificate, as a TLS connection outside gRPC hands it over."""
    return _identity_der(der, IDENTITY_POLICY.cn_fallback)


@functools.lru_cache(maxsize=1024)
def _identity(pem: bytes, cn_fallback: bool) -> str:
    return _certificate_identity(x509.load_pem_x509_certificate(pem), cn_fallback)


@functools.lru_cache(maxsize=1024)
def _identity_der(der: bytes, cn_fallback: bool) -> str:
    return _certificate_identity(x509.load_der_x509_certificate(der), cn_fallback)


def _certificate_identity(cert: x509.Certificate, cn_fallback: bool) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uris:
        return str(uris[0]) if len(uris) == 1 and canonical_spiffe_id(str(uris[0])) else ""
    if not cn_fallback:
        return ""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    return "" if cn.lower().startswith("spiffe:") else cn


@functools.lru_cache(maxsize=1024)
def validity_from_pem(pem: bytes) -> tuple[float, float]:
    """A certificate's validity window as (not_before, not_after) POSIX timestamps."""
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


@functools.lru_cache(maxsize=1024)
def validity_from_der(der: bytes) -> tuple[float, float]:
    """`validity_from_pem` for a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS server context outside gRPC (the proxy's HTTP front) with the same rules as the gRPC ports: TLS 1.2+,
    a client certificate chaining to the CA required. `reload_ssl_context` loads rotated files into it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    reload_ssl_context(context, files)
    return context


def reload_ssl_context(context: ssl.SSLContext, files: TlsFiles) -> None:
    """Load the files into `context`: new handshakes present the new certificate and trust the new CA. A CA that
    was trusted before stays trusted until the process restarts (OpenSSL adds to a context's trust store, it
    never removes): a rotation that retires a CA restarts the proxy (docs/http-front.md, "Certificates")."""
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(cafile=files.ca)


def _peer_pems(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> list[bytes]:
    """The peer's certificate chain as gRPC's auth context holds it (a list of PEM blobs; empty without one)."""
    return cast("list[bytes]", context.auth_context().get("x509_pem_cert") or [])


def peer_certificate_current(context: grpc.ServicerContext | grpc.aio.ServicerContext,
                             now: float | None = None) -> bool:
    """Whether the caller's certificate is within its validity window now (True without a certificate).

    The TLS handshake checks validity only when a connection opens, and a gRPC connection can stay open for
    days; checked per RPC, the expiry of a short-lived certificate revokes it on open connections too (the
    stack has no CRL: short certificate lifetimes are the revocation)."""
    pems = _peer_pems(context)
    if not pems:
        return True
    not_before, not_after = validity_from_pem(pems[0])
    t = time.time() if now is None else now
    return not_before <= t <= not_after


def peer_identity(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> str:
    """The authenticated caller's identity, or "" when the connection carried no verified client certificate."""
    pems = _peer_pems(context)
    if not pems:
        return ""
    return identity_from_pem(pems[0])
