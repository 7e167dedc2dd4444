"""Issue 11, findings 2 and 3, through keyservice's gRPC API on a real OpenBao: an admin cannot send a tenant's
key to a host of their choosing (api_base stays on the provider's hosts unless ops allow others, and every move
is audited with both hosts), and api_base reaches no internal address, neither when it is set nor when
VerifyCredential connects (the name is resolved then, so a rebound name is caught)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from byokcommon import egress
from byokcommon.egress import EgressPolicy
from keyservice.server import create_server
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keys_stub, keyservice_settings, secure_channel

OPENAI_KEY = "sk-proj-" + "a1B2" * 10
COMPAT_KEY = "tenant-llm-key-0001"


@asynccontextmanager
async def admin_of(bao: BaoDevServer, ids: Identities, url: str, policy: EgressPolicy) -> AsyncIterator[Any]:
    app = await create_server(keyservice_settings(bao, ids, url, egress=policy))
    try:
        async with secure_channel(app.port, ids.admin) as channel:
            yield keys_stub(channel), app
    finally:
        await app.stop(grace=0)


def create(name: str, provider: str = "openai", api_base: str = "") -> pb.CreateCredentialRequest:
    return pb.CreateCredentialRequest(provider=provider, scope=pb.Scope(org_id="sec"), name=name,
                                      api_key=OPENAI_KEY if provider == "openai" else COMPAT_KEY, api_base=api_base)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_api_base_stays_on_the_providers_hosts_and_moves_are_audited(bao: BaoDevServer, ids: Identities,
                                                                          tmp_path: Any) -> None:
    policy = EgressPolicy.from_env({"BYOK_API_BASE_ALLOWLIST": "gw.corp.example"})
    async with admin_of(bao, ids, f"sqlite:///{tmp_path}/ks.db", policy) as (admin, _app):
        credential = (await admin.CreateCredential(create("main"))).credential
        moved = await refused(admin.UpdateCredential(pb.UpdateCredentialRequest(
            credential_id=credential.credential_id, api_base="https://attacker.example/v1")))
        assert moved.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert moved.details().startswith("api_base: attacker.example is not an OpenAI host")
        assert (await refused(admin.CreateCredential(create("other", api_base="https://attacker.example/v1")))
                ).code() == grpc.StatusCode.INVALID_ARGUMENT

        for api_base in ("https://gw.corp.example/v1", ""):  # ops' gateway, then back to the default
            await admin.UpdateCredential(pb.UpdateCredentialRequest(credential_id=credential.credential_id,
                                                                    api_base=api_base))
        events = (await admin.ListAuditEvents(pb.ListAuditEventsRequest(
            credential_id=credential.credential_id, action="credential.update"))).events
        moves = [(d["old_api_base"], d["new_api_base"]) for d in (json.loads(e.details_json) for e in events)]
        assert moves == [("https://gw.corp.example/v1", ""), ("", "https://gw.corp.example/v1")]  # newest first


async def test_internal_destinations_are_refused_when_set(bao: BaoDevServer, ids: Identities, tmp_path: Any) -> None:
    async with admin_of(bao, ids, f"sqlite:///{tmp_path}/ks.db", EgressPolicy()) as (admin, app):
        for i, api_base in enumerate([
            "https://169.254.169.254/latest", "https://metadata.google.internal/computeMetadata/v1",
            "https://10.0.0.7/v1", "https://100.64.0.9/v1", "https://[fe80::1]/v1", "https://[::ffff:10.0.0.1]/v1",
            f"http://127.0.0.1:{app.metrics_port}", f"https://localhost:{app.metrics_port}",
        ]):
            error = await refused(admin.CreateCredential(create(f"c{i}", "openai_compatible", api_base)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, api_base
            assert error.details().startswith("api_base: "), error.details()


async def test_verify_is_no_oracle_for_internal_ports(bao: BaoDevServer, ids: Identities, tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A public-looking name that resolves to loopback when VerifyCredential connects (DNS rebinding):
    refused before any connection, the credential's health untouched."""
    monkeypatch.setattr(egress, "system_resolve_sync", lambda host, port: ["127.0.0.1"])
    async with admin_of(bao, ids, f"sqlite:///{tmp_path}/ks.db", EgressPolicy()) as (admin, app):
        credential = (await admin.CreateCredential(create(
            "rebound", "openai_compatible", f"https://models.tenant.example:{app.metrics_port}/v1"))).credential
        error = await refused(admin.VerifyCredential(pb.VerifyCredentialRequest(
            credential_id=credential.credential_id)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details().startswith("api_base: models.tenant.example resolves to a non-public address")
        after = (await admin.GetCredential(pb.GetCredentialRequest(credential_id=credential.credential_id))).credential
        assert after.health == credential.health and not after.HasField("last_verify_time")
