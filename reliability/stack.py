"""The system under test as processes: keyservice and proxy replicas started with `python -m` and a chosen
environment, the fake provider upstream in this process (so the scenarios see which key arrived and when a
stream was closed), and mTLS gRPC clients for the admin, proxy and caller identities."""

from __future__ import annotations

import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import TlsFiles, channel_credentials
from byokcommon.wire import presented_key
from devstack.ports import free_port
from devstack.upstream import FakeUpstream, UpstreamConfig
from reliability.certs import ADMIN, CALLER, KEYSERVICE, PROXY, CertDir
from reliability.procs import Proc
from reliability.vault import RaftCluster, Vault

REPO = Path(__file__).resolve().parent.parent
PROVIDERS_ON_UPSTREAM = ("openai", "anthropic", "mistral", "groq", "together", "deepseek", "fireworks",
                         "openrouter")


class RecordingUpstream(FakeUpstream):
    """FakeUpstream that also remembers (monotonic time, family, key) of every request: the only place the
    scenarios see keys arrive, to count wrong or stale keys. Kept in memory, never written out."""

    def __init__(self, config: UpstreamConfig | None = None) -> None:
        super().__init__(config)
        self.seen: list[tuple[float, str]] = []

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        key = presented_key(headers)
        self.seen.append((time.monotonic(), key))
        return super()._route(method, target, headers, body)

    def unauthorized(self) -> int:
        return sum(1 for r in self.requests if r.family and not r.authorized)


def base_env(**extra: str) -> dict[str, str]:
    """A minimal environment: nothing of ours leaks in from the parent (its /proc/PID/environ is inspected)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


@dataclass
class Service:
    """A keyservice or proxy process with its ports."""

    proc: Proc
    port: int
    metrics_port: int
    health_port: int
    tls: TlsFiles

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples from /metrics that carry `labels` (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                label_set = line[len(name):].partition("}")[0]
                if all(w in label_set for w in wanted):
                    total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class Stack:
    work: Path
    vault: Vault | RaftCluster
    certs: CertDir
    upstream: RecordingUpstream
    kv_prefix: str = "byok"
    keyservices: list[Service] = field(default_factory=list)
    proxies: list[Service] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    tls: dict[str, TlsFiles] = field(default_factory=dict)

    @classmethod
    async def create(cls, work: Path, vault: Vault | RaftCluster,
                     upstream_config: UpstreamConfig | None = None) -> Stack:
        certs = CertDir(work / "certs")
        upstream = RecordingUpstream(upstream_config or UpstreamConfig())
        await upstream.start()
        stack = cls(work=work, vault=vault, certs=certs, upstream=upstream)
        for name, ident in (("keyservice", KEYSERVICE), ("proxyservice", PROXY), ("admin", ADMIN),
                            ("caller", CALLER)):
            stack.tls[name] = certs.identity(name, ident)
        return stack

    def base_urls(self) -> str:
        base = self.upstream.base_url
        return ",".join([f"{p}={base}/v1" for p in PROVIDERS_ON_UPSTREAM] + [f"gemini={base}/v1beta"])

    def start_keyservice(self, database_url: str, *, name: str = "", vault_token: str | None = None,
                         **extra: str) -> Service:
        port, mport, hport = free_port(), free_port(), free_port()
        tls = self.tls["keyservice"]
        env = base_env(
            BYOK_GRPC_ADDR=f"127.0.0.1:{port}", BYOK_HEALTH_ADDR=f"127.0.0.1:{hport}",
            BYOK_METRICS_ADDR=f"127.0.0.1:{mport}", BYOK_TLS_CERT=tls.cert, BYOK_TLS_KEY=tls.key,
            BYOK_TLS_CA=tls.ca, BYOK_DATABASE_URL=database_url, VAULT_ADDR=self.vault.addr,
            BYOK_ROLES=f"{ADMIN}=admin,{PROXY}=proxy", BYOK_PROVIDER_BASE_URLS=self.base_urls(),
            BYOK_VAULT_KV_PREFIX=self.kv_prefix, BYOK_LOG_LEVEL="info", BYOK_VAULT_TIMEOUT_SECONDS="2",
            BYOK_DEV_LOOPBACK_HTTP="1")  # the provider stand-in is plain http on loopback
        if extra.get("BYOK_VAULT_AUTH", "token") == "token":
            env["VAULT_TOKEN"] = vault_token or self.vault.root_token
        env.update(extra)
        name = name or f"keyservice{len(self.keyservices) + 1}"
        proc = Proc(name, [sys.executable, "-m", "keyservice"], env, self.work / "logs", port=port, cwd=str(REPO))
        proc.start()
        service = Service(proc, port, mport, hport, tls)
        self.keyservices.append(service)
        return service

    def start_proxy(self, keyservice: Service, *, name: str = "", **extra: str) -> Service:
        port, mport, hport = free_port(), free_port(), free_port()
        tls = self.tls["proxyservice"]
        env = base_env(
            BYOK_GRPC_ADDR=f"127.0.0.1:{port}", BYOK_HEALTH_ADDR=f"127.0.0.1:{hport}",
            BYOK_METRICS_ADDR=f"127.0.0.1:{mport}", BYOK_TLS_CERT=tls.cert, BYOK_TLS_KEY=tls.key,
            BYOK_TLS_CA=tls.ca, BYOK_KEYSERVICE_ADDR=f"localhost:{keyservice.port}", BYOK_LOG_LEVEL="info",
            BYOK_KEYSERVICE_TIMEOUT_SECONDS="2", BYOK_UPSTREAM_TIMEOUT_SECONDS="30", BYOK_DEV_LOOPBACK_HTTP="1")
        env.update(extra)
        name = name or f"proxy{len(self.proxies) + 1}"
        proc = Proc(name, [sys.executable, "-m", "proxyservice"], env, self.work / "logs", port=port, cwd=str(REPO))
        proc.start()
        service = Service(proc, port, mport, hport, tls)
        self.proxies.append(service)
        return service

    # -- clients ------------------------------------------------------------------------------------
    def channel(self, port: int, identity: str) -> grpc.aio.Channel:
        channel = grpc.aio.secure_channel(f"localhost:{port}", channel_credentials(self.tls[identity]))
        self.channels.append(channel)
        return channel

    def admin(self, ks: Service) -> kpb_grpc.KeyServiceStub:
        return kpb_grpc.KeyServiceStub(self.channel(ks.port, "admin"))

    def as_proxy(self, ks: Service) -> kpb_grpc.KeyServiceStub:
        return kpb_grpc.KeyServiceStub(self.channel(ks.port, "proxyservice"))

    def chat(self, proxy: Service) -> pb_grpc.ChatServiceStub:
        return pb_grpc.ChatServiceStub(self.channel(proxy.port, "caller"))

    async def close(self) -> None:
        for channel in self.channels:
            try:
                await channel.close()
            except Exception:  # noqa: BLE001
                pass
        self.channels.clear()
        for service in [*self.proxies, *self.keyservices]:
            service.proc.stop()
        await self.upstream.stop()


# -- request helpers ----------------------------------------------------------------------------------
async def add_key(admin: kpb_grpc.KeyServiceStub, org: str, key: str, *, provider: str = "openai",
                  name: str = "main", timeout: float = 10, **extra: Any) -> str:
    reply = await admin.CreateCredential(kpb.CreateCredentialRequest(
        provider=provider, scope=kpb.Scope(org_id=org), name=name, api_key=key, **extra), timeout=timeout)
    return str(reply.credential.credential_id)


async def bind(admin: kpb_grpc.KeyServiceStub, org: str, caller: str = CALLER) -> None:
    await admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
        binding=kpb.CallerBinding(caller_identity=caller, org_id=org)), timeout=10)


def lease_request(org: str, provider: str = "openai", caller: str = CALLER, **kw: Any) -> kpb.IssueKeyLeaseRequest:
    return kpb.IssueKeyLeaseRequest(scope=kpb.Scope(org_id=org), provider=provider, caller_identity=caller, **kw)


def chat_request(org: str, model: str = "gpt-4o-mini", text: str = "hi", **kw: Any) -> pb.ChatRequest:
    return pb.ChatRequest(parameters=pb.ChatParameters(
        tenant=pb.Tenant(org_id=org), model=model, messages=[pb.Message(role=pb.ROLE_USER, content=text)], **kw))


def stream_request(org: str, model: str, text: str = "hi") -> pb.StreamChatRequest:
    return pb.StreamChatRequest(parameters=pb.ChatParameters(
        tenant=pb.Tenant(org_id=org), model=model, messages=[pb.Message(role=pb.ROLE_USER, content=text)]))


async def call(coro: Any) -> tuple[str, str, Any]:
    """Await a unary RPC: (status name, details, reply or None)."""
    try:
        reply = await coro
        return "OK", "", reply
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or "", None


def fake_key(prefix: str = "sk-test-") -> str:
    import secrets

    return prefix + secrets.token_hex(20)


async def audit_events(admin: kpb_grpc.KeyServiceStub, **filters: Any) -> list[kpb.AuditEvent]:
    """Every audit event matching the filters (all pages)."""
    out: list[kpb.AuditEvent] = []
    token = ""
    while True:
        reply = await admin.ListAuditEvents(kpb.ListAuditEventsRequest(page_size=500, page_token=token, **filters),
                                            timeout=20)
        out.extend(reply.events)
        token = reply.next_page_token
        if not token:
            return out
