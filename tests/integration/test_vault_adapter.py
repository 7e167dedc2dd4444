"""keyservice.vault against a real OpenBao dev server: KV/CAS, metadata, envelope mode, auth, errors."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from keyservice import errors
from keyservice.vault import MANAGED_BY, StoredSecret, VaultClient, VaultSettings
from tests.support.bao import BaoDevServer


def fake_key() -> str:
    """Shaped like a provider key, random, and fake."""
    return "sk-test-" + secrets.token_urlsafe(24)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Mounts:
    kv: str
    transit: str


@pytest.fixture(scope="module")
def mounts(bao: BaoDevServer) -> Iterator[Mounts]:
    """A KV v2 and a transit mount of this module's own, so nothing else in the session interferes."""
    m = Mounts(kv=unique("kv-adapter"), transit=unique("transit-adapter"))
    bao.cli("secrets", "enable", f"-path={m.kv}", "kv-v2")
    bao.cli("secrets", "enable", f"-path={m.transit}", "transit")
    yield m
    bao.cli("secrets", "disable", m.kv, check=False)
    bao.cli("secrets", "disable", m.transit, check=False)


@pytest.fixture
def plain(bao: BaoDevServer, mounts: Mounts) -> VaultSettings:
    """Plain KV mode, root token, a prefix of the test's own."""
    return VaultSettings(addr=bao.addr, token=bao.root_token, kv_mount=mounts.kv, kv_prefix=unique("byok"),
                         transit_mount=mounts.transit, timeout_seconds=5, max_retries=2)


@pytest.fixture
def envelope(plain: VaultSettings) -> Iterator[VaultClient]:
    """Envelope mode with a fresh derived transit key."""
    with VaultClient(replace(plain, transit_key=unique("byok-key"))) as client:
        client.ensure_transit_key()
        yield client


def token_for(bao: BaoDevServer, policy_name: str, hcl: str, *args: str) -> str:
    bao.cli("policy", "write", policy_name, "-", input=hcl)
    out = bao.cli("token", "create", "-format=json", f"-policy={policy_name}", *args).stdout
    return str(json.loads(out)["auth"]["client_token"])


def kv_policy(mounts: Mounts) -> str:
    return (f'path "{mounts.kv}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}\n'
            f'path "{mounts.transit}/*" {{ capabilities = ["create", "read", "update"] }}\n')


# -- KV, CAS, metadata --------------------------------------------------------------------------------


def test_write_read_rotate_with_check_and_set(plain: VaultSettings) -> None:
    observed: list[tuple[str, float, str]] = []
    with VaultClient(plain, observe=lambda *a: observed.append(a)) as vault:
        path = vault.credential_path("org-1", "cred-1")
        assert path == f"{plain.kv_prefix}/org-1/cred-1"
        first, second = fake_key(), fake_key()

        stored = vault.write_secret(path, first, org_id="org-1", metadata={"provider": "openai"}, cas=0)
        assert stored == StoredSecret(plain.kv_mount, path, 1, "", 0)
        assert vault.read_secret(path, org_id="org-1") == first
        with pytest.raises(errors.Aborted):  # cas=0: must not exist yet
            vault.write_secret(path, second, org_id="org-1", metadata={}, cas=0)

        assert vault.write_secret(path, second, org_id="org-1", metadata={}, cas=1).version == 2
        with pytest.raises(errors.Aborted):  # stale: version 1 is no longer current
            vault.write_secret(path, fake_key(), org_id="org-1", metadata={}, cas=1)
        assert vault.read_secret(path, org_id="org-1") == second
        assert vault.read_secret(path, 1, org_id="org-1") == first

        with pytest.raises(errors.NotFound):
            vault.read_secret(vault.credential_path("org-1", "missing"), org_id="org-1")

    outcomes = {(op, outcome) for op, _, outcome in observed}
    assert {("kv_write", "ok"), ("kv_metadata_write", "ok"), ("kv_read", "ok"), ("kv_write", "aborted"),
            ("kv_read", "not_found")} <= outcomes
    assert all(seconds >= 0 for _, seconds, _ in observed)


def test_custom_metadata_is_visible_to_the_cli(bao: BaoDevServer, plain: VaultSettings) -> None:
    with VaultClient(plain) as vault:
        path = vault.credential_path("org-2", "cred-2")
        vault.write_secret(path, fake_key(), org_id="org-2", cas=0,
                           metadata={"provider": "anthropic", "name": "team key", "credential_id": "cred-2"})
        out = bao.cli("kv", "metadata", "get", "-format=json", f"-mount={plain.kv_mount}", path).stdout
        assert json.loads(out)["data"]["custom_metadata"] == {
            "org": "org-2", "provider": "anthropic", "name": "team key", "credential_id": "cred-2",
            "managed_by": MANAGED_BY}

        vault.set_custom_metadata(path, {"org": "org-2", "provider": "anthropic", "name": "renamed"})
        meta = vault.read_metadata(path)
        assert meta["custom_metadata"] == {"org": "org-2", "provider": "anthropic", "name": "renamed",
                                           "managed_by": MANAGED_BY}
        assert meta["current_version"] == 1 and set(meta["versions"]) == {1} and meta["created_time"]

        with pytest.raises(errors.InvalidArgument):
            vault.write_secret(path, fake_key(), org_id="org-2", metadata={"x": "y" * 600}, cas=1)


def test_delete_removes_every_version_and_destroy_removes_some(plain: VaultSettings) -> None:
    with VaultClient(plain) as vault:
        path = vault.credential_path("org-3", "cred-3")
        vault.write_secret(path, fake_key(), org_id="org-3", metadata={}, cas=0)
        latest = fake_key()
        vault.write_secret(path, latest, org_id="org-3", metadata={}, cas=1)

        vault.destroy_versions(path, [1])
        with pytest.raises(errors.NotFound):
            vault.read_secret(path, 1, org_id="org-3")
        assert vault.read_metadata(path)["versions"][1]["destroyed"] is True
        assert vault.read_secret(path, org_id="org-3") == latest

        vault.delete_secret(path)
        with pytest.raises(errors.NotFound):
            vault.read_metadata(path)
        for version in (1, 2, None):
            with pytest.raises(errors.NotFound):
                vault.read_secret(path, version, org_id="org-3")
        vault.delete_secret(path)  # already gone: fine


def test_list_credential_paths(plain: VaultSettings) -> None:
    with VaultClient(plain) as vault:
        assert vault.list_credential_paths() == []
        paths = [vault.credential_path(org, cred) for org, cred in
                 [("org-a", "c1"), ("org-a", "c2"), ("org-b", "c1")]]
        for path in paths:
            vault.write_secret(path, fake_key(), org_id="org", metadata={}, cas=0)
        assert vault.list_credential_paths() == sorted(paths)


def test_reads_a_plain_value_written_with_the_cli(bao: BaoDevServer, envelope: VaultClient,
                                                  plain: VaultSettings) -> None:
    key = fake_key()
    path = f"{plain.kv_prefix}/org-ops/registered"
    # `api_key=-` reads the value from stdin: the key never appears in argv.
    bao.cli("kv", "put", f"-mount={plain.kv_mount}", path, "api_key=-", input=key)
    assert envelope.read_secret(path, org_id="org-ops") == key
    assert envelope.rewrap(path, org_id="org-ops") is None  # nothing to rewrap in a plain value


# -- envelope mode ------------------------------------------------------------------------------------


def test_envelope_mode_stores_only_ciphertext(bao: BaoDevServer, envelope: VaultClient,
                                              plain: VaultSettings) -> None:
    key = fake_key()
    path = envelope.credential_path("org-e", "cred-e")
    stored = envelope.write_secret(path, key, org_id="org-e", metadata={"provider": "openai"}, cas=0)
    assert stored.version == 1 and stored.transit_key_version == 1 and stored.transit_key

    raw = bao.api("GET", f"{plain.kv_mount}/data/{path}")
    raw.raise_for_status()
    value = raw.json()["data"]["data"]
    assert set(value) == {"ciphertext", "transit_key"}
    assert value["ciphertext"].startswith("vault:v1:")
    for form in (key, base64.b64encode(key.encode()).decode(), base64.urlsafe_b64encode(key.encode()).decode()):
        assert form not in raw.text

    assert envelope.read_secret(path, org_id="org-e") == key
    # The key is derived per org: another tenant's context cannot decrypt it.
    with pytest.raises(errors.KeyServiceError):
        envelope.read_secret(path, org_id="org-other")


def test_rewrap_after_rotation_without_plaintext(bao: BaoDevServer, envelope: VaultClient,
                                                 plain: VaultSettings, mounts: Mounts) -> None:
    key = fake_key()
    path = envelope.credential_path("org-r", "cred-r")
    envelope.write_secret(path, key, org_id="org-r", metadata={}, cas=0)
    transit_key = envelope.transit_key_info()["name"]
    assert envelope.rewrap(path, org_id="org-r") is None  # already on the latest version

    bao.cli("write", "-f", f"{mounts.transit}/keys/{transit_key}/rotate")
    assert envelope.transit_key_info()["latest_version"] == 2

    # A token that may rewrap but not decrypt proves the rewrap never sees the plaintext.
    token = token_for(bao, unique("rewrap-only"),
                      f'path "{mounts.kv}/*" {{ capabilities = ["create", "read", "update"] }}\n'
                      f'path "{mounts.transit}/keys/*" {{ capabilities = ["read"] }}\n'
                      f'path "{mounts.transit}/rewrap/*" {{ capabilities = ["update"] }}\n', "-ttl=5m")
    with VaultClient(replace(plain, token=token, transit_key=transit_key)) as rewrapper:
        stored = rewrapper.rewrap(path, org_id="org-r")
        assert stored is not None and (stored.version, stored.transit_key_version) == (2, 2)
        with pytest.raises(errors.PermissionDenied):
            rewrapper.read_secret(path, org_id="org-r")
    assert bao.api("GET", f"{plain.kv_mount}/data/{path}").json()["data"]["data"]["ciphertext"] \
        .startswith("vault:v2:")
    assert envelope.rewrap(path, org_id="org-r") is None

    bao.cli("write", f"{mounts.transit}/keys/{transit_key}/config", "min_decryption_version=2")
    assert envelope.transit_key_info()["min_decryption_version"] == 2
    assert envelope.read_secret(path, org_id="org-r") == key
    with pytest.raises(errors.KeyServiceError):  # version 1 of the KV secret is now undecryptable
        envelope.read_secret(path, 1, org_id="org-r")


def test_ensure_transit_key_is_idempotent(envelope: VaultClient) -> None:
    envelope.ensure_transit_key()
    info = envelope.transit_key_info()
    assert (info["latest_version"], info["min_decryption_version"]) == (1, 1)


# -- auth ---------------------------------------------------------------------------------------------


def approle_settings(bao: BaoDevServer, plain: VaultSettings, mounts: Mounts, *role_args: str) -> VaultSettings:
    """Enable AppRole at a mount of its own with one role allowed to use the module's mounts."""
    mount, role, policy = unique("approle"), "keyservice", unique("keyservice")
    bao.cli("auth", "enable", f"-path={mount}", "approle")
    bao.cli("policy", "write", policy, "-", input=kv_policy(mounts))
    bao.cli("write", f"auth/{mount}/role/{role}", f"token_policies={policy}", *role_args)
    role_id = json.loads(bao.cli("read", "-format=json", f"auth/{mount}/role/{role}/role-id").stdout)["data"]
    secret_id = json.loads(bao.cli("write", "-f", "-format=json",
                                   f"auth/{mount}/role/{role}/secret-id").stdout)["data"]
    return replace(plain, auth="approle", token=None, approle_mount=mount, role_id=role_id["role_id"],
                   secret_id=secret_id["secret_id"])


def test_approle_relogin_past_max_ttl_shared_by_threads(bao: BaoDevServer, plain: VaultSettings,
                                                        mounts: Mounts) -> None:
    settings = approle_settings(bao, plain, mounts, "token_ttl=2s", "token_max_ttl=4s")
    key = fake_key()
    failures: list[str] = []
    calls = [0]

    with capture_logs() as logs, VaultClient(settings) as vault:
        path = vault.credential_path("org-ar", "cred")
        vault.write_secret(path, key, org_id="org-ar", metadata={}, cas=0)
        deadline = time.monotonic() + 6  # across the 4 s max TTL

        def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    assert vault.read_secret(path, org_id="org-ar") == key
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    failures.append(type(exc).__name__)
                time.sleep(0.05)  # pace the calls; the loop runs until the deadline either way

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert failures == []
    assert calls[0] > 40
    events = [e["event"] for e in logs]
    assert 2 <= events.count("vault_login") <= 4  # first login + re-login(s) past max TTL, no stampede
    assert "vault_token_renewed" in events
    bao.cli("auth", "disable", settings.approle_mount, check=False)


def test_revoked_token_is_replaced_and_the_call_retried(bao: BaoDevServer, plain: VaultSettings,
                                                        mounts: Mounts) -> None:
    settings = approle_settings(bao, plain, mounts, "token_ttl=5m")
    key = fake_key()
    with capture_logs() as logs, VaultClient(settings) as vault:
        path = vault.credential_path("org-rv", "cred")
        vault.write_secret(path, key, org_id="org-rv", metadata={}, cas=0)
        bao.cli("token", "revoke", "-mode=path", f"auth/{settings.approle_mount}/")  # behind our back
        assert vault.read_secret(path, org_id="org-rv") == key
    events = [e["event"] for e in logs]
    assert events.count("vault_token_rejected_relogin") == 1 and events.count("vault_login") == 2
    bao.cli("auth", "disable", settings.approle_mount, check=False)


def test_static_token_is_renewed_before_expiry(bao: BaoDevServer, plain: VaultSettings, mounts: Mounts) -> None:
    # 4 s: renewal falls due at 2/3 of it, leaving 1.3 s of slack for a stall on a busy machine before the
    # token (static: nothing to log in with) would expire unrenewed.
    token = token_for(bao, unique("kv"), kv_policy(mounts), "-ttl=4s")
    key = fake_key()
    with capture_logs() as logs, VaultClient(replace(plain, token=token)) as vault:
        path = vault.credential_path("org-t", "cred")
        vault.write_secret(path, key, org_id="org-t", metadata={}, cas=0)
        deadline = time.monotonic() + 5.5  # past the token's initial 4 s TTL
        while time.monotonic() < deadline:
            assert vault.read_secret(path, org_id="org-t") == key
            time.sleep(0.1)  # pace the calls
    assert "vault_token_renewed" in [e["event"] for e in logs]


def test_refused_login_is_unavailable(bao: BaoDevServer, plain: VaultSettings, mounts: Mounts) -> None:
    settings = replace(approle_settings(bao, plain, mounts), secret_id="not-the-secret-id")
    with VaultClient(settings) as vault, pytest.raises(errors.VaultUnavailable) as info:
        vault.read_secret("x/y", org_id="o")
    assert info.value.message == "vault login failed (check the auth settings)"
    bao.cli("auth", "disable", settings.approle_mount, check=False)


def test_kubernetes_auth_without_a_jwt_file_is_unavailable(plain: VaultSettings, tmp_path: Path) -> None:
    settings = replace(plain, auth="kubernetes", token=None, k8s_role="keyservice",
                       k8s_jwt_path=str(tmp_path / "missing"))
    with VaultClient(settings) as vault, pytest.raises(errors.VaultUnavailable):
        vault.read_secret("x/y", org_id="o")


def test_settings_are_validated_and_hide_secrets(plain: VaultSettings) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        VaultClient(replace(plain, auth="approle", token=None))
    assert info.value.field == "vault.role_id"
    with pytest.raises(errors.InvalidArgument) as info:
        VaultClient(replace(plain, auth="ldap"))
    assert info.value.field == "vault.auth"
    assert plain.token is not None and plain.token not in repr(plain)


# -- errors -------------------------------------------------------------------------------------------


def test_token_without_permission_is_denied(bao: BaoDevServer, plain: VaultSettings) -> None:
    token = token_for(bao, unique("nothing"), 'path "nothing/*" { capabilities = ["read"] }\n', "-ttl=5m")
    with VaultClient(replace(plain, token=token)) as vault:
        path = vault.credential_path("org-p", "cred")
        with pytest.raises(errors.PermissionDenied):
            vault.write_secret(path, fake_key(), org_id="org-p", metadata={}, cas=0)
        with pytest.raises(errors.PermissionDenied):
            vault.read_secret(path, org_id="org-p")


def test_sealed_or_stopped_vault_is_unavailable_after_bounded_retries() -> None:
    server = BaoDevServer().start()  # our own: the shared one must keep running
    try:
        settings = VaultSettings(addr=server.addr, token=server.root_token, kv_mount="secret", kv_prefix="byok",
                                 timeout_seconds=2, max_retries=2)
        with VaultClient(settings) as vault:
            path = vault.credential_path("org-u", "cred")
            vault.write_secret(path, fake_key(), org_id="org-u", metadata={}, cas=0)
            assert vault.health() is True

            server.cli("operator", "seal")
            for _ in range(2):  # sealed (503), then stopped (connection refused)
                with capture_logs() as logs, pytest.raises(errors.VaultUnavailable):
                    vault.read_secret(path, org_id="org-u")
                assert [e["event"] for e in logs].count("vault_retry") == settings.max_retries
                assert vault.health() is False
                server.stop()
    finally:
        server.stop()


class _EchoingVault(BaseHTTPRequestHandler):
    """A misbehaving Vault stand-in that echoes the request body (a key, here) into its 403 error, as
    hvac would then carry it in the exception text. Answers the token lookup so the call gets that far."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/v1/auth/token/lookup-self"):
            self._send(200, {"data": {"ttl": 0, "renewable": False}})
        else:
            self._send(403, {"errors": [f"permission denied: {self.path}"]})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._send(403, {"errors": [f"permission denied for {body}"]})

    do_PUT = do_POST  # noqa: N815 - http.server's naming

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


def test_forbidden_text_with_a_key_is_dropped() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingVault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = fake_key()
    try:
        settings = VaultSettings(addr=f"http://127.0.0.1:{server.server_address[1]}", token="fake-token",
                                 kv_mount="secret", kv_prefix="byok", max_retries=0)
        with capture_logs() as logs, VaultClient(settings) as vault:
            with pytest.raises(errors.PermissionDenied) as info:
                vault.write_secret("byok/o/c", key, org_id="o", metadata={}, cas=0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    exc = info.value
    rendered = "".join(traceback.format_exception(exc)) + str(exc) + repr(exc) + repr(logs)
    assert key not in rendered and base64.b64encode(key.encode()).decode() not in rendered
    assert exc.__cause__ is None and exc.__suppress_context__
