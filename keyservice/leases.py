"""Key leases for the proxy: resolve which key serves a tenant's request, read and decrypt it, audit it.

Resolution order (documented in the README):
  1. an explicit credential_id, if the request names one (it must belong to the tenant's scope chain);
  2. the user's credentials for the provider (user + project, then user org-wide);
  3. the project's credentials;
  4. the org's credentials;
  5. the platform's key from the environment (OPENAI_API_KEY, …), only if the org allows platform fallback.
Within a level the primary credential comes first, then the oldest. Inactive credentials and credentials
marked invalid are skipped, as are those the caller asks to exclude (failover after a provider 401/403).

A cloud credential's lease carries what keyservice derived from its stored secret (keyservice/derive/: STS
session credentials, an access token), never the secret. When the cloud refuses the stored secret itself, the
credential is marked invalid as a confirmed provider 401 does (health, audit, revocation) and the lease fails over
to the next credential in the order above; a named credential fails with FAILED_PRECONDITION instead.

A budget of the request's scope and the lease's key source at its hard limit refuses the lease with
RESOURCE_EXHAUSTED naming the budget (keyservice/usage/budgets.py), before any secret is read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import structlog

from byokcommon.egress import EgressPolicy
from byokcommon.redaction import redact_text
from keyservice import audit, validation
from keyservice.audit_writer import AuditWriter
from keyservice.derive import AwsSession, Derivations, DeriveSettings, LeaseCredential
from keyservice.errors import (
    CredentialRejected,
    FailedPrecondition,
    InvalidArgument,
    KeyServiceError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from keyservice.providers import PROVIDERS, ProviderSpec, get_provider, provider_for_model
from keyservice.store import CredentialRow, Store
from keyservice.vault import VaultClient

_log = structlog.get_logger("byok.leases")


@dataclass(frozen=True)
class LeaseRequest:
    org_id: str
    project_id: str
    user_id: str
    provider: str
    model: str
    credential_id: str
    caller_identity: str
    exclude: frozenset[str]


@dataclass(frozen=True)
class Lease:
    lease_id: str
    expires_at: dt.datetime
    key_source: str  # "tenant" | "platform"
    credential_id: str
    provider: str
    family: str
    api_key: str
    api_base: str
    default_model: str
    secret_version: int
    auth_scheme: str = ""  # keyservice/cloud_fields.py: "", "api_key", "bearer", "aws_sigv4"
    aws: AwsSession | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the key
        return f"Lease({self.lease_id}, {self.provider}, credential={self.credential_id or 'platform'})"


class ReachableModel(NamedTuple):
    provider: str
    model: str
    key_source: str  # "tenant" | "platform"
    credential_id: str


# Marks a credential invalid: (actor, credential_id, health, action=…, **details), as CredentialManager.record_health.
MarkHealth = Callable[..., Any]
# Admits a lease of (org_id, project_id, user_id, key_source) or raises ResourceExhausted: the budgets' check
# (keyservice/usage/budgets.py), before any secret is read.
Admit = Callable[[str, str, str, str], None]


class LeaseIssuer:
    def __init__(self, store: Store, vault: VaultClient, *, ttl_seconds: int, platform_keys: dict[str, str],
                 provider_base_urls: dict[str, str], audit_writer: AuditWriter | None = None,
                 derivations: Derivations | None = None, mark_health: MarkHealth | None = None,
                 admit: Admit | None = None) -> None:
        self.store = store
        self._admit = admit
        self._audit = audit_writer.add if audit_writer is not None else store.append_audit
        self.vault = vault
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self._platform_keys = platform_keys
        self._base_urls = provider_base_urls
        self.derivations = derivations or Derivations(DeriveSettings(), EgressPolicy(), lease_ttl=self.ttl)
        self._mark_health = mark_health

    def issue(self, actor: str, req: LeaseRequest) -> Lease:
        self._check_caller(actor, req)
        row: CredentialRow | None
        if req.credential_id:
            validation.credential_id(req.credential_id)
            row = self._explicit(actor, req)
            spec = get_provider(row.provider)
        else:
            spec = self._provider(req)
            row = self._resolve(req, spec)
        refused: set[str] = set()
        while row is not None:
            try:
                return self._tenant_lease(actor, req, row, spec)
            except CredentialRejected as exc:
                self._refused(actor, req, row, exc)
                if req.credential_id:
                    raise FailedPrecondition(f"credential {row.credential_id}: {exc.message}; it is now marked "
                                             "invalid") from None
                refused.add(row.credential_id)
                row = self._resolve(req, spec, refused)
        return self._platform_lease(actor, req, spec)

    def _tenant_lease(self, actor: str, req: LeaseRequest, row: CredentialRow, spec: ProviderSpec) -> Lease:
        self._admitted(actor, req, "tenant")
        carried = self.derivations.cached(row, spec)  # a warm derived credential needs no Vault read
        if carried is None:
            secret = self.vault.read_fields(row.vault_path, row.secret_version, org_id=row.org_id)
            carried = self.derivations.lease_credential(row, spec, secret)
            del secret
        expires_at = audit.now() + self.ttl
        if carried.expires_at is not None:
            expires_at = min(expires_at, carried.expires_at)  # never past the derived credential's own end
        lease = Lease(
            lease_id="lease_" + uuid.uuid4().hex, expires_at=expires_at, key_source="tenant",
            credential_id=row.credential_id, provider=row.provider, family=spec.family, api_key=carried.api_key,
            api_base=row.api_base or self._base(spec, row.settings),
            default_model=row.default_model or spec.default_model, secret_version=row.secret_version,
            auth_scheme=carried.auth_scheme, aws=carried.aws, settings=carried.settings)
        self._audit(audit.event(actor, "lease.issue", credential_id=row.credential_id, **_scope(req),
                                lease_id=lease.lease_id, caller=req.caller_identity, provider=row.provider,
                                secret_version=row.secret_version, **_derived(carried)))
        return lease

    def _refused(self, actor: str, req: LeaseRequest, row: CredentialRow, exc: CredentialRejected) -> None:
        """The cloud refused the stored secret: the credential goes invalid exactly as after a provider's confirmed
        401 (health, audit event, 'invalid' revocation to every proxy). If that cannot be recorded now, the lease
        still fails over; the next lease's derivation finds the same answer."""
        details = {"cloud": exc.cloud, "reason": exc.reason, "confirmed": True}
        self._audit_refusal(actor, req, "credential_rejected", credential_id=row.credential_id, reason=exc.reason)
        if self._mark_health is None:
            return
        try:
            self._mark_health(actor, row.credential_id, "invalid", action="credential.derive_refused", **details)
        except KeyServiceError as error:
            _log.warning("lease.mark_invalid_failed", credential_id=row.credential_id, error=error.message)

    def reachable_models(self, actor: str, req: LeaseRequest) -> list[ReachableModel]:
        """The models the tenant's requests can reach, per provider in name order: each resolvable credential's
        default model (most specific first), then the platform key's when the org allows fallback and no
        credential of the tenant serves that provider. Reads no secret and issues no lease."""
        self._check_caller(actor, req)
        fallback = self.store.get_org_policy(req.org_id)
        # One query (an empty provider matches every provider), in resolution order; grouped by provider here.
        candidates = self.store.lease_candidates(org_id=req.org_id, project_id=req.project_id,
                                                 user_id=req.user_id, provider="")
        out: list[ReachableModel] = []
        for name in known_provider_names():
            spec = PROVIDERS[name]
            rows = [row for row in candidates if row.provider == name]
            out.extend(ReachableModel(name, row.default_model or spec.default_model, "tenant", row.credential_id)
                       for row in rows)
            if not rows and fallback and self._platform_keys.get(spec.platform_key_env):
                out.append(ReachableModel(name, spec.default_model, "platform", ""))
        return out

    def _check_caller(self, actor: str, req: LeaseRequest) -> None:
        validation.scope_id(req.org_id, "scope.org_id", required=True)
        validation.scope_id(req.project_id, "scope.project_id")
        validation.scope_id(req.user_id, "scope.user_id")
        validation.identity(req.caller_identity)
        if not self.store.is_bound(req.caller_identity, req.org_id, req.project_id):
            self._audit_refusal(actor, req, "caller_not_bound")
            # The identity is masked if key-shaped: a key pasted into this field must not be echoed or logged.
            raise PermissionDenied(f"caller {redact_text(req.caller_identity)} is not bound to org {req.org_id}"
                                   + (f" project {req.project_id}" if req.project_id else ""))

    def _provider(self, req: LeaseRequest) -> ProviderSpec:
        if req.provider:
            return requested_provider(req.provider)
        if not req.model:
            raise InvalidArgument("provider", "provider or model is required")
        validation.model(req.model, "model")
        try:
            return provider_for_model(req.model)
        except InvalidArgument:
            # Re-raised without the model name, which the generic message echoes (see requested_provider).
            raise InvalidArgument("model", "no provider serves this model; name the provider explicitly") from None

    def _explicit(self, actor: str, req: LeaseRequest) -> CredentialRow:
        # Every refusal is audited, as on the resolved path: a proxy still asking for a revoked or deleted key
        # by its id is exactly what an operator needs to see.
        try:
            row = self.store.get_credential(req.credential_id)
        except NotFound:
            self._audit_refusal(actor, req, "credential_not_found", credential_id=req.credential_id)
            raise
        in_chain = row.org_id == req.org_id and row.project_id in ("", req.project_id) and \
            row.user_id in ("", req.user_id)
        if not in_chain:
            self._audit_refusal(actor, req, "credential_out_of_scope", credential_id=req.credential_id)
            raise NotFound(f"credential {req.credential_id} not found in this tenant's scope")
        if not row.active or row.health == "invalid":
            self._audit_refusal(actor, req, "credential_inactive" if not row.active else "credential_invalid",
                                credential_id=req.credential_id)
            raise NotFound(f"credential {req.credential_id} is inactive or invalid")
        return row

    def _resolve(self, req: LeaseRequest, spec: ProviderSpec, refused: frozenset[str] | set[str] = frozenset()
                 ) -> CredentialRow | None:
        for row in self.store.lease_candidates(org_id=req.org_id, project_id=req.project_id,
                                               user_id=req.user_id, provider=spec.name):
            if row.credential_id not in req.exclude and row.credential_id not in refused:
                return row
        return None

    def _platform_lease(self, actor: str, req: LeaseRequest, spec: ProviderSpec) -> Lease:
        key = self._platform_keys.get(spec.platform_key_env, "")
        if not key or not self.store.get_org_policy(req.org_id):
            self._audit_refusal(actor, req, "no_usable_credential", provider=spec.name)
            raise NotFound(f"no usable {spec.name} credential for org {req.org_id}"
                           + ("" if key else "") + " (and platform fallback is not available)")
        self._admitted(actor, req, "platform")
        lease = Lease(
            lease_id="lease_" + uuid.uuid4().hex, expires_at=audit.now() + self.ttl, key_source="platform",
            credential_id="", provider=spec.name, family=spec.family, api_key=key, api_base=self._base(spec),
            default_model=spec.default_model, secret_version=0)
        self._audit(audit.event(actor, "lease.issue", **_scope(req), lease_id=lease.lease_id,
                                caller=req.caller_identity, provider=spec.name, key_source="platform"))
        return lease

    def _base(self, spec: ProviderSpec, settings: Mapping[str, str] | None = None) -> str:
        return self._base_urls.get(spec.name) or spec.api_base_for(settings or {})

    def _admitted(self, actor: str, req: LeaseRequest, key_source: str) -> None:
        """A budget at its hard limit refuses the lease (audited, as every refusal is)."""
        if self._admit is None:
            return
        try:
            self._admit(req.org_id, req.project_id, req.user_id, key_source)
        except ResourceExhausted:
            self._audit_refusal(actor, req, "budget_exhausted", key_source=key_source)
            raise

    def _audit_refusal(self, actor: str, req: LeaseRequest, why: str, **details: Any) -> None:
        self._audit(audit.event(actor, "lease.refuse", **_scope(req), outcome=why,
                                caller=redact_text(req.caller_identity), **details))


def _derived(carried: LeaseCredential) -> dict[str, str]:
    """What a lease event says of how the lease authenticates (nothing for a key in the family's header)."""
    return {"auth_scheme": carried.auth_scheme} if carried.auth_scheme else {}


def _scope(req: LeaseRequest) -> dict[str, str]:
    """The tenant scope a lease event concerns: the request's (for an explicit credential, its chain)."""
    return {"org_id": req.org_id, "project_id": req.project_id, "user_id": req.user_id}


def requested_provider(name: str, field: str = "provider") -> ProviderSpec:
    """get_provider() for names that come from a request: an unknown name is not echoed back (providers'
    own message quotes it, and a key pasted into the field would land in the error and the RPC log)."""
    if name and name not in PROVIDERS:
        raise InvalidArgument(field, f"unknown provider; known: {', '.join(sorted(PROVIDERS))}")
    return get_provider(name, field)


def known_provider_names() -> list[str]:
    return sorted(PROVIDERS)
