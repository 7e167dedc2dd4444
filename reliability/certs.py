"""Certificates for the scenarios, laid out as Kubernetes mounts them: `<dir>/<name>/{tls.crt,tls.key,ca.crt}`
are symlinks through `..data` to a dated directory, and a rotation swaps `..data` atomically (what the kubelet
does for a Secret volume, so cert-manager/Vault PKI rotations never show a half-written pair)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from pathlib import Path

from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.tls import TlsFiles

ADMIN = spiffe_id("admin")
PROXY = spiffe_id("proxyservice")
KEYSERVICE = spiffe_id("keyservice")
CALLER = spiffe_id("caller/reliability")
_serial = itertools.count()


class CertDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = CertificateAuthority.create("byok reliability CA")

    def identity(self, name: str, spiffe: str | None, *, ca: CertificateAuthority | None = None,
                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> TlsFiles:
        """Issue (or re-issue: a rotation) `name`'s certificate and swap it in atomically."""
        ca = ca or self.ca
        kwargs = {k: v for k, v in (("not_before", not_before), ("not_after", not_after)) if v is not None}
        cert, key = ca.issue(name, spiffe=spiffe, **kwargs)
        base = self.root / name
        version = base / f"..v{next(_serial)}"
        version.mkdir(parents=True)
        (version / "tls.crt").write_bytes(cert)
        (version / "tls.key").touch(mode=0o600)
        (version / "tls.key").write_bytes(key)
        (version / "ca.crt").write_bytes(self.ca.pem)  # peers are always checked against the real CA
        tmp = base / "..data_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version.name)
        os.replace(tmp, base / "..data")
        for f in ("tls.crt", "tls.key", "ca.crt"):
            if not (base / f).is_symlink():
                (base / f).symlink_to(f"..data/{f}")
        return TlsFiles(cert=str(base / "tls.crt"), key=str(base / "tls.key"), ca=str(base / "ca.crt"))
