"""Input checks for keyservice RPCs: each raises InvalidArgument naming the field, never echoing a secret."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from byokcommon.redaction import redact_text
from keyservice.errors import InvalidArgument

_SCOPE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CREDENTIAL_ID = re.compile(r"cred_[0-9a-f]{24}")
_VAULT_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,15}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}")
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,511}")


def scope_id(value: str, field: str, *, required: bool = False) -> str:
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return ""
    if not _SCOPE_ID.fullmatch(value) or ".." in value:
        raise InvalidArgument(field, "must be 1-128 characters of letters, digits and . _ : @ - (no '/')")
    return value


def name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _NAME.fullmatch(value):
        raise InvalidArgument(field, "must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def credential_id(value: str, field: str = "credential_id") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _CREDENTIAL_ID.fullmatch(value):
        raise InvalidArgument(field, "must look like cred_ followed by 24 hex digits")
    return value


def model(value: str, field: str = "default_model") -> str:
    if value and not _MODEL.fullmatch(value):
        raise InvalidArgument(field, "must be at most 256 characters of letters, digits and . _ : / @ + -")
    return value


def identity(value: str, field: str = "caller_identity") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not _IDENTITY.fullmatch(value):
        raise InvalidArgument(field, "must be a SPIFFE URI or certificate CN of at most 512 safe characters")
    return value


def vault_path(value: str, field: str = "vault_path", *, managed_prefix: str = "") -> str:
    """A KV path ops name (RegisterCredential). With `managed_prefix` (the service's kv_prefix), a path in
    keyservice's own per-credential layout, `<prefix>/<org_id>/cred_…`, is refused: it is another
    credential's secret, and registering it would let a second credential (of any org) serve that key."""
    if not value:
        raise InvalidArgument(field, "is required")
    if canonical_vault_path(value) != value:
        # Vault resolves `.`, `..` and empty segments, so such a path names another path's secret: the row
        # would escape the managed-layout check and the uniqueness index, and the reconciler would take the
        # secret it really names (ops' own) for an orphan.
        raise InvalidArgument(field, f"must be canonical: no '.', '..' or empty segments (did you mean "
                                     f"{redact_text(canonical_vault_path(value)) or 'a path'}?)")
    if not _VAULT_PATH.fullmatch(value):
        raise InvalidArgument(field, "must be a relative KV path of segments [A-Za-z0-9._-] separated by '/'")
    # A key pasted here would travel in a Vault request path, which Vault's audit log records in clear.
    if redact_text(value) != value:
        raise InvalidArgument(field, "looks like it contains an API key; give the path where the key is stored")
    prefix = managed_prefix.strip("/")
    if prefix:
        rest = value[len(prefix) + 1:].split("/") if value.startswith(prefix + "/") else []
        if len(rest) == 2 and rest[1].startswith("cred_"):
            raise InvalidArgument(field, f"{value} is in keyservice's managed layout ({prefix}/<org_id>/cred_…), "
                                         f"where each secret belongs to one credential; import from a path of "
                                         f"your own, e.g. {prefix}/imports/<name>")
    return value


def canonical_vault_path(value: str) -> str:
    """The path Vault serves for `value`: empty and `.` segments dropped, `..` resolved (never above the
    mount), no leading or trailing '/'. The reconciler compares rows' paths (older rows may predate the
    canonical-path check) with Vault's listing in this form."""
    segments: list[str] = []
    for segment in value.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/".join(segments)


def api_base(value: str, field: str = "api_base") -> str:
    """https URLs anywhere; plain http only to loopback (local stacks). No credentials, query or fragment."""
    if not value:
        return ""
    if len(value) > 2048:
        raise InvalidArgument(field, "is longer than 2048 characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise InvalidArgument(field, "is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument(field, "must be an absolute https:// URL")
    if parts.username or parts.password:
        raise InvalidArgument(field, "must not contain credentials")
    if parts.query or parts.fragment:
        raise InvalidArgument(field, "must not contain a query or fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise InvalidArgument(field, "must use https (plain http is allowed only to loopback)")
    return value.rstrip("/")


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0 or value > 500:
        raise InvalidArgument(field, "must be between 0 and 500")
    return value or 50


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
