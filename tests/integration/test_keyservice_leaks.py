"""Leak canaries: fake provider keys, one per provider shape, pushed through every keyservice RPC — success and
failure paths (bad input carrying the key, wrong role, Vault down, database errors, a provider 401) — and then
searched for, raw, base64, hex and URL-encoded, in everything keyservice emits or keeps: stdout and stderr
with production logging, the structlog event stream, every error detail and response, the audit events and
the database (SQLite file bytes, pg_dump). Only IssueKeyLease's api_key field may hold a key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import grpc
import pytest
import sqlalchemy as sa
import structlog
import structlog.testing

from byok.keys.v1 import key_service_pb2 as pb
from byokcommon import logging as byok_logging
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.server import KeyServiceApp, create_server
from keyservice.settings import KeyServiceSettings
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keys_stub, keyservice_settings, secure_channel, upstream_base_urls


def _tail(n: int) -> str:
    return secrets.token_hex(n)


# One canary per provider key shape (all fake). The 401 canary is well-formed but not accepted upstream.
def make_canaries() -> dict[str, str]:
    return {
        "openai": "sk-proj-" + _tail(24), "anthropic": "sk-ant-api03-" + _tail(24),
        "gemini": "AIza" + secrets.token_urlsafe(27)[:35], "mistral": _tail(16), "groq": "gsk_" + _tail(24),
        "together": _tail(32), "deepseek": "sk-" + _tail(16), "fireworks": "fw_" + _tail(16),
        "openrouter": "sk-or-v1-" + _tail(32), "openai_compatible": "oc-" + _tail(16),
    }


def forms(key: str) -> list[bytes]:
    """Encodings a key could hide in: raw, its distinctive middle, hex, base64 at every alignment (std and
    URL-safe, padding-free cores), URL-encoded."""
    raw = key.encode()
    found = [raw, raw[len(raw) // 4: -len(raw) // 4], raw.hex().encode(), raw.hex().upper().encode(),
             quote(key, safe="").encode(), quote_plus(key).encode()]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw)
            found.append(text[4:-4])  # the part fully determined by the key's bytes
    return found


def hits(blob: bytes | str, keys: dict[str, str]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [f"{label} (form {i})" for label, key in keys.items() for i, f in enumerate(forms(key)) if f in data]




@contextmanager
def production_logging() -> Iterator[list[dict[str, Any]]]:
    """structlog configured as keyservice's __main__ does, every event also captured raw (before redaction)
    by capture_logs(); a tee processor renders each event through the production chain to stdout."""
    saved = structlog.get_config()
    saved = {**saved, "processors": list(saved["processors"])}
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    byok_logging.configure("debug", service="keyservice")
    # Not caching bound loggers is the only change: a cached logger would keep pytest's capture stream after
    # this test. What gets rendered is unaffected.
    structlog.configure(cache_logger_on_first_use=False)
    chain = list(structlog.get_config()["processors"])

    def tee(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        rendered: Any = dict(event)
        for processor in chain:
            rendered = processor(logger, method, rendered)
        print(rendered, file=sys.stdout, flush=True)
        return event

    try:
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars, tee]) as captured:
            yield captured
    finally:
        structlog.configure(**saved)
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


class Recorder:
    """Runs RPCs and keeps everything they return (responses, error codes, details, trailers) as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.codes: list[tuple[str, grpc.StatusCode]] = []

    async def ok(self, label: str, call: Awaitable[Any]) -> Any:
        response = await call
        self.texts.append(f"{label}: {response}")
        self.codes.append((label, grpc.StatusCode.OK))
        return response

    async def fails(self, label: str, call: Awaitable[Any], *codes: grpc.StatusCode) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        err = info.value
        self.texts.append(f"{label}: {err.code()} {err.details()} {err.debug_error_string()} "
                          f"{err.trailing_metadata()} {err.initial_metadata()}")
        self.codes.append((label, err.code()))
        assert err.code() in codes, f"{label}: {err.code()} {err.details()}"
        return err.code()


@asynccontextmanager
async def serving(settings: KeyServiceSettings, ids: Identities) -> AsyncIterator[tuple[KeyServiceApp, Any, Any]]:
    app = await create_server(settings)
    try:
        async with secure_channel(app.port, ids.admin) as a, secure_channel(app.port, ids.proxyservice) as p:
            yield app, keys_stub(a), keys_stub(p)
    finally:
        await app.stop(grace=0)


def create(provider: str, key: str, org: str, name: str, **kw: Any) -> pb.CreateCredentialRequest:
    return pb.CreateCredentialRequest(provider=provider, scope=pb.Scope(org_id=org), name=name, api_key=key, **kw)


E = grpc.StatusCode


async def exercise_every_rpc(rec: Recorder, admin: Any, proxy: Any, bao: BaoDevServer, keys: dict[str, str],
                             prefix: str, transit_mount: str, transit_key: str, upstream_base: str) -> None:
    org = "leak"
    creds: dict[str, pb.Credential] = {}
    await rec.ok("ListProviders", admin.ListProviders(pb.ListProvidersRequest()))
    for provider in ("openai", "anthropic", "gemini", "mistral", "groq", "together", "deepseek", "fireworks",
                     "openrouter", "openai_compatible"):
        extra = {"api_base": upstream_base + "/v1"} if provider == "openai_compatible" else {}
        creds[provider] = (await rec.ok(f"Create {provider}", admin.CreateCredential(
            create(provider, keys[provider], org, provider, primary=True, **extra)))).credential
    bad_verify = (await rec.ok("Create 401", admin.CreateCredential(
        create("openai", keys["openai_401"], org, "rejected")))).credential
    cid = creds["openai"].credential_id
    await rec.ok("CreateCallerBinding", admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org))))

    # Bad input carrying a key, in every field it could be pasted into.
    k = keys["bad_input"]
    for label, request in [
        ("provider=key", create(k, k, org, "x")),
        ("name=key", create("openai", k, org, k + k)),
        ("api_key charset", create("openai", k + "!", org, "x")),
        ("api_key wrong provider", create("anthropic", k, org, "x")),
        ("api_base userinfo", create("openai", k, org, "x", api_base=f"https://u:{k}@example.com")),
        ("api_base query", create("openai", k, org, "x", api_base=f"https://example.com/v1?key={k}")),
        ("api_base path", create("openai", k, org, "x", api_base=f"ftp://example.com/{k}")),
        ("default_model", create("openai", k, org, "x", default_model=k + " x")),
        ("org_id=key", create("openai", k, k + "/x", "x")),
    ]:
        await rec.fails(f"Create bad {label}", admin.CreateCredential(request), E.INVALID_ARGUMENT)
    await rec.fails("Create duplicate", admin.CreateCredential(create("openai", k, org, "openai")),
                    E.ALREADY_EXISTS)
    await rec.fails("Get bad id", admin.GetCredential(pb.GetCredentialRequest(credential_id=k)), E.INVALID_ARGUMENT)
    await rec.fails("List bad provider", admin.ListCredentials(pb.ListCredentialsRequest(provider=k)),
                    E.INVALID_ARGUMENT)
    await rec.fails("List bad token", admin.ListCredentials(pb.ListCredentialsRequest(page_token=k)),
                    E.INVALID_ARGUMENT)
    await rec.fails("Update bad name", admin.UpdateCredential(pb.UpdateCredentialRequest(
        credential_id=cid, name=k + k)), E.INVALID_ARGUMENT)
    await rec.fails("Update bad base", admin.UpdateCredential(pb.UpdateCredentialRequest(
        credential_id=cid, api_base=f"https://example.com/?k={k}")), E.INVALID_ARGUMENT)
    await rec.fails("Rotate wrong shape", admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=cid, api_key=keys["gemini"])), E.INVALID_ARGUMENT)
    await rec.fails("Rotate stale", admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=cid, api_key=k, expected_version=7)), E.ABORTED)
    # A key pasted into the path is refused before Vault sees it (Vault's audit log keeps paths in clear).
    await rec.fails("Register key-shaped path", admin.RegisterCredential(pb.RegisterCredentialRequest(
        provider="openai", scope=pb.Scope(org_id=org), name="r", vault_path=f"{prefix}/{k}")), E.INVALID_ARGUMENT)
    await rec.fails("Register missing path", admin.RegisterCredential(pb.RegisterCredentialRequest(
        provider="openai", scope=pb.Scope(org_id=org), name="r", vault_path=f"{prefix}/imports/none")),
        E.NOT_FOUND)
    await rec.fails("Lease model=key", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), model=k, caller_identity=CALLER)), E.INVALID_ARGUMENT)
    await rec.fails("Lease provider=key", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), provider=k, caller_identity=CALLER)), E.INVALID_ARGUMENT)
    await rec.fails("Lease credential_id=key", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), credential_id=k, caller_identity=CALLER)), E.INVALID_ARGUMENT)
    await rec.fails("Lease caller=key", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), provider="openai", caller_identity=k + "!")), E.INVALID_ARGUMENT)
    await rec.fails("Lease unbound caller=key", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), provider="openai", caller_identity=k)), E.PERMISSION_DENIED)
    await rec.fails("Binding caller=key", admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=k + " x", org_id=org))), E.INVALID_ARGUMENT)
    await rec.fails("Report lease_id=key", proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(
        lease_id=k, credential_id=cid, http_status=500)), E.INVALID_ARGUMENT)
    await rec.fails("Policy org=key", admin.SetOrgPolicy(pb.SetOrgPolicyRequest(
        policy=pb.OrgPolicy(org_id=k + "/x"))), E.INVALID_ARGUMENT)

    # Wrong role, with a key in the request.
    await rec.fails("proxy creates", proxy.CreateCredential(create("openai", k, org, "x")), E.PERMISSION_DENIED)
    await rec.fails("proxy rotates", proxy.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=cid, api_key=k)), E.PERMISSION_DENIED)
    await rec.fails("admin leases", admin.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org), provider="openai", caller_identity=CALLER)), E.PERMISSION_DENIED)

    # The management surface, happy paths.
    watch = proxy.WatchRevocations(pb.WatchRevocationsRequest())
    events: list[str] = []

    async def read_events() -> None:
        async for event in watch:
            events.append(str(event))
    reader = asyncio.create_task(read_events())

    await rec.ok("Get", admin.GetCredential(pb.GetCredentialRequest(credential_id=cid)))
    await rec.ok("List", admin.ListCredentials(pb.ListCredentialsRequest(org_id=org, page_size=4)))
    await rec.ok("Update", admin.UpdateCredential(pb.UpdateCredentialRequest(
        credential_id=creds["groq"].credential_id, name="groq2", default_model="groq/llama", primary=False)))
    await rec.ok("Rotate", admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=cid, api_key=keys["rotated"], expected_version=1)))
    await rec.ok("Deactivate", admin.DeactivateCredential(pb.DeactivateCredentialRequest(
        credential_id=creds["mistral"].credential_id)))
    await rec.ok("Activate", admin.ActivateCredential(pb.ActivateCredentialRequest(
        credential_id=creds["mistral"].credential_id)))
    bao.cli("kv", "put", f"secret/{prefix}/imports/ops", "api_key=-", input=keys["imported"])
    registered = (await rec.ok("Register", admin.RegisterCredential(pb.RegisterCredentialRequest(
        provider="openai", scope=pb.Scope(org_id=org, project_id="p"), name="imported",
        vault_path=f"{prefix}/imports/ops")))).credential
    for provider, cred in creds.items():
        answer = await rec.ok(f"Verify {provider}", admin.VerifyCredential(
            pb.VerifyCredentialRequest(credential_id=cred.credential_id)))
        assert answer.http_status == 200, (provider, answer.http_status)
    rejected = await rec.ok("Verify 401", admin.VerifyCredential(pb.VerifyCredentialRequest(
        credential_id=bad_verify.credential_id)))
    assert rejected.http_status == 401 and rejected.credential.health == pb.CREDENTIAL_HEALTH_INVALID
    await rec.ok("SetOrgPolicy", admin.SetOrgPolicy(pb.SetOrgPolicyRequest(
        policy=pb.OrgPolicy(org_id="platform-org", allow_platform_fallback=True))))
    await rec.ok("GetOrgPolicy", admin.GetOrgPolicy(pb.GetOrgPolicyRequest(org_id="platform-org")))
    for tenant in ("platform-org",):
        await rec.ok("CreateCallerBinding", admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
            binding=pb.CallerBinding(caller_identity=CALLER, org_id=tenant))))
    await rec.ok("ListCallerBindings", admin.ListCallerBindings(pb.ListCallerBindingsRequest(org_id=org)))

    # Leases: the one place a key may travel. Checked here, then blanked before recording.
    async def lease(label: str, request: pb.IssueKeyLeaseRequest, expected_key: str) -> pb.IssueKeyLeaseResponse:
        response = await proxy.IssueKeyLease(request)
        assert response.api_key == expected_key, label
        response.api_key = ""
        rec.texts.append(f"{label}: {response}")
        return response

    await lease("Lease rotated", pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org), provider="openai",
                                                        caller_identity=CALLER), keys["rotated"])
    for provider in ("anthropic", "gemini", "fireworks", "deepseek"):
        last = await lease(f"Lease {provider}", pb.IssueKeyLeaseRequest(
            scope=pb.Scope(org_id=org), credential_id=creds[provider].credential_id, caller_identity=CALLER),
            keys[provider])
    deepseek_lease = last
    await lease("Lease registered", pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id=org, project_id="p"), credential_id=registered.credential_id,
        caller_identity=CALLER), keys["imported"])
    platform = await lease("Lease platform", pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id="platform-org"), model="gpt-4o", caller_identity=CALLER), keys["platform"])
    assert platform.key_source == pb.KEY_SOURCE_PLATFORM

    await rec.ok("ReportKeyFailure 500", proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(
        lease_id=platform.lease_id, credential_id=creds["deepseek"].credential_id, http_status=500)))
    await rec.fails("ReportKeyFailure 401, foreign lease", proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(
        lease_id=platform.lease_id, credential_id=creds["deepseek"].credential_id, http_status=401)),
        E.FAILED_PRECONDITION)
    await rec.ok("ReportKeyFailure 401", proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(
        lease_id=deepseek_lease.lease_id, credential_id=creds["deepseek"].credential_id, http_status=401)))
    bao.cli("write", "-f", f"{transit_mount}/keys/{transit_key}/rotate")
    rewrapped = await rec.ok("RewrapSecrets", admin.RewrapSecrets(pb.RewrapSecretsRequest()))
    assert rewrapped.rewrapped_count == len(creds) + 1 and rewrapped.min_transit_key_version == 2
    await rec.ok("DeleteCallerBinding", admin.DeleteCallerBinding(pb.DeleteCallerBindingRequest(
        caller_identity=CALLER, org_id="platform-org")))
    await rec.ok("Delete", admin.DeleteCredential(pb.DeleteCredentialRequest(
        credential_id=creds["together"].credential_id)))
    await rec.ok("RevokeOrg", admin.RevokeOrg(pb.RevokeOrgRequest(org_id=org)))

    token = ""
    while True:
        page = await rec.ok("ListAuditEvents", admin.ListAuditEvents(pb.ListAuditEventsRequest(
            page_size=100, page_token=token)))
        token = page.next_page_token
        if not token:
            break
    await asyncio.sleep(0)  # let the reader take what the feed already queued
    for _ in range(50):  # RevokeOrg's events are the last ones; wait for them with a deadline
        if sum("REVOCATION_REASON_DEACTIVATED" in e for e in events) >= len(creds) + 1:
            break
        await asyncio.sleep(0.05)
    watch.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert events, "WatchRevocations delivered nothing"
    rec.texts.extend(events)


async def break_the_database(rec: Recorder, admin: Any, proxy: Any, app: KeyServiceApp, database_url: str,
                             keys: dict[str, str]) -> None:
    """Database errors: the credentials table vanishes (renamed) under a running keyservice."""
    engine = sa.create_engine(database_url.replace("sqlite:///", "sqlite:///") if database_url.startswith("sqlite")
                              else database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE credentials RENAME TO credentials_gone"))
    engine.dispose()
    k = keys["db_down"]
    errors = (E.UNAVAILABLE, E.INTERNAL)
    await rec.fails("DB down create", admin.CreateCredential(create("openai", k, "dbdown", "x")), *errors)
    await rec.fails("DB down rotate", admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id="cred_" + "0" * 24, api_key=k)), *errors)
    await rec.fails("DB down list", admin.ListCredentials(pb.ListCredentialsRequest()), *errors)
    await rec.fails("DB down lease", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
        scope=pb.Scope(org_id="leak"), provider="openai", caller_identity=CALLER)), *errors)


async def vault_down_paths(rec: Recorder, ids: Identities, tmp_path: Path, keys: dict[str, str]) -> None:
    """A keyservice on an OpenBao of its own, which is then stopped."""
    own = BaoDevServer().start()
    try:
        settings = keyservice_settings(own, ids, f"sqlite:///{tmp_path}/vault-down.db")
        async with serving(settings, ids) as (_, admin, proxy):
            cred = (await rec.ok("VD create", admin.CreateCredential(
                create("openai", keys["vault_down"], "vd", "k")))).credential
            await rec.ok("VD bind", admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
                binding=pb.CallerBinding(caller_identity=CALLER, org_id="vd"))))
            own.stop()
            down = (E.UNAVAILABLE,)
            await rec.fails("VD create", admin.CreateCredential(create("openai", keys["vault_down"], "vd", "k2")),
                            *down)
            await rec.fails("VD rotate", admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=cred.credential_id, api_key=keys["vault_down_rotated"])), *down)
            await rec.fails("VD lease", proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
                scope=pb.Scope(org_id="vd"), provider="openai", caller_identity=CALLER)), *down)
            await rec.fails("VD verify", admin.VerifyCredential(pb.VerifyCredentialRequest(
                credential_id=cred.credential_id)), *down)
            # The row goes first and the Vault step is deferred to the reconciler: OK is the right answer.
            await rec.ok("VD delete", admin.DeleteCredential(pb.DeleteCredentialRequest(
                credential_id=cred.credential_id)))
    finally:
        own.stop()
    rec.texts.append((tmp_path / "vault-down.db").read_bytes().decode("latin-1"))


def database_bytes(app_url: str, tmp_path: Path) -> bytes:
    if app_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in tmp_path.glob("ks.db*"))
    url = app_url.replace("postgresql+psycopg://", "postgresql://")
    dump = subprocess.run(["pg_dump", url], capture_output=True, check=True, timeout=60).stdout
    assert b"CREATE TABLE" in dump and b"audit_events" in dump
    return dump


async def test_no_key_leaks_through_any_rpc(bao: BaoDevServer, ids: Identities, database_url: str,
                                            tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    canaries = make_canaries()
    keys = {**canaries, "openai_401": "sk-proj-" + _tail(24), "bad_input": "sk-proj-" + _tail(24),
            "rotated": "sk-proj-" + _tail(24), "imported": "sk-proj-" + _tail(24),
            "platform": "sk-proj-" + _tail(24), "db_down": "sk-proj-" + _tail(24),
            "vault_down": "sk-proj-" + _tail(24), "vault_down_rotated": "sk-proj-" + _tail(24)}
    accepted = {"openai": {canaries[p] for p in ("openai", "mistral", "groq", "together", "deepseek", "fireworks",
                                                 "openrouter", "openai_compatible")} | {keys["rotated"]},
                "anthropic": {canaries["anthropic"]}, "gemini": {canaries["gemini"]}}
    upstream = FakeUpstream(UpstreamConfig(keys=accepted))
    await upstream.start()
    transit_mount, transit_key = f"transit-leaks-{_tail(4)}", f"byok-leaks-{_tail(4)}"
    bao.cli("secrets", "enable", f"-path={transit_mount}", "transit")
    rec = Recorder()
    try:
        with production_logging() as captured:
            settings = keyservice_settings(
                bao, ids, database_url, vault={"transit_key": transit_key, "transit_mount": transit_mount},
                provider_base_urls=upstream_base_urls(upstream.base_url), platform_keys={"OPENAI_API_KEY":
                                                                                         keys["platform"]},
                log_level="debug")
            async with serving(settings, ids) as (app, admin, proxy):
                await exercise_every_rpc(rec, admin, proxy, bao, keys, settings.vault.kv_prefix, transit_mount,
                                         transit_key, upstream.base_url)
                stored = database_bytes(database_url, tmp_path)
                await break_the_database(rec, admin, proxy, app, database_url, keys)
            await vault_down_paths(rec, ids, tmp_path, keys)
        out, err = capfd.readouterr()
    finally:
        await upstream.stop()
        bao.cli("secrets", "disable", transit_mount, check=False)

    # The calls really happened, and the failure paths really failed the way they should.
    labels = {label for label, _ in rec.codes}
    assert {"Verify 401", "RewrapSecrets", "RevokeOrg", "VD lease", "DB down create"} <= labels
    assert json.loads(out.splitlines()[0])["service"] == "keyservice"  # production JSON lines on stdout
    assert any(e.get("event") == "rpc" and e.get("method") == "IssueKeyLease" for e in captured)
    # The search itself finds keys in every form it claims to (so that 0 hits below means something).
    for i, key in enumerate(keys.values()):
        raw = key.encode()
        for disguised in (raw, raw.hex().encode(), quote(key).encode(), base64.b64encode(b"x" * (i % 3) + raw),
                          base64.urlsafe_b64encode(b"{}" * (i % 2) + raw)):
            assert hits(b'{"v": "' + disguised + b'"}', {"k": key}), disguised
    # Keys must appear in none of it.
    assert hits(out, keys) == [], "stdout"
    assert hits(err, keys) == [], "stderr"
    assert hits(repr(captured), keys) == [], "structlog events"
    for text in rec.texts:
        assert hits(text, keys) == [], text[:300]
    assert hits(stored, keys) == [], "database"
    if database_url.startswith("sqlite"):
        assert hits(b"".join(p.read_bytes() for p in tmp_path.glob("ks.db*")), keys) == [], "database after"
