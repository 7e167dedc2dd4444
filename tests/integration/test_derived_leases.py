"""Leases of cloud credentials carry only short-lived derived credentials: keyservice (real OpenBao, SQLite and
PostgreSQL) derives them from the stored secret through the token-service stand-ins of devstack/authfakes (a local
STS checking SigV4 with botocore, Google's token endpoint checking the JWT with google-auth, Entra ID for MSAL),
over loopback https.

Every field of the lease, for each kind; the derived AWS session works at STS; AssumeRole with an external id; the
derived-credential cache (hits and misses counted, one derivation per credential, a rotation or deactivation drops
it, a lease never outlives what it carries); a cloud's refusal of the stored secret marks the credential invalid as a
provider's confirmed 401 does and the lease fails over; an outage or a silent token service is UNAVAILABLE; the
egress policy over every derivation endpoint; VerifyCredential by a fresh derivation; leak canaries for every secret
field and every derived token (logs at DEBUG, errors, the database, audit rows); and lease latency with the
derivation cold and warm, printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.config
import botocore.session
import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from byokcommon.egress import EgressPolicy
from devstack.authfakes import AuthFakes, Reply, Role, shapes
from keyservice.derive import REFRESH_MARGIN, Derivations
from tests.integration.test_cloud_credentials import (
    ENDPOINT,
    Kinds,
    Running,
    cloud_settings,
    detail,
    running,
    serve_fakes,
    transit,
    unique,
)
from tests.integration.test_keyservice_leaks import hits, production_logging  # raw, hex, base64, URL forms
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities

E = grpc.StatusCode
_LEASE_ID = re.compile(r"lease_[0-9a-f]{32}")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthFakes]:
    yield from serve_fakes(tmp_path_factory.mktemp("authfakes"))


@pytest.fixture
def transit_mount(bao: BaoDevServer) -> Iterator[str]:
    yield from transit(bao)


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ks.db"


async def create_all(ks: Running, kinds: Kinds, org: str) -> dict[str, pb.Credential]:
    await ks.bind(org)
    return {name: await ks.create(provider, name, org, secret=secret, settings=settings)
            for name, (provider, secret, settings) in kinds.requests().items()}


def sample(ks: Running, derivation: str, outcome: str) -> float:
    value = ks.app.metrics.registry.get_sample_value("byok_derived_credentials_total",
                                                     {"derivation": derivation, "outcome": outcome})
    return value or 0.0


def caller_arn(fakes: AuthFakes, creds: pb.AwsSessionCredentials) -> str:
    """Ask the local STS who these session credentials are (it accepts the ones it issued)."""
    client = botocore.session.Session().create_client(
        "sts", region_name="us-east-1", endpoint_url=fakes.sts_server.base_url, verify=fakes.ca_file,
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token, config=botocore.config.Config(proxies={}))
    try:
        return str(client.get_caller_identity()["Arn"])
    finally:
        client.close()


class Forgotten:
    """A hook on Derivations.forget: the revocation feed's drop of a credential's derived credentials."""

    def __init__(self, derivations: Derivations) -> None:
        self.seen: dict[str, threading.Event] = {}
        inner = derivations.forget

        def forget(credential_id: str) -> None:
            inner(credential_id)
            self.seen.setdefault(credential_id, threading.Event()).set()
        derivations.forget = forget  # type: ignore[method-assign]

    async def wait(self, credential_id: str) -> None:
        event = self.seen.setdefault(credential_id, threading.Event())
        assert await asyncio.to_thread(event.wait, 5), f"{credential_id} was not forgotten"


# -- every field, each kind ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plain", "envelope"])
async def test_each_kind_leases_only_what_the_proxy_needs(mode: str, bao: BaoDevServer, ids: Identities,
                                                          tmp_path: Path, fakes: AuthFakes,
                                                          request: pytest.FixtureRequest) -> None:
    vault = {} if mode == "plain" else {"transit_key": unique("byok-derive"),
                                        "transit_mount": request.getfixturevalue("transit_mount")}
    kinds = Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes, vault=vault), ids) as ks:
        org = unique("fields")
        creds = await create_all(ks, kinds, org)
        leases = {name: await ks.lease(org, credential_id=cred.credential_id) for name, cred in creds.items()}
        ttl = dt.timedelta(seconds=ks.settings.lease_ttl_seconds)
    started = dt.datetime.now(dt.UTC)
    for name, lease in leases.items():
        cred = creds[name]
        assert _LEASE_ID.fullmatch(lease.lease_id) and lease.key_source == pb.KEY_SOURCE_TENANT
        assert (lease.credential_id, lease.provider, lease.secret_version) == (cred.credential_id, cred.provider, 1)
        assert lease.expire_time.ToDatetime(dt.UTC) <= started + ttl
        # The stored long-lived secrets never leave keyservice, in any field of any lease (the two kinds that are
        # leased as is carry their own key and nothing else).
        wire = lease.SerializeToString()
        carried = {"aws-apikey": kinds.bedrock_key, "azure-key": kinds.azure_key}.get(name)
        assert not [s for s in kinds.secrets() if s != carried and s.encode() in wire], name

    aws = leases["aws-keys"]
    assert (aws.api_family, aws.auth_scheme, aws.api_key) == ("bedrock", "aws_sigv4", "")
    assert aws.api_base == "https://bedrock-runtime.us-east-1.amazonaws.com" and dict(aws.settings) == \
        {"region": "us-east-1"}
    assert aws.default_model == "anthropic.claude-3-5-haiku-20241022-v1:0"
    session = aws.aws_credentials
    issued = fakes.sts.sessions[session.access_key_id]
    assert session.access_key_id.startswith("ASIA") and session.access_key_id != kinds.pair.access_key_id
    assert (session.secret_access_key, session.session_token) == (issued.secret_access_key, issued.session_token)
    assert session.expire_time.ToDatetime(dt.UTC) == issued.expires_at
    assert aws.expire_time.ToDatetime(dt.UTC) <= issued.expires_at
    assert caller_arn(fakes, session) == kinds.pair.arn  # the session works, as the user it came from

    key = leases["aws-apikey"]
    assert (key.auth_scheme, key.api_key, key.HasField("aws_credentials")) == ("bearer", kinds.bedrock_key, False)
    assert key.api_base == "https://bedrock-runtime.us-west-2.amazonaws.com" and dict(key.settings) == \
        {"region": "us-west-2"}

    azure = leases["azure-key"]
    assert (azure.api_family, azure.auth_scheme, azure.api_key) == ("openai", "api_key", kinds.azure_key)
    assert azure.api_base == ENDPOINT and dict(azure.settings) == {
        "endpoint": ENDPOINT, "api_version": "2024-10-21", "deployments": '{"gpt-4o-mini":"mini-prod"}'}

    app = leases["azure-app"]
    token = fakes.entra.tokens[app.api_key]
    assert (app.auth_scheme, token.client_id, token.tenant_id) == ("bearer", kinds.app.client_id, kinds.app.tenant_id)
    assert token.scope == "https://cognitiveservices.azure.com/.default"
    assert dict(app.settings) == {"endpoint": ENDPOINT}  # tenant_id and client_id are keyservice's business
    assert not app.HasField("aws_credentials") and app.expire_time.ToDatetime(dt.UTC) <= token.expires_at

    vertex = leases["vertex"]
    minted = fakes.google.tokens[vertex.api_key]
    info = json.loads(kinds.service_account)
    assert (vertex.api_family, vertex.auth_scheme, minted.client_email) == ("gemini", "bearer", info["client_email"])
    assert minted.scope == "https://www.googleapis.com/auth/cloud-platform"
    assert vertex.api_base == "https://us-central1-aiplatform.googleapis.com/v1"
    assert dict(vertex.settings) == {"location": "us-central1", "project": info["project_id"]}
    assert vertex.expire_time.ToDatetime(dt.UTC) <= minted.expires_at


async def test_assume_role_with_an_external_id(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                               fakes: AuthFakes) -> None:
    pair = fakes.sts.add_user(shapes.access_key_pair(user="byok-bedrock"))
    role = f"arn:aws:iam::210987654321:role/{unique('bedrock-invoke')}"
    fakes.sts.roles[role] = Role(role, frozenset({pair.arn}), external_id="acme-7f3e")
    secret = {"access_key_id": pair.access_key_id, "secret_access_key": pair.secret_access_key}
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        org = unique("assume")
        await ks.bind(org)
        good = await ks.create("bedrock", "role", org, secret=secret,
                               settings={"region": "eu-west-1", "role_arn": role, "external_id": "acme-7f3e"})
        wrong = await ks.create("bedrock", "wrong", org, secret=secret,
                                settings={"region": "eu-west-1", "role_arn": role, "external_id": "acme-0000"})
        lease = await ks.lease(org, credential_id=good.credential_id)
        assert dict(lease.settings) == {"region": "eu-west-1"}  # the role is keyservice's business
        assert caller_arn(fakes, lease.aws_credentials) == \
            f"arn:aws:sts::210987654321:assumed-role/{role.rsplit('/', 1)[1]}/byok-{good.credential_id}"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.lease(org, credential_id=wrong.credential_id)
        assert info.value.code() == E.FAILED_PRECONDITION and "AccessDenied" in detail(info)
        assert (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=wrong.credential_id))
                ).credential.health == pb.CREDENTIAL_HEALTH_INVALID


# -- the cache ------------------------------------------------------------------------------------------------------
async def test_derived_credentials_are_cached_per_secret_version(bao: BaoDevServer, ids: Identities,
                                                                 tmp_path: Path, fakes: AuthFakes) -> None:
    kinds, fresh = Kinds.made(fakes), Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        forgotten = Forgotten(ks.app.derivations)  # type: ignore[arg-type]
        org = unique("cache")
        creds = await create_all(ks, kinds, org)
        sts_before, entra_before, grants_before = (fakes.sts.calls.get("GetSessionToken", 0),
                                                   fakes.entra.token_requests, fakes.google.grants)
        first = {n: await ks.lease(org, credential_id=creds[n].credential_id) for n in ("aws-keys", "azure-app",
                                                                                        "vertex")}
        again = await asyncio.gather(*(ks.lease(org, credential_id=creds[n].credential_id)
                                       for n in ("aws-keys", "aws-keys", "azure-app", "vertex", "vertex")))
        assert fakes.sts.calls["GetSessionToken"] - sts_before == 1
        assert (fakes.entra.token_requests - entra_before, fakes.google.grants - grants_before) == (1, 1)
        assert again[0].aws_credentials == first["aws-keys"].aws_credentials
        assert {again[2].api_key, again[3].api_key} == {first["azure-app"].api_key, first["vertex"].api_key}
        for derivation, hits_ in (("aws_sts", 2), ("entra_id", 1), ("google_oauth2", 2)):
            assert (sample(ks, derivation, "miss"), sample(ks, derivation, "hit")) == (1, hits_), derivation

        # A rotation leases the new secret's credentials at once, and the old ones leave the cache.
        cid = creds["aws-keys"].credential_id
        await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
            credential_id=cid, secret_fields={"access_key_id": fresh.pair.access_key_id,
                                              "secret_access_key": fresh.pair.secret_access_key}))
        rotated = await ks.lease(org, credential_id=cid)
        assert rotated.secret_version == 2 and rotated.aws_credentials.access_key_id != \
            first["aws-keys"].aws_credentials.access_key_id
        assert caller_arn(fakes, rotated.aws_credentials) == fresh.pair.arn
        await forgotten.wait(cid)
        cache = ks.app.derivations.cache  # type: ignore[union-attr]
        assert cache.peek((cid, 1)) is None
        # A deactivation drops them too (every replica's, through the revocation feed).
        vertex = creds["vertex"].credential_id
        assert cache.peek((vertex, 1)) is not None
        await ks.admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=vertex))
        await forgotten.wait(vertex)
        assert cache.peek((vertex, 1)) is None


async def test_a_lease_never_outlives_its_derived_credential(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                             fakes: AuthFakes) -> None:
    """An hour-long lease of a 15-minute session ends with the session; the cache replaces a credential a lease
    lifetime plus five minutes before its end, so such a lease is derived afresh each time."""
    kinds = Kinds.made(fakes)
    settings = cloud_settings(bao, ids, sqlite(tmp_path), fakes, derive={"aws_session_seconds": 900},
                              lease_ttl_seconds=3600)
    async with running(settings, ids) as ks:
        org = unique("outlive")
        creds = await create_all(ks, kinds, org)
        lease = await ks.lease(org, credential_id=creds["aws-keys"].credential_id)
        session_end = lease.aws_credentials.expire_time.ToDatetime(dt.UTC)
        assert lease.expire_time.ToDatetime(dt.UTC) == session_end
        assert session_end - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=900)
        assert ks.app.derivations.cache.refresh_before == dt.timedelta(hours=1) + REFRESH_MARGIN  # type: ignore
        again = await ks.lease(org, credential_id=creds["aws-keys"].credential_id)
        assert again.aws_credentials.access_key_id != lease.aws_credentials.access_key_id


async def test_a_provider_refusing_a_derived_token_gets_a_fresh_one(bao: BaoDevServer, ids: Identities,
                                                                   tmp_path: Path, fakes: AuthFakes) -> None:
    """The proxy reports Vertex's 401 for a leased token (revoked at Google, say): the next lease derives anew, and
    the stored key, which Google still takes, stays in service."""
    kinds = Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        org = unique("report")
        creds = await create_all(ks, kinds, org)
        cid = creds["vertex"].credential_id
        first = await ks.lease(org, credential_id=cid)
        assert (await ks.lease(org, credential_id=cid)).api_key == first.api_key  # cached
        await ks.proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(
            lease_id=first.lease_id, credential_id=cid, http_status=401, provider_reason="UNAUTHENTICATED"))
        fresh = await ks.lease(org, credential_id=cid)
        assert fresh.api_key != first.api_key and fresh.api_key in fakes.google.tokens
        health = (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=cid))).credential.health
        assert health != pb.CREDENTIAL_HEALTH_INVALID


# -- refusals, outages ------------------------------------------------------------------------------------------------
async def test_a_refused_secret_marks_the_credential_invalid_and_the_lease_fails_over(
        bao: BaoDevServer, ids: Identities, database_url: str, fakes: AuthFakes) -> None:
    gone, good, wrong = (fakes.sts.add_user(shapes.access_key_pair()) for _ in range(3))
    fakes.sts.remove_user(gone.access_key_id)  # deleted in IAM: STS answers InvalidClientTokenId
    async with running(cloud_settings(bao, ids, database_url, fakes), ids) as ks:
        org = unique("failover")
        await ks.bind(org)
        region = {"region": "us-east-1"}
        primary = await ks.create("bedrock", "primary", org, primary=True, settings=region, secret={
            "access_key_id": gone.access_key_id, "secret_access_key": gone.secret_access_key})
        backup = await ks.create("bedrock", "backup", org, settings=region, secret={
            "access_key_id": good.access_key_id, "secret_access_key": good.secret_access_key})
        mistyped = await ks.create("bedrock", "mistyped", org, settings=region, secret={
            "access_key_id": wrong.access_key_id, "secret_access_key": shapes.access_key_pair().secret_access_key})
        watch = ks.proxy.WatchRevocations(pb.WatchRevocationsRequest())
        assert (await watch.read()).ready
        lease = await ks.lease(org, model="anthropic.claude-3-sonnet-20240229-v1:0")  # routed to bedrock
        assert lease.credential_id == backup.credential_id and lease.auth_scheme == "aws_sigv4"
        # The feed may still hand over the creations' own scope-changed events (committed before the watch began,
        # fanned out by the replica's PostgreSQL listener just after): the primary's invalidation is the one asked.
        event = await asyncio.wait_for(watch.read(), 5)
        while event.reason == pb.REVOCATION_REASON_SCOPE_CHANGED and event.credential_id != primary.credential_id:
            event = await asyncio.wait_for(watch.read(), 5)
        assert (event.credential_id, event.reason) == (primary.credential_id, pb.REVOCATION_REASON_INVALID)
        watch.cancel()
        now = (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=primary.credential_id))).credential
        assert now.health == pb.CREDENTIAL_HEALTH_INVALID
        events = (await ks.admin.ListAuditEvents(pb.ListAuditEventsRequest(
            credential_id=primary.credential_id))).events
        marked = [json.loads(e.details_json) for e in events if e.action == "credential.derive_refused"]
        assert marked == [{"cloud": "AWS STS", "reason": "InvalidClientTokenId", "confirmed": True,
                           "health": "invalid"}]
        assert any(e.action == "lease.refuse" and e.outcome == "credential_rejected" for e in events)
        # A credential named by id fails rather than fails over; a wrong secret is SignatureDoesNotMatch.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.lease(org, credential_id=mistyped.credential_id)
        assert info.value.code() == E.FAILED_PRECONDITION and "SignatureDoesNotMatch" in detail(info)
        # The next lease goes straight to the working credential.
        calls = fakes.sts.calls.get("GetSessionToken", 0)
        assert (await ks.lease(org, provider="bedrock")).credential_id == backup.credential_id
        assert fakes.sts.calls["GetSessionToken"] == calls  # from the cache


async def test_google_and_entra_refusals_mark_invalid_too(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                          fakes: AuthFakes) -> None:
    kinds = Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        org = unique("refused")
        creds = await create_all(ks, kinds, org)
        fakes.google.delete_key(kinds.service_account)  # invalid_grant from now on
        fakes.entra.remove_secret(kinds.app)  # AADSTS7000215 from now on
        for name, reason in (("vertex", "invalid_grant"), ("azure-app", "AADSTS7000215")):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ks.lease(org, credential_id=creds[name].credential_id)
            assert info.value.code() == E.FAILED_PRECONDITION and reason in detail(info)
            health = (await ks.admin.GetCredential(pb.GetCredentialRequest(
                credential_id=creds[name].credential_id))).credential.health
            assert health == pb.CREDENTIAL_HEALTH_INVALID
            assert sample(ks, "google_oauth2" if name == "vertex" else "entra_id", "error") == 1


async def test_an_outage_is_unavailable_and_leaves_the_credential_alone(bao: BaoDevServer, ids: Identities,
                                                                       tmp_path: Path, fakes: AuthFakes) -> None:
    kinds = Kinds.made(fakes)
    settings = cloud_settings(bao, ids, sqlite(tmp_path), fakes, derive={"timeout_seconds": 1.0})
    async with running(settings, ids) as ks:
        org = unique("outage")
        creds = await create_all(ks, kinds, org)
        failing = Reply(503, b"<ErrorResponse><Error><Code>ServiceUnavailable</Code></Error></ErrorResponse>",
                        "text/xml")
        fakes.sts_server.fail_next.extend([failing, failing])  # both of botocore's attempts
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.lease(org, credential_id=creds["aws-keys"].credential_id)
        assert info.value.code() == E.UNAVAILABLE and "AWS STS" in detail(info)
        # A token service that does not answer: UNAVAILABLE once the derivation's timeout (1 s here) has passed.
        for name, server in (("vertex", fakes.google_server), ("aws-keys", fakes.sts_server)):
            server.hold = threading.Event()
            try:
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as silent:
                    await ks.lease(org, credential_id=creds[name].credential_id)
                assert silent.value.code() == E.UNAVAILABLE and time.monotonic() - started < 4, name
            finally:
                server.hold.set()
                server.hold = None
        for name in ("aws-keys", "vertex"):
            cred = (await ks.admin.GetCredential(pb.GetCredentialRequest(
                credential_id=creds[name].credential_id))).credential
            assert cred.health == pb.CREDENTIAL_HEALTH_UNSPECIFIED  # not invalid: the cloud was down, not the key
            assert (await ks.lease(org, credential_id=cred.credential_id)).credential_id == cred.credential_id


# -- egress ---------------------------------------------------------------------------------------------------------
async def test_the_egress_policy_governs_every_derivation_endpoint(bao: BaoDevServer, ids: Identities,
                                                                  tmp_path: Path, fakes: AuthFakes) -> None:
    kinds = Kinds.made(fakes)
    dev = cloud_settings(bao, ids, sqlite(tmp_path), fakes)
    async with running(dev, ids) as ks:
        org = unique("egress")
        creds = await create_all(ks, kinds, org)
    # The same credentials under the production rules: the stand-ins' loopback token endpoints are refused, at
    # create (the key file's token_uri) and at lease time (rules may change after a key was stored).
    strict = EgressPolicy(allowed_hosts=("contoso-east.openai.azure.com",))
    sts_calls = fakes.sts.calls.get("GetSessionToken", 0)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes, egress=strict,
                                      vault={"kv_prefix": dev.vault.kv_prefix}), ids) as ks:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.create("vertex_ai", "again", org, secret={"service_account_json": kinds.service_account},
                            settings={"location": "us-central1"})
        assert info.value.code() == E.INVALID_ARGUMENT and "token_uri" in detail(info)
        grants = fakes.google.grants
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.lease(org, credential_id=creds["vertex"].credential_id)
        assert refused.value.code() == E.FAILED_PRECONDITION and "token_uri" in detail(refused)
        assert fakes.google.grants == grants  # nothing was sent
        for name in ("azure-app", "aws-keys"):  # the stand-ins' loopback Entra ID and STS
            with pytest.raises(grpc.aio.AioRpcError) as loopback:
                await ks.lease(org, credential_id=creds[name].credential_id)
            assert loopback.value.code() == E.FAILED_PRECONDITION and "not a public address" in detail(loopback)
        assert fakes.sts.calls.get("GetSessionToken", 0) == sts_calls


# -- VerifyCredential -------------------------------------------------------------------------------------------------
async def test_verify_derives_afresh(bao: BaoDevServer, ids: Identities, tmp_path: Path, fakes: AuthFakes) -> None:
    kinds = Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        org = unique("verify")
        creds = await create_all(ks, kinds, org)
        for name in ("aws-keys", "azure-app", "vertex"):
            answer = await ks.admin.VerifyCredential(pb.VerifyCredentialRequest(
                credential_id=creds[name].credential_id))
            assert (answer.credential.health, answer.http_status) == (pb.CREDENTIAL_HEALTH_ACTIVE, 200), name
        fakes.sts.remove_user(kinds.pair.access_key_id)
        answer = await ks.admin.VerifyCredential(pb.VerifyCredentialRequest(
            credential_id=creds["aws-keys"].credential_id))
        assert (answer.credential.health, answer.http_status) == (pb.CREDENTIAL_HEALTH_INVALID, 401)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.admin.VerifyCredential(pb.VerifyCredentialRequest(credential_id=creds["aws-apikey"].credential_id))
        assert info.value.code() == E.FAILED_PRECONDITION


# -- leak canaries -----------------------------------------------------------------------------------------------------
async def test_no_secret_field_or_derived_token_leaks(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                      fakes: AuthFakes, capfd: pytest.CaptureFixture[str]) -> None:
    kinds, fresh = Kinds.made(fakes), Kinds.made(fakes)
    database = tmp_path / "ks.db"
    texts: list[str] = []
    derived: list[str] = []
    with production_logging() as events:
        for name in ("botocore", "urllib3", "msal", "google.auth"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
        async with running(cloud_settings(bao, ids, f"sqlite:///{database}", fakes), ids) as ks:
            org = unique("leak")
            creds = await create_all(ks, kinds, org)
            for cred in creds.values():
                for _ in range(2):  # cold, then warm
                    lease = await ks.lease(org, credential_id=cred.credential_id)
                    derived += [lease.aws_credentials.secret_access_key, lease.aws_credentials.session_token]
                    if lease.auth_scheme == "bearer" and cred.name not in ("aws-apikey",):
                        derived.append(lease.api_key)
            second = fakes.entra.add_app(shapes.EntraApp(kinds.app.tenant_id, kinds.app.client_id,
                                                         fresh.app.client_secret))  # the app's new secret
            for name, (_, secret, _) in fresh.requests().items():
                texts.append(str(await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                    credential_id=creds[name].credential_id, secret_fields=secret))))
            for cred in creds.values():
                await ks.lease(org, credential_id=cred.credential_id)
            # Failures, with secrets in the request and refusals from the clouds.
            bad_inputs = [("bedrock", {"access_key_id": fresh.pair.secret_access_key,
                                       "secret_access_key": fresh.pair.secret_access_key}, {"region": "us-east-1"}),
                          ("azure_openai", {"client_secret": kinds.app.client_secret},
                           {"endpoint": ENDPOINT, "tenant_id": kinds.app.client_secret}),
                          ("vertex_ai", {"service_account_json": kinds.service_account[:-20]}, {"location": "global"})]
            for provider, secret, settings in bad_inputs:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await ks.create(provider, "bad", org, secret=secret, settings=settings)
                texts.append(f"{info.value.code()} {info.value.details()} {info.value.debug_error_string()}")
            fakes.sts.remove_user(fresh.pair.access_key_id)
            fakes.google.delete_key(fresh.service_account)
            fakes.entra.remove_secret(second)
            for name in ("aws-keys", "vertex", "azure-app"):
                ks.app.derivations.forget(creds[name].credential_id)  # type: ignore[union-attr]
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await ks.lease(org, credential_id=creds[name].credential_id)
                texts.append(f"{refused.value.details()} {refused.value.debug_error_string()}")
            audit = await ks.admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id=org, page_size=500))
            texts += [str(e) for e in audit.events]
            texts.append(str(await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id=org))))
    out, err = capfd.readouterr()
    secrets = {f"secret {i}": s for i, s in enumerate(kinds.secrets() + fresh.secrets())}
    secrets |= {f"derived {i}": t for i, t in enumerate(t for t in derived if t)}
    assert len(derived) >= 2 * 3 + 2  # AWS secrets and tokens, Entra and Google tokens, cold and warm
    assert hits(out + err, secrets) == []
    assert hits(json.dumps(events, default=str), secrets) == []
    assert hits("\n".join(texts), secrets) == []
    assert hits(database.read_bytes(), secrets) == []
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        assert hits(wal.read_bytes(), secrets) == []


# -- latency ---------------------------------------------------------------------------------------------------------
async def test_lease_latency_with_the_derivation_cold_and_warm(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                               fakes: AuthFakes) -> None:
    """Lease round trips through the real keyservice (mTLS gRPC, OpenBao, SQLite) with each derivation done anew
    (cold: the cache dropped first) and served from the cache (warm); a key leased as is for comparison."""
    kinds = Kinds.made(fakes)
    rounds = 25
    async with running(cloud_settings(bao, ids, sqlite(tmp_path), fakes), ids) as ks:
        org = unique("latency")
        creds = await create_all(ks, kinds, org)
        derivations = ks.app.derivations
        assert derivations is not None
        results: dict[str, tuple[float, float]] = {}
        for name in ("aws-keys", "azure-app", "vertex", "aws-apikey"):
            cid = creds[name].credential_id
            await ks.lease(org, credential_id=cid)  # connections and models warmed once
            cold, warm = [], []
            for _ in range(rounds):
                derivations.forget(cid)
                started = time.perf_counter()
                await ks.lease(org, credential_id=cid)
                cold.append(time.perf_counter() - started)
            for _ in range(rounds):
                started = time.perf_counter()
                await ks.lease(org, credential_id=cid)
                warm.append(time.perf_counter() - started)
            results[name] = (statistics.median(cold) * 1000, statistics.median(warm) * 1000)
    print("\nlease latency p50 over", rounds, "leases (ms): kind, derivation cold, warm")
    for name, (cold_ms, warm_ms) in results.items():
        print(f"  {name:11s} {cold_ms:7.2f} {warm_ms:7.2f}")
    for name in ("aws-keys", "azure-app", "vertex"):
        assert results[name][1] < results[name][0], name  # the cache saves the token service's round trip
