"""Short-lived credentials derived from stored cloud secrets: the long-lived secret never leaves keyservice.

- bedrock with an access key pair: STS session credentials (`aws`, GetSessionToken or AssumeRole);
- azure_openai with an Entra ID application: an access token (`entra`, MSAL's client-credentials flow);
- vertex_ai: an OAuth2 access token (`google`, google-auth's service-account JWT grant);
- every other credential (a provider API key, a Bedrock API key, an Azure api-key) is leased as is.

`Derivations.lease_credential` turns a credential's stored secret into what its lease carries: the auth scheme,
the key or token, the AWS session, the credential's own expiry (a lease never outlives it) and the routing
settings. Derived credentials are cached per credential and secret version (keyservice/derive/cache.py) until
`REFRESH_MARGIN` plus a lease lifetime before they expire; `cached` answers a warm lease without reading Vault.
Each derivation is bounded by BYOK_DERIVE_TIMEOUT_SECONDS and runs on the caller's thread (keyservice runs leases
in its thread pool, off the event loop). `forget` drops a credential's derived credentials (the revocation feed
calls it on every replica). Errors: CredentialRejected (the cloud refused the stored secret), Unavailable,
FailedPrecondition (keyservice/errors.py); no library's text is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from byokcommon.egress import EgressPolicy
from keyservice import cloud_fields
from keyservice.derive.aws import StsDeriver
from keyservice.derive.azure import EntraDeriver
from keyservice.derive.cache import AwsSession, CacheKey, Derived, DerivedCache
from keyservice.derive.google import GoogleDeriver
from keyservice.derive.http import CheckedHttp
from keyservice.derive.settings import DeriveSettings
from keyservice.errors import FailedPrecondition
from keyservice.providers import ProviderSpec
from keyservice.store import CredentialRow

__all__ = ["AwsSession", "DeriveSettings", "Derivations", "LeaseCredential", "REFRESH_MARGIN"]

# How long before a derived credential's expiry it is replaced, on top of a lease lifetime: a lease issued from the
# cache always has its full lifetime, and the credential outlives it by at least this much (clock skew between
# keyservice, the proxy and the cloud, and a request that starts just before the lease ends).
REFRESH_MARGIN = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class LeaseCredential:
    """What a lease carries to authenticate upstream (IssueKeyLeaseResponse: auth_scheme, api_key,
    aws_credentials, settings)."""

    auth_scheme: str
    api_key: str = field(repr=False)  # the stored key, or a derived bearer token; "" with aws
    aws: AwsSession | None
    expires_at: dt.datetime | None  # a derived credential's own expiry; None for a stored key
    settings: dict[str, str]


class Derivations:
    """One per keyservice process; thread-safe."""

    def __init__(self, settings: DeriveSettings, policy: EgressPolicy, *, lease_ttl: dt.timedelta,
                 count: Callable[[str, str], None] | None = None) -> None:
        self.http = CheckedHttp(policy, ca_file=settings.ca_file)
        self.cache = DerivedCache(refresh_before=lease_ttl + REFRESH_MARGIN, count=count)
        self._sts = StsDeriver(settings, policy)
        self._google = GoogleDeriver(self.http, settings.timeout_seconds)
        self._entra = EntraDeriver(self.http, settings.entra_authority_host, settings.timeout_seconds)

    def cached(self, row: CredentialRow, spec: ProviderSpec) -> LeaseCredential | None:
        """A warm lease's credential straight from the cache (no Vault read), or None."""
        derived = self.cache.peek(_key(row))
        return None if derived is None else self._carried(spec, row, derived)

    def lease_credential(self, row: CredentialRow, spec: ProviderSpec, secret: Mapping[str, str]) -> LeaseCredential:
        """The credential a lease of `row` carries, given its stored secret (derived, or from the cache)."""
        names = set(secret)
        kind = cloud_fields.derivation(spec, names)
        if not kind:
            if not secret.get("api_key"):
                raise FailedPrecondition("vault secret has no api_key field")
            return LeaseCredential(cloud_fields.auth_scheme(spec, names), secret["api_key"], None, None,
                                   cloud_fields.routing_settings(spec, row.settings))
        derived = self.cache.get(_key(row), kind, lambda: self.derive(kind, row, secret))
        return self._carried(spec, row, derived)

    def derive(self, kind: str, row: CredentialRow, secret: Mapping[str, str]) -> Derived:
        """A fresh derivation, not cached (VerifyCredential's check of the stored secret)."""
        if kind == cloud_fields.DERIVE_STS:
            return self._sts.derive(row.credential_id, secret, row.settings)
        if kind == cloud_fields.DERIVE_ENTRA:
            return self._entra.derive(_key(row), secret, row.settings)
        return self._google.derive(secret)

    def forget(self, credential_id: str) -> None:
        self.cache.drop(credential_id)
        self._entra.forget(credential_id)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _carried(spec: ProviderSpec, row: CredentialRow, derived: Derived) -> LeaseCredential:
        settings = cloud_fields.routing_settings(spec, row.settings)
        if derived.project:
            settings.setdefault("project", derived.project)  # Vertex AI: the key's project unless one is set
        scheme = cloud_fields.AWS_SIGV4 if derived.aws is not None else cloud_fields.BEARER
        return LeaseCredential(scheme, derived.token, derived.aws, derived.expires_at, settings)


def _key(row: CredentialRow) -> CacheKey:
    return (row.credential_id, row.secret_version)
