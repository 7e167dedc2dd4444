"""The system under test, as separate processes on loopback: OpenBao (`bao server -dev`), the local upstream,
keyservice (SQLite), proxyservice (gRPC and its HTTPS front) and the floor servers (gRPC and HTTP), each pinned
to its side of the core split.

Secrets (the Vault root token, the fake provider key) reach children through their environment, never argv.
`BenchStack.stop()` ends every child this module started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import CoreSplit, on_cores
from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.tls import TlsFiles, channel_credentials
from devstack.bao import dev_server
from devstack.ports import free_port
from devstack.processes import ProcessGroup, clean_env

ADMIN = spiffe_id("admin")
PROXY = spiffe_id("proxyservice")
CALLER = spiffe_id("caller/bench")
WARM_ORG = "bench-warm"
LEASE_TTL_SECONDS = 60  # keyservice's default, stated so the "calls per key per TTL" figure has a base


def fake_openai_key() -> str:
    """Shaped like a real OpenAI project key so keyservice's format check accepts it; it opens nothing."""
    return "sk-proj-" + secrets.token_hex(20)


@dataclass
class Certs:
    keyservice: TlsFiles
    proxyservice: TlsFiles
    admin: TlsFiles
    caller: TlsFiles

    @classmethod
    def create(cls, directory: Path) -> Certs:
        ca = CertificateAuthority.create("byok bench CA")
        return cls(keyservice=ca.write_identity(directory, "keyservice", spiffe=spiffe_id("keyservice")),
                   proxyservice=ca.write_identity(directory, "proxyservice", spiffe=PROXY),
                   admin=ca.write_identity(directory, "admin", spiffe=ADMIN),
                   caller=ca.write_identity(directory, "caller", spiffe=CALLER))


@dataclass
class BenchStack:
    state: Path
    split: CoreSplit
    certs: Certs
    group: ProcessGroup
    upstream_key: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def upstream_base(self) -> str:
        return f"http://127.0.0.1:{self.ports['upstream']}"

    def start_process(self, name: str, argv: list[str], env: dict[str, str], port: int, *, sut: bool,
                      wait: bool = True) -> None:
        """Start a child pinned to its side; with `wait`, return once it listens on `port` (30 s at most)."""
        with on_cores(self.split.sut if sut else self.split.driver):
            process = self.group.start(name, argv, env, port=port if wait else None)
        self.ports[name] = port
        self.pids[name] = process.pid

    def stop(self) -> None:
        self.group.stop()


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    """A second port of an already started process (the proxy's HTTP front opens after its gRPC port)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s") from None
            time.sleep(0.1)


def start(state: Path, split: CoreSplit, *, proxy_log_level: str = "info") -> BenchStack:
    """Start OpenBao, upstream, keyservice, proxy and floor; on any failure stop what started and re-raise."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    stack = BenchStack(state=state, split=split, certs=Certs.create(state / "certs"),
                       group=ProcessGroup(state / "logs"), upstream_key=fake_openai_key())
    try:
        _start(stack, proxy_log_level)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start(stack: BenchStack, proxy_log_level: str) -> None:
    py = sys.executable
    certs = stack.certs
    vault_port = free_port()
    token = "dev-" + secrets.token_hex(16)
    argv, bao_env = dev_server(vault_port, token)
    stack.start_process("openbao", argv, bao_env, vault_port, sut=True)

    up_port = free_port()
    stack.start_process("upstream", [py, "-m", "devstack.upstream", "--port", str(up_port)], clean_env(), up_port,
                        sut=False)
    base = stack.upstream_base
    overrides = f"openai={base}/v1"

    ks_port = free_port()
    ks_env = clean_env(
        BYOK_GRPC_ADDR=f"127.0.0.1:{ks_port}", BYOK_HEALTH_ADDR="", BYOK_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        BYOK_TLS_CERT=certs.keyservice.cert, BYOK_TLS_KEY=certs.keyservice.key, BYOK_TLS_CA=certs.keyservice.ca,
        BYOK_DATABASE_URL=f"sqlite:///{(stack.state / 'keyservice.db').resolve()}", VAULT_ADDR=f"http://127.0.0.1:{vault_port}",
        VAULT_TOKEN=token, BYOK_ROLES=f"{ADMIN}=admin,{PROXY}=proxy", BYOK_PROVIDER_BASE_URLS=overrides,
        BYOK_LEASE_TTL_SECONDS=str(LEASE_TTL_SECONDS), BYOK_LOG_LEVEL="warning", BYOK_DEV_LOOPBACK_HTTP="1")
    stack.start_process("keyservice", [py, "-m", "keyservice"], ks_env, ks_port, sut=True)
    stack.ports["keyservice_metrics"] = int(ks_env["BYOK_METRICS_ADDR"].rsplit(":", 1)[1])

    proxy_port = free_port()
    http_port = free_port()  # the HTTPS front (mTLS, native passthrough at /openai/…)
    proxy_env = clean_env(
        BYOK_HTTP_ADDR=f"127.0.0.1:{http_port}",
        BYOK_GRPC_ADDR=f"127.0.0.1:{proxy_port}", BYOK_HEALTH_ADDR="", BYOK_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        BYOK_TLS_CERT=certs.proxyservice.cert, BYOK_TLS_KEY=certs.proxyservice.key,
        BYOK_TLS_CA=certs.proxyservice.ca, BYOK_KEYSERVICE_ADDR=f"localhost:{ks_port}",
        BYOK_LOG_LEVEL=proxy_log_level, BYOK_DEV_LOOPBACK_HTTP="1")
    stack.start_process("proxy", [py, "-m", "proxyservice"], proxy_env, proxy_port, sut=True)
    stack.ports["proxy_metrics"] = int(proxy_env["BYOK_METRICS_ADDR"].rsplit(":", 1)[1])
    _wait_listening(http_port)
    stack.ports["proxy_http"] = http_port

    floor_port = free_port()
    tls = certs.proxyservice  # same certificate and CA as the proxy: same TLS work per connection
    stack.start_process("floor", [py, "-m", "bench.floor", "--port", str(floor_port), "--cert", tls.cert,
                                  "--key", tls.key, "--ca", tls.ca], clean_env(), floor_port, sut=True)
    floor_http_port = free_port()
    stack.start_process("floor_http", [py, "-m", "bench.floor", "--http", "--port", str(floor_http_port),
                                       "--cert", tls.cert, "--key", tls.key, "--ca", tls.ca], clean_env(),
                        floor_http_port, sut=True)


async def seed(stack: BenchStack, cold_orgs: list[str]) -> None:
    """One OpenAI credential and a caller binding for the warm org and each cold org (all the same fake key)."""
    import grpc

    channel = grpc.aio.secure_channel(f"localhost:{stack.ports['keyservice']}",
                                      channel_credentials(stack.certs.admin))
    try:
        admin = kpb_grpc.KeyServiceStub(channel)
        for org in [WARM_ORG, *cold_orgs]:
            await admin.CreateCredential(kpb.CreateCredentialRequest(
                provider="openai", scope=kpb.Scope(org_id=org), name="main", api_key=stack.upstream_key),
                timeout=30)
            await admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
                binding=kpb.CallerBinding(caller_identity=CALLER, org_id=org)), timeout=30)
    finally:
        await channel.close()
