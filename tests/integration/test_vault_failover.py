"""keyservice's Vault adapter with several Vault addresses (BYOK_VAULT_ADDR as a comma-separated list, the nodes of
an HA cluster): it moves on from a node it cannot reach or that answers sealed, at once and without using a
retry, keeps the node that works, and reports healthy through another node. Against real OpenBao dev servers."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from devstack.ports import free_port
from keyservice import errors
from keyservice.settings import KeyServiceSettings
from keyservice.vault import VaultClient, VaultSettings
from tests.support.bao import BaoDevServer


def fake_key() -> str:
    return "sk-test-" + secrets.token_urlsafe(24)


def dead_addr() -> str:
    """A loopback address nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


class _SealedVault(BaseHTTPRequestHandler):
    """A node that answers every request the way a sealed Vault does (503)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        data = json.dumps({"errors": ["Vault is sealed"], "initialized": True, "sealed": True}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_GET  # noqa: N815 - http.server's naming

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sealed_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SealedVault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def settings_for(addrs: list[str], token: str, **kw: object) -> VaultSettings:
    return VaultSettings(addr=",".join(addrs), token=token, kv_mount="secret",
                         kv_prefix="byok-failover-" + secrets.token_hex(4), timeout_seconds=2, **kw)  # type: ignore[arg-type]


def test_addresses_are_parsed_from_the_env_and_each_must_be_a_url(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    env = {"BYOK_TLS_CERT": str(tmp_path / "tls.crt"), "BYOK_TLS_KEY": str(tmp_path / "tls.key"),
           "BYOK_TLS_CA": str(tmp_path / "ca.crt"), "VAULT_ADDR": "http://vault:8200", "VAULT_TOKEN": "t",
           "BYOK_ROLES": "spiffe://x/admin=admin"}
    assert KeyServiceSettings.from_env(env).vault.addrs == ("http://vault:8200",)
    listed = KeyServiceSettings.from_env(env | {"BYOK_VAULT_ADDR": "http://v-0:8200, http://v-1:8200/,http://v-2:8200"})
    assert listed.vault.addrs == ("http://v-0:8200", "http://v-1:8200", "http://v-2:8200")
    with pytest.raises(errors.InvalidArgument, match="vault.addr"):
        VaultClient(VaultSettings(addr="http://v-0:8200,v-1:8200", token="t"))


def test_an_unreachable_first_node_is_passed_over_without_a_retry(bao: BaoDevServer) -> None:
    settings = settings_for([dead_addr(), bao.addr], bao.root_token, max_retries=0)
    with capture_logs() as logs, VaultClient(settings) as vault:
        path = vault.credential_path("org-f", "cred")
        key = fake_key()
        vault.write_secret(path, key, org_id="org-f", metadata={}, cas=0)  # max_retries=0: only the failover
        assert vault.read_secret(path, org_id="org-f") == key
        assert vault.addr == bao.addr
        vault.delete_secret(path)
    events = [e["event"] for e in logs]
    assert events.count("vault_failover") == 1 and "vault_retry" not in events


def test_a_sealed_node_is_passed_over_and_health_looks_through_it(bao: BaoDevServer, sealed_node: str) -> None:
    settings = settings_for([sealed_node, bao.addr], bao.root_token, max_retries=0)
    with VaultClient(settings) as vault:
        assert vault.health() is True  # the sealed node answered 503: health moved on to the next
        assert vault.addr == bao.addr
    with VaultClient(settings) as vault:
        path = vault.credential_path("org-s", "cred")
        vault.write_secret(path, fake_key(), org_id="org-s", metadata={}, cas=0)
        assert vault.addr == bao.addr
        vault.delete_secret(path)


def test_a_node_that_dies_is_left_for_the_next_one(bao: BaoDevServer) -> None:
    own = BaoDevServer().start()  # the node that dies (the shared server must keep running)
    try:
        settings = settings_for([own.addr, bao.addr], bao.root_token, max_retries=0)
        with VaultClient(settings) as vault:
            assert vault.health() is True and vault.addr == own.addr
            own.stop()
            path = vault.credential_path("org-d", "cred")
            key = fake_key()
            vault.write_secret(path, key, org_id="org-d", metadata={}, cas=0)
            assert vault.addr == bao.addr
        with VaultClient(settings_for([bao.addr], bao.root_token)) as direct:
            assert direct.read_secret(path, org_id="org-d") == key  # it was written on the surviving node
            direct.delete_secret(path)
    finally:
        own.stop()


def test_when_every_node_is_down_the_call_fails_unavailable_after_its_retries() -> None:
    settings = settings_for([dead_addr(), dead_addr(), dead_addr()], "t", max_retries=1)
    with capture_logs() as logs, VaultClient(settings) as vault, pytest.raises(errors.VaultUnavailable):
        vault.read_secret("byok/o/c", org_id="o")
    events = [e["event"] for e in logs]
    # Two immediate moves (to the 2nd and 3rd node), a third (back to the 1st) with the one backoff retry, and a
    # fourth as that retry fails too.
    assert events.count("vault_retry") == 1 and events.count("vault_failover") == 4
    with VaultClient(settings) as vault:
        assert vault.health() is False


def test_threads_that_saw_the_same_node_fail_move_on_by_one_node_only() -> None:
    addrs = [dead_addr(), dead_addr(), dead_addr()]
    with VaultClient(settings_for(addrs, "t")) as vault:
        # Two calls that both used node 0 fail: the second one's failover must not skip node 1.
        assert vault._fail_over(0) and vault._fail_over(0)  # noqa: SLF001 - the concurrency contract itself
        assert vault.addr == addrs[1]
