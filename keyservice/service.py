"""The KeyService gRPC servicer: checks input, runs the blocking work (Vault, DB) in a bounded thread pool,
and turns results into protobuf messages. Role checks happen before this, in the interceptor."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from byok.keys.v1 import key_service_pb2 as pb
from byok.keys.v1 import key_service_pb2_grpc as pb_grpc
from byokcommon.egress import EgressPolicy, PinningResolver
from byokcommon.provider_answers import reported_rejection_counts
from byokcommon.tls import peer_identity
from keyservice import audit, cloud_fields, convert, validation
from keyservice.audit_writer import AuditWriter
from keyservice.credentials import CredentialManager, NewCredential
from keyservice.errors import CredentialRejected, FailedPrecondition, InvalidArgument, KeyServiceError, Unavailable
from keyservice.leases import LeaseIssuer, LeaseRequest, requested_provider
from keyservice.providers import PROVIDERS, ProviderSpec, get_provider
from keyservice.revocation_feed import RevocationFeed
from keyservice.store import CredentialRow, Store
from keyservice.tenancy import Tenancy
from keyservice.usage import UsageService
from keyservice.usage.ratelimit_rpcs import RateLimitRpcs, rate_limit_usage_pb
from keyservice.usage.rpcs import UsageRpcs
from keyservice.verify import verify_key

T = TypeVar("T")

KEY_SOURCE_TO_PB = {"tenant": pb.KEY_SOURCE_TENANT, "platform": pb.KEY_SOURCE_PLATFORM}
_LEASE_ID = re.compile(r"lease_[0-9a-f]{32}")
_PROVIDER_REASON = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# A failure is reported while the lease is live or just after (the proxy reports the 401 it got with it).
_LEASE_AUDIT_SLACK = dt.timedelta(minutes=1)
# How long another replica may hold a lease event before its audit writer flushes it (AuditWriter's interval,
# with room for a slow commit).
_OTHER_REPLICA_BATCH_SECONDS = 0.25
_HEALTHS = {pb.CREDENTIAL_HEALTH_INVALID: "invalid"}


class KeyServicer(UsageRpcs, RateLimitRpcs, pb_grpc.KeyServiceServicer):
    """`usage`: usage, prices and budgets (keyservice/usage/rpcs.py has their RPCs); None answers them UNAVAILABLE."""

    def __init__(self, *, store: Store, credentials: CredentialManager, leases: LeaseIssuer,
                 feed: RevocationFeed, executor: ThreadPoolExecutor, verify_timeout: float,
                 provider_base_urls: dict[str, str], audit_writer: AuditWriter | None = None,
                 on_lease: Callable[[str, str], None] | None = None, egress: EgressPolicy | None = None,
                 usage: UsageService | None = None) -> None:
        self.usage = usage
        self.audit_writer = audit_writer
        self.on_lease = on_lease
        self.store = store
        self.tenancy = Tenancy(store)
        self.credentials = credentials
        self.leases = leases
        self.feed = feed
        self.executor = executor
        self.verify_timeout = verify_timeout
        self.base_urls = provider_base_urls
        self.egress = egress or EgressPolicy()
        self.resolver = PinningResolver(self.egress)  # verify calls go only to checked, pinned addresses
        self._confirming: set[asyncio.Future[Any]] = set()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work off the event loop (the adapters it calls translate their libraries' errors)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def _lease_was_issued(self, lease_id: str, credential_id: str, caller: str) -> bool:
        """Whether this lease of this credential went to `caller` within a lease lifetime. Lease events are
        written in batches: ours are flushed first; another replica's land within its batch interval, so a miss
        is looked up once more after that interval before it counts."""
        if self.audit_writer is not None:
            await self._run(self.audit_writer.flush)
        since = audit.now() - self.leases.ttl - _LEASE_AUDIT_SLACK
        for attempt in range(2):
            if await self._run(self.store.lease_was_issued, lease_id, credential_id=credential_id, caller=caller,
                               since=since):
                return True
            if attempt == 0:
                await asyncio.sleep(_OTHER_REPLICA_BATCH_SECONDS)
        return False

    # -- management -----------------------------------------------------------------------------------
    async def CreateCredential(self, request: pb.CreateCredentialRequest, context: grpc.aio.ServicerContext
                               ) -> pb.CreateCredentialResponse:
        new = _new_credential(request)
        row = await self._run(self.credentials.create, peer_identity(context), new, _secret(request))
        return pb.CreateCredentialResponse(credential=convert.credential(row))

    async def RegisterCredential(self, request: pb.RegisterCredentialRequest, context: grpc.aio.ServicerContext
                                 ) -> pb.RegisterCredentialResponse:
        new = _new_credential(request)
        path = validation.vault_path(request.vault_path)
        row = await self._run(self.credentials.register, peer_identity(context), new, path)
        return pb.RegisterCredentialResponse(credential=convert.credential(row))

    async def GetCredential(self, request: pb.GetCredentialRequest, context: grpc.aio.ServicerContext
                            ) -> pb.GetCredentialResponse:
        row = await self._run(self.store.get_credential, validation.credential_id(request.credential_id))
        return pb.GetCredentialResponse(credential=convert.credential(row))

    async def ListCredentials(self, request: pb.ListCredentialsRequest, context: grpc.aio.ServicerContext
                              ) -> pb.ListCredentialsResponse:
        if request.provider:
            requested_provider(request.provider)
        rows, token = await self._run(
            self.store.list_credentials, org_id=validation.scope_id(request.org_id, "org_id"),
            project_id=validation.scope_id(request.project_id, "project_id"),
            user_id=validation.scope_id(request.user_id, "user_id"), provider=request.provider,
            active=request.active if request.HasField("active") else None,
            page_size=validation.page_size(request.page_size), page_token=request.page_token)
        return pb.ListCredentialsResponse(credentials=[convert.credential(r) for r in rows], next_page_token=token)

    async def UpdateCredential(self, request: pb.UpdateCredentialRequest, context: grpc.aio.ServicerContext
                               ) -> pb.UpdateCredentialResponse:
        credential_id = validation.credential_id(request.credential_id)
        changes: dict[str, Any] = {}
        if request.HasField("name"):
            changes["name"] = validation.name(request.name)
        if request.HasField("api_base"):
            changes["api_base"] = validation.api_base(request.api_base)
        if request.HasField("default_model"):
            changes["default_model"] = validation.model(request.default_model)
        if request.HasField("primary"):
            changes["primary"] = request.primary
        row = await self._run(self.credentials.update, peer_identity(context), credential_id, changes)
        return pb.UpdateCredentialResponse(credential=convert.credential(row))

    async def RotateCredentialSecret(self, request: pb.RotateCredentialSecretRequest,
                                     context: grpc.aio.ServicerContext) -> pb.RotateCredentialSecretResponse:
        credential_id = validation.credential_id(request.credential_id)
        if request.expected_version < 0:
            raise InvalidArgument("expected_version", "must not be negative")
        row = await self._run(self.credentials.rotate, peer_identity(context), credential_id, _secret(request),
                              request.expected_version)
        return pb.RotateCredentialSecretResponse(credential=convert.credential(row))

    async def ActivateCredential(self, request: pb.ActivateCredentialRequest, context: grpc.aio.ServicerContext
                                 ) -> pb.ActivateCredentialResponse:
        row = await self._run(self.credentials.set_active, peer_identity(context),
                              validation.credential_id(request.credential_id), True)
        return pb.ActivateCredentialResponse(credential=convert.credential(row))

    async def DeactivateCredential(self, request: pb.DeactivateCredentialRequest,
                                   context: grpc.aio.ServicerContext) -> pb.DeactivateCredentialResponse:
        row = await self._run(self.credentials.set_active, peer_identity(context),
                              validation.credential_id(request.credential_id), False)
        return pb.DeactivateCredentialResponse(credential=convert.credential(row))

    async def DeleteCredential(self, request: pb.DeleteCredentialRequest, context: grpc.aio.ServicerContext
                               ) -> pb.DeleteCredentialResponse:
        await self._run(self.credentials.delete, peer_identity(context),
                        validation.credential_id(request.credential_id))
        return pb.DeleteCredentialResponse()

    async def VerifyCredential(self, request: pb.VerifyCredentialRequest, context: grpc.aio.ServicerContext
                               ) -> pb.VerifyCredentialResponse:
        credential_id = validation.credential_id(request.credential_id)
        health, status = await self._verify(await self._run(self.store.get_credential, credential_id))
        row = await self._run(self.credentials.record_health, peer_identity(context), credential_id, health,
                              action="credential.verify", http_status=status)
        return pb.VerifyCredentialResponse(credential=convert.credential(row), http_status=status)

    async def _verify(self, row: CredentialRow) -> tuple[str, int]:
        """The provider's own answer to the stored key (its list-models call), sent only where the api_base and
        egress rules allow (a row stored before them is refused with FAILED_PRECONDITION). A cloud credential
        keyservice derives from is checked by a fresh derivation: the cloud's token service judges the secret."""
        spec = get_provider(row.provider)
        if spec.fields:
            return await self._verify_cloud(row, spec)
        if row.api_base:
            try:
                spec.check_api_base(row.api_base, self.egress)
            except InvalidArgument as exc:
                raise FailedPrecondition(f"{exc.message}; update the credential's api_base") from None
        api_key = await self._run(self.credentials.vault.read_secret, row.vault_path, row.secret_version,
                                  org_id=row.org_id)
        api_base = row.api_base or self.base_urls.get(spec.name) or spec.default_api_base
        try:
            return await self._run(verify_key, spec.name, spec.family, api_base, api_key,
                                   timeout=self.verify_timeout, resolver=self.resolver)
        finally:
            del api_key

    async def _verify_cloud(self, row: CredentialRow, spec: ProviderSpec) -> tuple[str, int]:
        derivations = self.leases.derivations
        secret = await self._run(self.credentials.vault.read_fields, row.vault_path, row.secret_version,
                                 org_id=row.org_id)
        try:
            kind = cloud_fields.derivation(spec, set(secret))
            if not kind:
                raise FailedPrecondition(f"VerifyCredential checks credentials keyservice derives from; {spec.title} "
                                         "keys are checked by the provider on first use")
            await self._run(derivations.derive, kind, row, secret)
        except CredentialRejected:
            return "invalid", 401
        except Unavailable:
            return "unreachable", 0
        finally:
            del secret
        return "active", 200

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
                              ) -> pb.ListAuditEventsResponse:
        since = _since(request) if request.HasField("since") else None
        if self.audit_writer is not None:
            await self._run(self.audit_writer.flush)  # read-your-writes for batched lease events
        rows, token = await self._run(
            self.store.list_audit, org_id=validation.scope_id(request.org_id, "org_id"),
            project_id=validation.scope_id(request.project_id, "project_id"),
            user_id=validation.scope_id(request.user_id, "user_id"),
            credential_id=validation.credential_id(request.credential_id) if request.credential_id else "",
            action=request.action[:64], actor=request.actor[:512], since=since,
            page_size=validation.page_size(request.page_size), page_token=request.page_token)
        return pb.ListAuditEventsResponse(events=[convert.audit_event(r) for r in rows], next_page_token=token)

    async def ListProviders(self, request: pb.ListProvidersRequest, context: grpc.aio.ServicerContext
                            ) -> pb.ListProvidersResponse:
        return pb.ListProvidersResponse(providers=[
            pb.Provider(name=p.name, default_api_base=self.base_urls.get(p.name) or p.default_api_base,
                        default_model=p.default_model, model_pattern=p.model_pattern, key_format=p.key_format,
                        platform_key_env=p.platform_key_env, api_family=p.family, display_name=p.title,
                        fields=[pb.ProviderField(name=f.name, secret=f.secret, required=f.required,
                                                 description=f.description) for f in p.fields])
            for p in PROVIDERS.values()])

    async def SetOrgPolicy(self, request: pb.SetOrgPolicyRequest, context: grpc.aio.ServicerContext
                           ) -> pb.SetOrgPolicyResponse:
        org_id = validation.scope_id(request.policy.org_id, "policy.org_id", required=True)
        allow = request.policy.allow_platform_fallback
        await self._run(self.tenancy.set_platform_fallback, peer_identity(context), org_id, allow)
        return pb.SetOrgPolicyResponse(policy=pb.OrgPolicy(org_id=org_id, allow_platform_fallback=allow))

    async def GetOrgPolicy(self, request: pb.GetOrgPolicyRequest, context: grpc.aio.ServicerContext
                           ) -> pb.GetOrgPolicyResponse:
        org_id = validation.scope_id(request.org_id, "org_id", required=True)
        allow = await self._run(self.tenancy.platform_fallback, org_id)
        return pb.GetOrgPolicyResponse(policy=pb.OrgPolicy(org_id=org_id, allow_platform_fallback=allow))

    async def CreateCallerBinding(self, request: pb.CreateCallerBindingRequest,
                                  context: grpc.aio.ServicerContext) -> pb.CreateCallerBindingResponse:
        b = request.binding
        caller = validation.identity(b.caller_identity, "binding.caller_identity")
        org_id = validation.scope_id(b.org_id, "binding.org_id", required=True)
        project_id = validation.scope_id(b.project_id, "binding.project_id")
        row = await self._run(self.tenancy.bind, peer_identity(context), caller, org_id, project_id)
        return pb.CreateCallerBindingResponse(binding=convert.binding(row))

    async def DeleteCallerBinding(self, request: pb.DeleteCallerBindingRequest,
                                  context: grpc.aio.ServicerContext) -> pb.DeleteCallerBindingResponse:
        caller = validation.identity(request.caller_identity)
        org_id = validation.scope_id(request.org_id, "org_id", required=True)
        project_id = validation.scope_id(request.project_id, "project_id")
        await self._run(self.tenancy.unbind, peer_identity(context), caller, org_id, project_id)
        return pb.DeleteCallerBindingResponse()

    async def ListCallerBindings(self, request: pb.ListCallerBindingsRequest,
                                 context: grpc.aio.ServicerContext) -> pb.ListCallerBindingsResponse:
        caller = validation.identity(request.caller_identity) if request.caller_identity else ""
        rows = await self._run(self.tenancy.bindings, caller=caller,
                               org_id=validation.scope_id(request.org_id, "org_id"))
        return pb.ListCallerBindingsResponse(bindings=[convert.binding(r) for r in rows])

    async def RevokeOrg(self, request: pb.RevokeOrgRequest, context: grpc.aio.ServicerContext
                        ) -> pb.RevokeOrgResponse:
        org_id = validation.scope_id(request.org_id, "org_id", required=True)
        rows = await self._run(self.tenancy.revoke_org, peer_identity(context), org_id)
        return pb.RevokeOrgResponse(deactivated_count=len(rows))

    async def RewrapSecrets(self, request: pb.RewrapSecretsRequest, context: grpc.aio.ServicerContext
                            ) -> pb.RewrapSecretsResponse:
        org_id = validation.scope_id(request.org_id, "org_id")
        count, lowest = await self._run(self.credentials.rewrap_all, peer_identity(context), org_id)
        return pb.RewrapSecretsResponse(rewrapped_count=count, min_transit_key_version=lowest)

    # -- data plane -----------------------------------------------------------------------------------
    async def IssueKeyLease(self, request: pb.IssueKeyLeaseRequest, context: grpc.aio.ServicerContext
                            ) -> pb.IssueKeyLeaseResponse:
        for i, cid in enumerate(request.exclude_credential_ids):
            validation.credential_id(cid, f"exclude_credential_ids[{i}]")
        req = LeaseRequest(
            org_id=request.scope.org_id, project_id=request.scope.project_id, user_id=request.scope.user_id,
            provider=request.provider, model=request.model, credential_id=request.credential_id,
            caller_identity=request.caller_identity, exclude=frozenset(request.exclude_credential_ids))
        lease = await self._run(self.leases.issue, peer_identity(context), req)
        if self.on_lease is not None:
            self.on_lease(lease.provider, lease.key_source)
        # The scope's rate limits, so the proxy admits its requests without asking (docs/usage.md).
        limits = rate_limit_usage_pb(await self._run(self.usage.rates.for_scope, req.org_id, req.project_id,
                                                     req.user_id)) if self.usage is not None else []
        return pb.IssueKeyLeaseResponse(
            lease_id=lease.lease_id, expire_time=convert.timestamp(lease.expires_at),
            key_source=KEY_SOURCE_TO_PB[lease.key_source], credential_id=lease.credential_id,
            provider=lease.provider, api_key=lease.api_key, api_base=lease.api_base,
            default_model=lease.default_model, secret_version=lease.secret_version, api_family=lease.family,
            auth_scheme=lease.auth_scheme, aws_credentials=convert.aws_session(lease.aws), settings=lease.settings,
            rate_limits=limits)

    async def ListTenantModels(self, request: pb.ListTenantModelsRequest, context: grpc.aio.ServicerContext
                               ) -> pb.ListTenantModelsResponse:
        req = LeaseRequest(
            org_id=request.scope.org_id, project_id=request.scope.project_id, user_id=request.scope.user_id,
            provider="", model="", credential_id="", caller_identity=request.caller_identity, exclude=frozenset())
        models = await self._run(self.leases.reachable_models, peer_identity(context), req)
        return pb.ListTenantModelsResponse(models=[
            pb.TenantModel(provider=m.provider, model=m.model, key_source=KEY_SOURCE_TO_PB[m.key_source],
                           credential_id=m.credential_id) for m in models])

    async def WatchRevocations(self, request: pb.WatchRevocationsRequest, context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        queue = self.feed.subscribe()
        try:
            yield pb.WatchRevocationsResponse(ready=True, time=convert.timestamp(audit.now()))
            while (row := await queue.get()) is not None:  # None: this replica is stopping
                yield pb.WatchRevocationsResponse(
                    sequence=row.sequence,
                    reason=convert.REASON_TO_PB.get(row.reason, pb.REVOCATION_REASON_UNSPECIFIED),
                    credential_id=row.credential_id, org_id=row.org_id, caller_identity=row.caller_identity,
                    time=convert.timestamp(row.time))
        finally:
            self.feed.unsubscribe(queue)

    async def ReportKeyFailure(self, request: pb.ReportKeyFailureRequest, context: grpc.aio.ServicerContext
                               ) -> pb.ReportKeyFailureResponse:
        """A proxy's report of a provider refusing a leased key. The key is marked invalid only on the
        provider's structured bad-key evidence (byokcommon/provider_answers.py) confirmed by keyservice's own
        call to the provider: what a caller can make a provider say about its own request (an echoed field
        name, a policy 403) never takes the key out of service for the org's other callers."""
        credential_id = validation.credential_id(request.credential_id)
        if not 100 <= request.http_status <= 599:
            raise InvalidArgument("http_status", "must be an HTTP status code (100-599)")
        # Checked rather than truncated: the lease id goes into the audit log, and a key pasted into this
        # field would otherwise be stored there.
        if request.lease_id and not _LEASE_ID.fullmatch(request.lease_id):
            raise InvalidArgument("lease_id", "must look like lease_ followed by 32 hex digits")
        reason = request.provider_reason
        if reason and not _PROVIDER_REASON.fullmatch(reason):
            raise InvalidArgument("provider_reason", "must be 1-64 characters of letters, digits, '_', '.' or '-'")
        actor = peer_identity(context)
        if request.http_status in (401, 403) or reason:
            # Only the proxy that holds a lease of this credential may have it checked: otherwise any proxy
            # identity could make keyservice call providers with any tenant's key.
            if not request.lease_id:
                raise InvalidArgument("lease_id", "is required to report a rejected key")
            if not await self._lease_was_issued(request.lease_id, credential_id, actor):
                raise FailedPrecondition(f"lease_id: {request.lease_id} is not a lease of credential {credential_id} "
                                         "issued to you within the longest lease lifetime")
            # A derived token the provider refused (revoked at the cloud, say) is not leased again: the next lease
            # derives afresh. The stored secret is judged below, as for any key.
            self.leases.derivations.forget(credential_id)
        # Shielded: the confirmation (a provider call) finishes and is recorded even if the proxy stops waiting.
        confirm = asyncio.ensure_future(self._judge_report(actor, credential_id, request))
        self._confirming.add(confirm)
        confirm.add_done_callback(self._confirming.discard)
        row = await asyncio.shield(confirm)
        health = convert.HEALTH_TO_PB.get(row.health, pb.CREDENTIAL_HEALTH_UNSPECIFIED)
        return pb.ReportKeyFailureResponse(health=health)

    async def _judge_report(self, actor: str, credential_id: str, request: pb.ReportKeyFailureRequest
                            ) -> CredentialRow:
        row = await self._run(self.store.get_credential, credential_id)
        spec = get_provider(row.provider)
        reason, status = request.provider_reason, request.http_status
        details: dict[str, Any] = {"http_status": status, "lease_id": request.lease_id, "provider_reason": reason,
                                   "confirmed": False}
        if reason and reported_rejection_counts(spec.name, spec.family, status, reason) and row.health != "invalid":
            try:
                verified, verify_status = await self._verify(row)
            except KeyServiceError as exc:
                details["verify_error"] = exc.code.name
            else:
                details.update(verify_health=verified, verify_status=verify_status)
                if verified == "invalid":
                    details["confirmed"] = True
                    return await self._run(self.credentials.record_health, actor, credential_id, "invalid",
                                           action="credential.report_failure", **details)
        elif reason:
            details["ignored"] = "already invalid" if row.health == "invalid" else "not bad-key evidence"
        await self._run(self.store.append_audit, audit.credential_event(
            actor, "credential.report_failure", row, **details))
        return row


def _since(request: pb.ListAuditEventsRequest) -> Any:
    """The `since` filter as a datetime; a Timestamp outside 0001-9999 or with bad nanos is the caller's error
    (protobuf's conversion raises ValueError/OverflowError, which would otherwise surface as INTERNAL)."""
    try:
        return request.since.ToDatetime(tzinfo=audit.now().tzinfo)
    except (ValueError, OverflowError):
        raise InvalidArgument("since", "must be a timestamp between years 1 and 9999") from None


def _new_credential(request: Any) -> NewCredential:
    requested_provider(request.provider)
    scope = request.scope
    return NewCredential(
        provider=request.provider,
        org_id=validation.scope_id(scope.org_id, "scope.org_id", required=True),
        project_id=validation.scope_id(scope.project_id, "scope.project_id"),
        user_id=validation.scope_id(scope.user_id, "scope.user_id"),
        name=validation.name(request.name),
        api_base=validation.api_base(request.api_base),
        default_model=validation.model(request.default_model),
        primary=request.primary,
        settings=dict(request.settings),  # checked with the secret (keyservice/cloud_fields.py)
    )


def _secret(request: Any) -> str | dict[str, str]:
    """A Create or Rotate request's secret: its api_key, or its secret_fields (a cloud credential's)."""
    fields = dict(request.secret_fields)
    if fields and request.api_key:
        raise InvalidArgument("api_key", "give either api_key or secret_fields, not both")
    return fields or request.api_key


