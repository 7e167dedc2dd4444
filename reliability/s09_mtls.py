"""Scenario 9: mTLS. Every kind of bad client certificate (none, another CA, a look-alike CA, expired, not yet
valid, revoked, wrong identity, wrong role or tenant) is refused on both the keyservice and the proxy port, on
fresh connections, with no side effect; and the services' own certificates rotated on disk under load cost
no request.

Revocation: the stack has no CRL or serial deny list (byokcommon/tls.py only checks the chain and the validity
window), so revocation is by short-lived certificates: a certificate stops working when it expires. The
scenario issues one valid for a few seconds, uses it, and checks it is refused once expired, on new
connections and on a connection opened before expiry."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.tls import TlsFiles, channel_credentials
from reliability.certs import ADMIN, CALLER, KEYSERVICE, PROXY
from reliability.checks import Checks, Load, codes
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, bind, call, chat_request, lease_request, stream_request

TITLE = "mTLS: bad client certificates refused; server certificates rotated under load"
EXPECTED = ("no cert, wrong CA, expired, not yet valid, revoked (short-lived cert expired), wrong identity, wrong "
            "role/tenant: 100 % refused on keyservice and proxy ports, 0 side effects; server certificate "
            "rotations under load: 0 failed requests, each rotation served to new connections")
ORG, OTHER_ORG = "rel-mtls", "rel-mtls-other"
SHORT_LIFE = 4.0  # seconds a "revocable" certificate lives
TLS_REFUSED = {"UNAVAILABLE"}  # the handshake fails: the RPC never reaches a handler
AUTHZ_REFUSED = {"PERMISSION_DENIED"}


def _fresh(port: int, creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
    # A subchannel of its own: every attempt is a new TCP connection and a new TLS handshake.
    return grpc.aio.secure_channel(f"localhost:{port}", creds, options=[("grpc.use_local_subchannel_pool", 1)])


async def _once(port: int, creds: grpc.ChannelCredentials,
                rpc: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> str:
    channel = _fresh(port, creds)
    try:
        code, _, _ = await call(rpc(channel))
        return code
    finally:
        await channel.close()


def _no_cert(ca: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())


def _admin_rpc(channel: grpc.aio.Channel) -> Awaitable[Any]:
    return kpb_grpc.KeyServiceStub(channel).ListCredentials(
        kpb.ListCredentialsRequest(org_id=ORG), timeout=5)


def _lease_rpc(channel: grpc.aio.Channel) -> Awaitable[Any]:
    return kpb_grpc.KeyServiceStub(channel).IssueKeyLease(lease_request(ORG), timeout=5)


def _create_rpc(channel: grpc.aio.Channel) -> Awaitable[Any]:
    return kpb_grpc.KeyServiceStub(channel).CreateCredential(kpb.CreateCredentialRequest(
        provider="openai", scope=kpb.Scope(org_id=ORG), name="intruder", api_key="sk-test-" + "ab" * 20),
        timeout=5)


def _chat_rpc(org: str) -> Callable[[grpc.aio.Channel], Awaitable[Any]]:
    def rpc(channel: grpc.aio.Channel) -> Awaitable[Any]:
        return pb_grpc.ChatServiceStub(channel).Chat(chat_request(org), timeout=5)
    return rpc


async def _consume_stream(stub: pb_grpc.ChatServiceStub, org: str) -> int:
    n = 0
    async for _ in stub.StreamChat(stream_request(org, "gpt-4o-mini"), timeout=10):
        n += 1
    return n


def _served_serial(port: int, client: TlsFiles) -> int:
    """Serial of the certificate a server presents on a brand-new handshake (raw TLS, no gRPC)."""
    context = ssl.create_default_context(cafile=client.ca)
    context.load_cert_chain(client.cert, client.key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def _file_serial(path: str) -> int:
    return int(x509.load_pem_x509_certificate(Path(path).read_bytes()).serial_number)


async def _refusals(c: Checks, stack: Stack, ks: Service, px: Service, attempts: int) -> dict[str, Any]:
    certs = stack.certs
    now = dt.datetime.now(dt.UTC)
    other_ca = CertificateAuthority.create("another CA")
    lookalike = CertificateAuthority.create("byok reliability CA")  # same name as ours, other key
    ca = stack.tls["admin"].ca

    def creds(name: str, ident: str, **kw: Any) -> grpc.ChannelCredentials:
        return channel_credentials(certs.identity(name, ident, **kw))

    expired = {"not_before": now - dt.timedelta(days=2), "not_after": now - dt.timedelta(minutes=1)}
    future = {"not_before": now + dt.timedelta(hours=1), "not_after": now + dt.timedelta(days=1)}
    # (label, port, credentials, rpc, refused codes); the identity is the one that would be allowed if the
    # certificate itself were acceptable, so only the certificate's fault can explain the refusal.
    ks_admin, ks_lease, px_chat = _admin_rpc, _lease_rpc, _chat_rpc(ORG)
    cases: list[tuple[str, Service, grpc.ChannelCredentials, Callable[[grpc.aio.Channel], Awaitable[Any]],
                      set[str]]] = []
    tls_bad = [
        ("no client cert", _no_cert(ca), _no_cert(ca)),
        ("wrong CA", creds("wca-admin", ADMIN, ca=other_ca), creds("wca-caller", CALLER, ca=other_ca)),
        ("look-alike CA (same name)", creds("lca-admin", ADMIN, ca=lookalike),
         creds("lca-caller", CALLER, ca=lookalike)),
        ("expired", creds("exp-admin", ADMIN, **expired), creds("exp-caller", CALLER, **expired)),
        ("not yet valid", creds("fut-admin", ADMIN, **future), creds("fut-caller", CALLER, **future)),
    ]
    for label, admin_creds, caller_creds in tls_bad:
        cases.append((label, ks, admin_creds, ks_admin, TLS_REFUSED))
        cases.append((label, px, caller_creds, px_chat, TLS_REFUSED))
    impostor = creds("impostor", spiffe_id("impostor"))
    foreign = creds("foreign-admin", "spiffe://evil.example/admin")  # right path, other trust domain
    foreign_caller = creds("foreign-caller", "spiffe://evil.example/caller/reliability")
    proxy_creds = channel_credentials(stack.tls["proxyservice"])
    admin_creds = channel_credentials(stack.tls["admin"])
    caller_creds = channel_credentials(stack.tls["caller"])
    cases += [
        ("wrong identity", ks, impostor, ks_admin, AUTHZ_REFUSED),
        ("wrong identity", ks, impostor, ks_lease, AUTHZ_REFUSED),
        ("wrong identity (other trust domain)", ks, foreign, ks_admin, AUTHZ_REFUSED),
        ("wrong role (proxy calls admin RPC)", ks, proxy_creds, _create_rpc, AUTHZ_REFUSED),
        ("wrong role (admin calls IssueKeyLease)", ks, admin_creds, ks_lease, AUTHZ_REFUSED),
        ("wrong identity (caller not bound)", px, impostor, px_chat, AUTHZ_REFUSED),
        ("wrong identity (other trust domain)", px, foreign_caller, px_chat, AUTHZ_REFUSED),
        ("wrong role (admin is no bound caller)", px, admin_creds, px_chat, AUTHZ_REFUSED),
        ("wrong tenant (caller bound to another org)", px, caller_creds, _chat_rpc(OTHER_ORG), AUTHZ_REFUSED),
    ]
    # Controls: the same ports and RPCs accept good certificates (otherwise refusals would prove nothing).
    controls = [await _once(ks.port, admin_creds, ks_admin), await _once(ks.port, proxy_creds, ks_lease),
                await _once(px.port, caller_creds, px_chat)]
    admin = stack.admin(ks)
    before_creds = len((await admin.ListCredentials(kpb.ListCredentialsRequest(org_id=ORG),
                                                        timeout=10)).credentials)
    before_upstream = len(stack.upstream.requests)

    per_case: dict[str, Counter[str]] = {}
    refused = total = 0
    for label, service, cr, rpc, ok_codes in cases:
        where = "keyservice" if service is ks else "proxy"
        tally = per_case.setdefault(f"{where}: {label}", Counter())
        for _ in range(attempts):
            code = await _once(service.port, cr, rpc)
            tally[code] += 1
            total += 1
            refused += code in ok_codes

    cases_upstream = len(stack.upstream.requests)

    # Revoked: short-lived certificates, used while valid, then refused once expired, also on a connection
    # that was opened (and used) before the expiry.
    t0 = dt.datetime.now(dt.UTC)
    life = {"not_before": t0 - dt.timedelta(minutes=1), "not_after": t0 + dt.timedelta(seconds=SHORT_LIFE)}
    short_admin, short_caller = creds("short-admin", ADMIN, **life), creds("short-caller", CALLER, **life)
    kept_ks, kept_px = _fresh(ks.port, short_admin), _fresh(px.port, short_caller)
    before_expiry = [(await call(ks_admin(kept_ks)))[0], (await call(px_chat(kept_px)))[0],
                     await _once(ks.port, short_admin, ks_admin), await _once(px.port, short_caller, px_chat)]
    # X.509 times have one-second resolution; wait past the expiry with a margin.
    await asyncio.sleep(max(0.0, (t0 - dt.datetime.now(dt.UTC)).total_seconds() + SHORT_LIFE + 1.5))
    revoked: Counter[str] = Counter()
    revoked_open: list[str] = []
    revoked_upstream = len(stack.upstream.requests)  # after the valid calls above
    for _ in range(attempts):
        revoked[await _once(ks.port, short_admin, ks_admin)] += 1
        revoked[await _once(px.port, short_caller, px_chat)] += 1
        revoked_open.append((await call(ks_admin(kept_ks)))[0])
        revoked_open.append((await call(px_chat(kept_px)))[0])
    await kept_ks.close()
    await kept_px.close()
    revoked_refused = revoked.get("UNAVAILABLE", 0)
    # The handshake checked validity when the kept connections opened; each RPC re-checks it (interceptor).
    open_refused = sum(code == "UNAUTHENTICATED" for code in revoked_open)
    per_case["both: revoked (short-lived cert, expired), new connections"] = revoked
    per_case["both: revoked, connection opened before expiry"] = Counter(revoked_open)
    total += 2 * attempts + len(revoked_open)
    refused += revoked_refused + open_refused

    after_creds = len((await admin.ListCredentials(kpb.ListCredentialsRequest(org_id=ORG),
                                                        timeout=10)).credentials)
    # Provider requests made by refused calls: during the bad-certificate cases and after the expiry.
    side_upstream = (cases_upstream - before_upstream) + (len(stack.upstream.requests) - revoked_upstream)
    c.check(controls == ["OK"] * 3 and before_expiry == ["OK"] * 4,
            f"controls with good certificates: {controls}; short-lived certificates before expiry: {before_expiry}")
    missed = {k: dict(v) for k, v in per_case.items()
              if set(v) - (TLS_REFUSED | AUTHZ_REFUSED | {"UNAUTHENTICATED"})}
    c.check(refused == total and not missed,
            f"{refused}/{total} bad-certificate attempts refused ({100 * refused / max(total, 1):.1f} %) over "
            f"{len(per_case)} cases x both ports" + (f"; NOT refused: {missed}" if missed else ""))
    c.check(revoked_refused == 2 * attempts and open_refused == len(revoked_open),
            f"revocation = expiry of short-lived ({SHORT_LIFE:.0f} s) certificates (no CRL or serial deny list in "
            f"byokcommon/tls.py): after expiry {revoked_refused}/{2 * attempts} new connections refused at the "
            f"handshake, {open_refused}/{len(revoked_open)} calls on connections opened before expiry refused "
            f"({dict(Counter(revoked_open))})")
    c.check(after_creds == before_creds and side_upstream == 0,
            f"side effects of refused calls: {after_creds - before_creds} credentials created, "
            f"{side_upstream} provider requests")
    return {"cases": {k: dict(v) for k, v in per_case.items()}, "controls": controls, "attempts_per_case": attempts}


async def _rotation(c: Checks, stack: Stack, ks: Service, px: Service, rotations: int, every: float
                    ) -> dict[str, Any]:
    load = Load()
    chat, leases = stack.chat(px), stack.as_proxy(ks)
    caller_creds = channel_credentials(stack.tls["caller"])
    admin_creds = channel_credentials(stack.tls["admin"])
    # Long-lived channels (kept across rotations) and fresh connections (each a handshake that meets
    # whichever certificate is current) on both ports; the proxy's own keyservice channel is rebuilt when its
    # certificate (which is also its client certificate) changes.
    load.add("chat", lambda: chat.Chat(chat_request(ORG), timeout=10), pause=0.01, workers=2)
    load.add("stream", lambda: _consume_stream(chat, ORG), pause=0.01)
    load.add("chat-fresh", lambda: _fresh_ok(px.port, caller_creds, _chat_rpc(ORG)), pause=0.02)
    load.add("lease", lambda: leases.IssueKeyLease(lease_request(ORG), timeout=10), pause=0.02)
    load.add("admin-fresh", lambda: _fresh_ok(ks.port, admin_creds, _admin_rpc), pause=0.02)
    await asyncio.sleep(1.0)
    served_ok = 0
    started = time.monotonic()
    for _ in range(rotations):
        await asyncio.sleep(every)
        ks_files = stack.certs.identity("keyservice", KEYSERVICE)
        px_files = stack.certs.identity("proxyservice", PROXY)
        want = (_file_serial(ks_files.cert), _file_serial(px_files.cert))
        got = (await asyncio.to_thread(_served_serial, ks.port, stack.tls["admin"]),
               await asyncio.to_thread(_served_serial, px.port, stack.tls["caller"]))
        served_ok += got == want
    await asyncio.sleep(1.5)  # requests in flight across the last rotation, and some after it
    await load.stop()
    seconds = time.monotonic() - started
    failed = [e for e in load.events if e.code != "OK"]
    per_kind = {k: codes(load.select(k)) for k in ("chat", "stream", "chat-fresh", "lease", "admin-fresh")}
    c.check(not failed and len(load.events) > 0,
            f"{rotations} rotations of both servers' certificates in {seconds:.0f} s under load: "
            f"{len(load.events) - len(failed)}/{len(load.events)} requests OK, {len(failed)} failed {per_kind}"
            + (f" e.g. {failed[0].kind} {failed[0].code} {failed[0].detail[:120]}" if failed else ""))
    c.check(served_ok == rotations,
            f"{served_ok}/{rotations} rotations seen at once by a new handshake on both ports (no restart)")
    return {"requests": per_kind, "rotations": rotations, "served_new_certificate": served_ok}


async def _fresh_ok(port: int, creds: grpc.ChannelCredentials,
                    rpc: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> None:
    """One RPC on a new connection; raises the RPC's error so the load loop records its code."""
    channel = _fresh(port, creds)
    try:
        await rpc(channel)
    finally:
        await channel.close()


async def run(ctx: Context) -> list[Row]:
    refusals = Checks(9, "mTLS: bad client certificates refused on both ports", expected=EXPECTED.split("; ")[0])
    rotation = Checks(9, "mTLS: server certificates rotated under load",
                      expected="0 failed requests; every rotation presented to new connections without restart")
    attempts, rotations, every = ctx.n(3, 10), ctx.n(4, 15), ctx.n(1.0, 1.0)
    vault = ctx.vault()
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = "rel-mtls"
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db")
        px = stack.start_proxy(ks)
        admin = stack.admin(ks)
        await add_key(admin, ORG, "sk-test-" + "0" * 40)
        await add_key(admin, OTHER_ORG, "sk-test-" + "1" * 40)
        await bind(admin, ORG)
        refusals.figures = await _refusals(refusals, stack, ks, px, attempts)
        refusals.done = ("each bad certificate on a fresh TLS connection to keyservice (ListCredentials, "
                         "IssueKeyLease, CreateCredential) and the proxy (Chat), with good-certificate controls; "
                         "revocation by short-lived certificate expiry")
        refusals.count = f"{attempts} attempts per case and port"
        rotation.figures = await _rotation(rotation, stack, ks, px, rotations, every)
        rotation.done = ("closed-loop Chat, StreamChat, IssueKeyLease on kept channels and Chat/ListCredentials on "
                         f"fresh connections; keyservice and proxy certificates re-issued every {every:.0f} s "
                         "(atomic ..data swap, as a kubelet does)")
        rotation.count = f"{rotations} rotations"
        return [refusals.row(), rotation.row()]
    finally:
        await stack.close()
