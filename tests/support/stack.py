"""Start the real services in-process for integration and e2e tests: dev certificates for every identity,
keyservice on a real OpenBao and a real database, and mTLS gRPC clients for admin and proxy roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from byok.keys.v1 import key_service_pb2_grpc
from byokcommon.devcerts import CertificateAuthority, spiffe_id
from byokcommon.egress import EgressPolicy
from byokcommon.tls import TlsFiles, channel_credentials
from keyservice.settings import KeyServiceSettings
from keyservice.vault import VaultSettings
from tests.support.bao import BaoDevServer

# The test stacks' providers are loopback stand-ins (plain http on 127.0.0.1), as `make run`'s are: they need
# the development allowance (byokcommon/egress.py). Tests of the production rules pass egress=EgressPolicy().
DEV_EGRESS = EgressPolicy(dev_loopback_http=True)

ADMIN = spiffe_id("admin")
PROXY = spiffe_id("proxyservice")
CALLER = spiffe_id("caller/chat-api")


@dataclass
class Identities:
    """A CA and one certificate per identity, as files (the services read certificates from disk)."""

    directory: Path
    ca: CertificateAuthority
    keyservice: TlsFiles
    proxyservice: TlsFiles
    admin: TlsFiles
    caller: TlsFiles

    @classmethod
    def create(cls, directory: Path) -> Identities:
        ca = CertificateAuthority.create()
        return cls(directory=directory, ca=ca,
                   keyservice=ca.write_identity(directory, "keyservice", spiffe=spiffe_id("keyservice")),
                   proxyservice=ca.write_identity(directory, "proxyservice", spiffe=PROXY),
                   admin=ca.write_identity(directory, "admin", spiffe=ADMIN),
                   caller=ca.write_identity(directory, "caller", spiffe=CALLER))


def keyservice_settings(bao: BaoDevServer, ids: Identities, database_url: str, **overrides: Any
                        ) -> KeyServiceSettings:
    """Settings for a test keyservice on a unique KV prefix of the shared OpenBao (tests stay apart)."""
    vault_overrides = overrides.pop("vault", {})
    vault = VaultSettings(addr=bao.addr, token=bao.root_token, kv_prefix="byok-test-" + uuid.uuid4().hex[:8],
                          max_retries=1, timeout_seconds=2.0)
    vault = replace(vault, **vault_overrides)
    settings = KeyServiceSettings(
        grpc_addr="127.0.0.1:0", tls=ids.keyservice, vault=vault, database_url=database_url,
        roles={ADMIN: "admin", PROXY: "proxy"}, health_addr="127.0.0.1:0", metrics_addr="127.0.0.1:0",
        reconcile_interval_seconds=3600, reconcile_grace_seconds=0, egress=DEV_EGRESS)
    return replace(settings, **overrides)


def secure_channel(port: int, files: TlsFiles) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(f"localhost:{port}", channel_credentials(files))


def keys_stub(channel: grpc.aio.Channel) -> key_service_pb2_grpc.KeyServiceStub:
    return key_service_pb2_grpc.KeyServiceStub(channel)


def proxy_settings(ids: Identities, keyservice_port: int, **overrides: Any) -> Any:
    from proxyservice.settings import ProxySettings

    settings = ProxySettings(grpc_addr="127.0.0.1:0", tls=ids.proxyservice,
                             keyservice_addr=f"localhost:{keyservice_port}", health_addr="127.0.0.1:0",
                             metrics_addr="127.0.0.1:0", http_addr="127.0.0.1:0", upstream_read_timeout=10.0,
                             keyservice_timeout=2.0, egress=DEV_EGRESS)
    return replace(settings, **overrides)


def upstream_base_urls(base_url: str) -> dict[str, str]:
    """Every provider pointed at the local upstream (as `make run` does)."""
    urls = {name: f"{base_url}/v1" for name in ("openai", "anthropic", "groq", "together", "deepseek",
                                                  "fireworks", "openrouter")}
    urls["mistral"] = f"{base_url}/mistral/v1"  # the upstream validates requests there as strictly as Mistral
    urls["gemini"] = f"{base_url}/v1beta"
    return urls
