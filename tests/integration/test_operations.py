"""The recipes of docs/operations.md, executed as written: the vault CLI (the real `bao` binary), the real
byokctl (`python -m byokctl`), deploy/vault/bootstrap.sh and deploy/vault/raise-min-decryption-version.sh,
against a FRESH OpenBao bootstrapped with default names (secret/byok, transit/byok, pki_int, approle) and
started with the shipped audit-device snippet, keyservice logged in with AppRole on PKI-issued certificates,
two proxies and the local provider upstream. Operators act with the shipped operator / ops-import policies,
never root. The Vault-outage recipe uses a second dev server of its own (it gets sealed and killed). The cloud
recipes (§2a) derive from local stand-ins of STS, Google's token endpoint and Entra ID (devstack/authfakes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as ppb
from byok.proxy.v1 import chat_service_pb2_grpc as ppb_grpc
from byokcommon.tls import TlsFiles, channel_credentials
from devstack.authfakes import AuthFakes, Role, shapes
from devstack.bao import dev_server
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.derive import DeriveSettings
from keyservice.server import SERVICE_NAME, KeyServiceApp, create_server
from keyservice.settings import KeyServiceSettings
from keyservice.vault import VaultSettings
from proxyservice.server import ProxyApp
from proxyservice.server import create_server as create_proxy
from tests.integration.test_byokctl import (
    REPO,
    ServiceLoop,
    byokctl,
    client_env,
    fake_openai_key,
    ok,
    ok_json,
    table,
)
from tests.integration.test_cert_reload import replace_file, served_certificate
from tests.integration.test_vault_bootstrap import AUDIT_SNIPPET, base_env, cli_binary, run_bootstrap, wait_healthy
from tests.support.bao import BaoDevServer
from tests.support.stack import ADMIN, CALLER, DEV_EGRESS, PROXY, proxy_settings, upstream_base_urls

RAISE_MIN = REPO / "deploy" / "vault" / "raise-min-decryption-version.sh"
KEYSERVICE_ID = "spiffe://byok.local/keyservice"

pytestmark = pytest.mark.timeout(240)


# -- the vault CLI, as an operator runs it -------------------------------------------------------------------
@dataclass
class Vault:
    """`vault …` against one server (the real `bao` binary; same commands, same flags)."""

    addr: str
    token: str

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        tok = self.token if token is None else token
        return env | {"VAULT_ADDR": self.addr, "VAULT_TOKEN": tok, "BAO_ADDR": self.addr, "BAO_TOKEN": tok}

    def run(self, *args: str, token: str | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([cli_binary(), *args], input=stdin, env=self.env(token), capture_output=True,
                             text=True, timeout=60)
        if check:
            assert run.returncode == 0, f"vault {' '.join(args[:3])}: {run.stderr}"
        return run

    def json(self, *args: str, token: str | None = None) -> Any:
        """`vault <command words> -format=json <path> [k=v…]` (flags go before the path)."""
        at = next(i for i, a in enumerate(args) if "/" in a)
        return json.loads(self.run(*args[:at], "-format=json", *args[at:], token=token).stdout)

    def policy_token(self, policy: str) -> str:
        created = json.loads(self.run("token", "create", f"-policy={policy}", "-no-default-policy", "-ttl=1h",
                                      "-format=json").stdout)
        return str(created["auth"]["client_token"])


def issue(vault: Vault, role: str, common_name: str, uri: str, directory: Path, token: str) -> TlsFiles:
    """The doc's recipe: `vault write -format=json pki_int/issue/<role> …`, then certificate + issuing CA
    into <name>.crt, the private key into <name>.key (0600), the root CA into ca.crt."""
    names = ["alt_names=localhost"] if role in ("keyservice", "proxyservice") else []  # servers only
    data = vault.json("write", f"pki_int/issue/{role}", f"common_name={common_name}", f"uri_sans={uri}",
                      *names, "ttl=24h", token=token)["data"]
    directory.mkdir(parents=True, exist_ok=True)
    name = common_name.split(".")[0]
    replace_file(directory / f"{name}.key", data["private_key"].encode() + b"\n")
    replace_file(directory / f"{name}.crt", f"{data['certificate']}\n{data['issuing_ca']}\n".encode())
    ca = directory / "ca.crt"
    if not ca.exists():
        ca.write_text(vault.run("read", "-field=certificate", "pki/cert/ca", token=token).stdout + "\n")
    return TlsFiles(str(directory / f"{name}.crt"), str(directory / f"{name}.key"), str(ca))


def serial_of(files: TlsFiles) -> int:
    return x509.load_pem_x509_certificate(Path(files.cert).read_bytes()).serial_number


# -- the system ----------------------------------------------------------------------------------------------
@dataclass
class Prod:
    server: BaoDevServer
    vault: Vault
    operator: str  # token with byok-operator
    issuer: str  # token with byok-pki-issuer (service and admin certificates)
    importer: str  # token with byok-ops-import
    bootstrap: subprocess.CompletedProcess[str]
    out_dir: Path
    audit_log: Path
    certs: dict[str, TlsFiles]
    services: ServiceLoop
    upstream: FakeUpstream
    keyservice: KeyServiceApp
    proxies: list[ProxyApp]
    env: dict[str, str]
    work: Path
    fakes: AuthFakes
    channels: list[grpc.Channel] = field(default_factory=list)

    def byokctl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return byokctl(*args, env=self.env, stdin=stdin)

    def add_key(self, org: str, key: str, name: str = "main") -> str:
        created = ok_json(self.byokctl("--json", "keys", "add", "--org", org, "--provider", "openai",
                                       "--name", name, stdin=key))
        return str(created["credential_id"])

    def chat(self, proxy: int, org: str) -> grpc.StatusCode:
        """One unary chat through proxy #`proxy` as the caller service; the gRPC status it ends with."""
        return chat(self.proxies[proxy].port, self.certs["caller"], org)


def chat(port: int, caller: TlsFiles, org: str) -> grpc.StatusCode:
    request = ppb.ChatRequest(parameters=ppb.ChatParameters(
        tenant=ppb.Tenant(org_id=org), model="gpt-4o-mini",
        messages=[ppb.Message(role=ppb.ROLE_USER, content="hi")]))
    with grpc.secure_channel(f"localhost:{port}", channel_credentials(caller)) as channel:
        try:
            ppb_grpc.ChatServiceStub(channel).Chat(request, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]


def start_bao(work: Path, *args: str, port: int = 0, token: str = "") -> BaoDevServer:
    server = BaoDevServer(**({"port": port} if port else {}), **({"root_token": token} if token else {}))
    argv, env = dev_server(server.port, server.root_token, *args)
    server.log_path = work / f"bao-{server.port}.log"
    with open(server.log_path, "ab") as out:
        server.process = subprocess.Popen([cli_binary(), *argv[1:]], stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_healthy(server)
    return server


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prod]:
    work = tmp_path_factory.mktemp("ops")
    audit_log = work / "audit-byok.log"
    config = work / "openbao-audit.hcl"
    config.write_text(AUDIT_SNIPPET.read_text().replace("/var/log/openbao/audit-byok.log", str(audit_log)))
    server = start_bao(work, f"-config={config}")
    services = ServiceLoop()
    apps: list[Any] = []
    fakes = AuthFakes.start(work / "authfakes")
    try:
        # `deploy/vault/bootstrap.sh` with its default names, as in the doc.
        env = base_env(server) | {"OUT_DIR": str(work / "vault-out")}
        boot = run_bootstrap(env)
        assert boot.returncode == 0, boot.stderr
        vault = Vault(server.addr, server.root_token)
        operator, importer = vault.policy_token("byok-operator"), vault.policy_token("byok-ops-import")
        issuer = vault.policy_token("byok-pki-issuer")
        certs_dir = work / "certs"
        certs = {
            "keyservice": issue(vault, "keyservice", "keyservice", KEYSERVICE_ID, certs_dir, issuer),
            "proxyservice": issue(vault, "proxyservice", "proxyservice", PROXY, certs_dir, issuer),
            "admin": issue(vault, "admin", "admin", ADMIN, certs_dir, issuer),
            "caller": issue(vault, "caller", "chat-api.caller", CALLER, certs_dir, operator),
        }
        upstream = FakeUpstream(UpstreamConfig())
        services.run(upstream.start())
        apps.append(upstream)
        out = work / "vault-out"
        settings = KeyServiceSettings(
            grpc_addr="127.0.0.1:0", tls=certs["keyservice"], database_url=f"sqlite:///{work}/ks.db",
            vault=VaultSettings(addr=server.addr, auth="approle", role_id=(out / "keyservice-role-id").read_text(),
                                secret_id=(out / "keyservice-secret-id").read_text(), transit_key="byok",
                                max_retries=1, timeout_seconds=2.0),
            roles={ADMIN: "admin", PROXY: "proxy"}, health_addr="127.0.0.1:0", keep_secret_versions=1,
            reconcile_interval_seconds=3600, provider_base_urls=upstream_base_urls(upstream.base_url),
            egress=DEV_EGRESS, derive=_derive_settings(fakes))
        keyservice = services.run(create_server(settings))
        apps.append(keyservice)
        proxies = []
        for _ in range(2):
            proxy = services.run(create_proxy(proxy_settings(SimpleNamespace(proxyservice=certs["proxyservice"]),
                                                             keyservice.port)))
            apps.append(proxy)
            proxies.append(proxy)
        for proxy in proxies:
            services.run(_wait_connected(proxy))
        prod = Prod(server=server, vault=vault, operator=operator, issuer=issuer, importer=importer, bootstrap=boot,
                    out_dir=out, audit_log=audit_log, certs=certs, services=services, upstream=upstream,
                    keyservice=keyservice, proxies=proxies,
                    env=client_env(keyservice.port, certs["admin"], proxies[0].port), work=work, fakes=fakes)
        yield prod
        for channel in prod.channels:
            channel.close()
    finally:
        for app in reversed(apps):
            services.run(app.stop(grace=0) if not isinstance(app, FakeUpstream) else app.stop())
        services.close()
        server.stop()
        fakes.stop()


def _derive_settings(fakes: AuthFakes) -> DeriveSettings:
    """§2a's keyservice settings, with the stand-ins where the clouds' token services would be (BYOK_AWS_STS_ENDPOINT,
    BYOK_ENTRA_AUTHORITY_HOST, BYOK_CLOUD_AUTH_CA_FILE)."""
    env = fakes.keyservice_env()
    return DeriveSettings(aws_sts_endpoint=env["BYOK_AWS_STS_ENDPOINT"],
                          entra_authority_host=env["BYOK_ENTRA_AUTHORITY_HOST"], ca_file=env["BYOK_CLOUD_AUTH_CA_FILE"])


async def _wait_connected(proxy: ProxyApp) -> None:
    import asyncio

    await asyncio.wait_for(proxy.revocations_connected.wait(), 10)


async def _cached_credentials(proxy: ProxyApp) -> set[str]:
    return {entry.lease.credential_id for entry in proxy.cache._entries.values()}


def poll(condition: Callable[[], bool], seconds: float, interval: float = 0.02) -> float:
    """Wait for `condition`; returns the seconds it took, fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"condition not met within {seconds} s"
        time.sleep(interval)
    return time.monotonic() - started


# -- 9. Done when: a fresh OpenBao, bootstrapped; keyservice on AppRole and PKI certificates ------------------
def test_fresh_bootstrap_then_approle_keyservice_on_pki_certificates_creates_and_leases(prod: Prod) -> None:
    lines = prod.bootstrap.stdout.splitlines()
    assert any(line.startswith("created") and "approle secret_id" in line for line in lines)
    assert any(line.startswith("exists") and "audit device byok/" in line for line in lines)  # from the config
    served = served_certificate(prod.keyservice.port, prod.certs["admin"])
    assert served.serial_number == serial_of(prod.certs["keyservice"])
    assert "byok intermediate CA" in served.issuer.rfc4514_string()

    key = fake_openai_key()
    cid = prod.add_key("acme", key)
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "acme"))
    caller = prod.certs["caller"]  # flags win over BYOK_CLIENT_CERT / BYOK_CLIENT_KEY
    said = prod.byokctl("--cert", caller.cert, "--key", caller.key, "chat", "--org", "acme", "--model",
                        "gpt-4o-mini", "Say hello")
    assert ok(said).strip() and f"[openai, tenant key {cid}]" in said.stderr
    lease = ok_json(prod.byokctl("--json", "audit", "--org", "acme", "--action", "lease.issue"))
    assert [(e["credential_id"], e["actor"]) for e in lease] == [(cid, PROXY)]
    # Envelope mode: what sits in KV is transit ciphertext (read here with the root token, for the test only).
    stored = prod.vault.json("kv", "get", f"secret/byok/acme/{cid}")["data"]["data"]
    assert stored["ciphertext"].startswith("vault:v1:") and key not in json.dumps(stored)


# -- 1. Find a tenant's keys --------------------------------------------------------------------------------
def test_find_a_tenants_keys_in_vault_without_seeing_them(prod: Prod) -> None:
    keys = {"main": fake_openai_key(), "batch": fake_openai_key()}
    ids = {name: prod.add_key("globex", key, name) for name, key in keys.items()}
    listed = prod.vault.run("kv", "list", "secret/byok/globex", token=prod.operator).stdout
    assert sorted(re.findall(r"cred_[0-9a-f]{24}", listed)) == sorted(ids.values())
    for name, cid in ids.items():
        meta = prod.vault.run("kv", "metadata", "get", f"secret/byok/globex/{cid}", token=prod.operator).stdout
        for expected in ("org_id:globex", "provider:openai", f"name:{name}", f"credential_id:{cid}"):
            assert expected in meta, (expected, meta)
        assert keys[name] not in meta and "ciphertext" not in meta
    refused = prod.vault.run("kv", "get", f"secret/byok/globex/{ids['main']}", token=prod.operator, check=False)
    assert refused.returncode != 0 and "permission denied" in refused.stderr


# -- 2. Import a key ops wrote --------------------------------------------------------------------------------
def test_import_a_key_ops_wrote_to_vault(prod: Prod) -> None:
    assert "api_key" not in kpb.RegisterCredentialRequest.DESCRIPTOR.fields_by_name  # never crosses the API
    key = fake_openai_key()
    prod.vault.run("kv", "put", "secret/byok/imports/initech-openai", "api_key=-", stdin=key, token=prod.importer)
    read_back = prod.vault.run("kv", "get", "secret/byok/imports/initech-openai", token=prod.importer, check=False)
    assert read_back.returncode != 0  # the import token cannot read what it wrote
    imported = ok_json(prod.byokctl("--json", "keys", "import", "--org", "initech", "--provider", "openai",
                                    "--name", "imported", "--vault-path", "byok/imports/initech-openai"))
    assert imported["secret_ref"]["path"] == "byok/imports/initech-openai"
    assert imported["key_hint"] == "sk-…" + key[-4:]
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "initech"))
    prod.upstream.config.keys = {"openai": {key}}  # the provider accepts exactly the imported key
    try:
        assert prod.chat(0, "initech") == grpc.StatusCode.OK
    finally:
        prod.upstream.config.keys = {}


# -- 2a. Cloud credentials --------------------------------------------------------------------------------------------
def test_cloud_credentials_ops_wrote_with_the_vault_cli(prod: Prod) -> None:
    fakes, work = prod.fakes, prod.work / "cloud"
    work.mkdir()
    pair = fakes.sts.add_user(shapes.access_key_pair(user="initech-bedrock"))
    role = "arn:aws:iam::123456789012:role/bedrock-invoke"
    fakes.sts.roles[role] = Role(role, frozenset({pair.arn}), external_id="initech-7f3e")
    key_file = work / "sa-key.json"
    key_file.write_text(shapes.service_account_key(fakes.google.token_uri, project_id="initech-ml"))
    fakes.google.add_key(key_file.read_text())
    app = fakes.entra.add_app(shapes.entra_app())

    def put(path: str, *fields: str, stdin: str | None = None) -> None:
        prod.vault.run("kv", "put", f"secret/byok/imports/{path}", *fields, stdin=stdin, token=prod.importer)

    def imported(name: str, path: str, provider: str, *settings: str) -> dict[str, Any]:
        flags = [arg for setting in settings for arg in ("--setting", setting)]
        return dict(ok_json(prod.byokctl("--json", "keys", "import", "--org", "initech", "--provider", provider,
                                         "--name", name, "--vault-path", f"byok/imports/{path}", *flags)))

    put("initech-aws", f"access_key_id={pair.access_key_id}", "secret_access_key=-", stdin=pair.secret_access_key)
    put("initech-aws-role", f"access_key_id={pair.access_key_id}", "secret_access_key=-", stdin=pair.secret_access_key)
    put("initech-gcp", f"service_account_json=@{key_file}")
    put("initech-azure", "client_secret=-", stdin=app.client_secret)
    aws = imported("aws", "initech-aws", "bedrock", "region=us-east-1")
    assert aws["key_hint"] == f"AKIA…{pair.access_key_id[-4:]}" and aws["settings"] == {"region": "us-east-1"}
    aws_role = imported("aws-role", "initech-aws-role", "bedrock", "region=us-east-1", f"role_arn={role}",
                        "external_id=initech-7f3e")
    gcp = imported("gcp", "initech-gcp", "vertex_ai", "location=us-central1")
    assert gcp["key_hint"] == "byok-vertex@initech-ml.iam.gserviceaccount.com"
    azure = imported("azure", "initech-azure", "azure_openai", "endpoint=https://initech.openai.azure.com",
                     f"tenant_id={app.tenant_id}", f"client_id={app.client_id}")
    assert azure["key_hint"] == f"app {app.client_id}"
    bound = prod.byokctl("bindings", "add", CALLER, "--org", "initech")
    assert bound.returncode in (0, 7)  # §2 may have bound it already

    leases = {c["name"]: _lease("initech", c["credential_id"], prod) for c in (aws, aws_role, gcp, azure)}
    assert leases["aws"].auth_scheme == "aws_sigv4" and leases["aws"].aws_credentials.access_key_id in \
        fakes.sts.sessions and leases["aws"].api_key == ""
    assert fakes.sts.issued[leases["aws-role"].aws_credentials.access_key_id].arn.endswith(
        f"assumed-role/bedrock-invoke/byok-{aws_role['credential_id']}")
    assert leases["gcp"].api_key in fakes.google.tokens and leases["gcp"].settings["project"] == "initech-ml"
    assert leases["azure"].api_key in fakes.entra.tokens and leases["azure"].auth_scheme == "bearer"
    for text in (str(lease) for lease in leases.values()):
        assert pair.secret_access_key not in text and app.client_secret not in text and "PRIVATE KEY" not in text

    # An admin's add and rotate with --secret-field, and get.
    (work / "key-id.txt").write_text(pair.access_key_id)
    added = ok_json(prod.byokctl("--json", "keys", "add", "--org", "initech", "--provider", "bedrock", "--name",
                                 "aws-admin", "--setting", "region=us-east-1", "--secret-field",
                                 f"access_key_id=@{work}/key-id.txt", "--secret-field", "secret_access_key=-",
                                 stdin=pair.secret_access_key))
    fresh = fakes.sts.add_user(shapes.access_key_pair(user="initech-bedrock-2"))
    (work / "new-key-id.txt").write_text(fresh.access_key_id)
    rotated = ok_json(prod.byokctl("--json", "keys", "rotate", added["credential_id"], "--secret-field",
                                   f"access_key_id=@{work}/new-key-id.txt", "--secret-field", "secret_access_key=-",
                                   stdin=fresh.secret_access_key))
    assert rotated["secret_ref"]["version"] == "2"
    got = table(ok(prod.byokctl("keys", "get", added["credential_id"])))[0]
    assert got["key"] == f"AKIA…{fresh.access_key_id[-4:]}" and got["settings"] == "region=us-east-1"

    # On call: a refused secret shows in the audit trail; verify derives afresh once it is fixed.
    fakes.sts.remove_user(pair.access_key_id)
    prod.keyservice.derivations.forget(aws["credential_id"])  # type: ignore[union-attr]  # its session, from §2a's lease
    with pytest.raises(grpc.RpcError) as err:
        _lease("initech", aws["credential_id"], prod)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    audited = ok(prod.byokctl("audit", "--credential", aws["credential_id"], "--action", "credential.derive_refused"))
    assert "InvalidClientTokenId" in audited
    fakes.sts.add_user(pair)
    assert ok(prod.byokctl("keys", "verify", aws["credential_id"])).strip() == \
        f"{aws['credential_id']}: active (HTTP 200)"


def _lease(org: str, credential_id: str, prod: Prod) -> kpb.IssueKeyLeaseResponse:
    with grpc.secure_channel(f"localhost:{prod.keyservice.port}",
                             channel_credentials(prod.certs["proxyservice"])) as channel:
        return kpb_grpc.KeyServiceStub(channel).IssueKeyLease(kpb.IssueKeyLeaseRequest(
            scope=kpb.Scope(org_id=org), credential_id=credential_id, caller_identity=CALLER), timeout=15)


# -- 3. Transit key rotation ----------------------------------------------------------------------------------
def test_transit_rotation_rewrap_then_raise_min_decryption_version(prod: Prod) -> None:
    cid = prod.add_key("umbrella", fake_openai_key())
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "umbrella"))
    before = prod.vault.json("read", "transit/keys/byok", token=prod.operator)["data"]
    latest = before["latest_version"]
    prod.vault.run("write", "-f", "transit/keys/byok/rotate", token=prod.operator)
    target = str(latest + 1)
    script_env = prod.env | prod.vault.env(prod.operator) | {
        "VAULT_BIN": cli_binary(), "BYOKCTL": f"{sys.executable} -m byokctl"}

    def raise_min(n: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(RAISE_MIN), n], env=script_env, cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    refused = raise_min(target)
    assert refused.returncode == 1, refused.stderr
    assert f"still encrypted under a version below {target}" in refused.stderr and cid in refused.stderr
    assert "byokctl rewrap" in refused.stderr
    key_info = prod.vault.json("read", "transit/keys/byok", token=prod.operator)["data"]
    assert key_info["min_decryption_version"] == before["min_decryption_version"]  # untouched

    rewrapped = ok(prod.byokctl("rewrap"))
    assert re.fullmatch(rf"rewrapped \d+ secrets; lowest transit key version in use: {target}\n", rewrapped)
    assert ok_json(prod.byokctl("--json", "keys", "get", cid))["secret_ref"]["transit_key_version"] == target

    raised = raise_min(target)
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.startswith(f"updated  transit/keys/byok min_decryption_version={target}")
    assert prod.vault.json("read", "transit/keys/byok", token=prod.operator)["data"]["min_decryption_version"] \
        == int(target)
    assert raise_min(target).stdout.startswith("exists")  # idempotent
    too_far = raise_min(str(latest + 5))
    assert too_far.returncode == 1 and "has no version" in too_far.stderr
    # Leases still decrypt (the ciphertext is on the new version).
    assert prod.chat(1, "umbrella") == grpc.StatusCode.OK


# -- 4. Rotate a provider key with overlap --------------------------------------------------------------------
def test_rotate_a_provider_key_with_overlap(prod: Prod) -> None:
    old, new, newest = fake_openai_key(), fake_openai_key(), fake_openai_key()
    cid = prod.add_key("hooli", old)
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "hooli"))
    proxy = prod.proxies[0]
    try:
        prod.upstream.config.keys = {"openai": {old, new}}  # overlap: both valid at the provider
        assert prod.chat(0, "hooli") == grpc.StatusCode.OK
        assert cid in prod.services.run(_cached_credentials(proxy))

        rotated = ok_json(prod.byokctl("--json", "keys", "rotate", cid, stdin=new))
        assert rotated["secret_ref"]["version"] == "2"
        poll(lambda: cid not in prod.services.run(_cached_credentials(proxy)), 1.0)  # cached lease revoked
        prod.upstream.config.keys = {"openai": {new}}  # the provider has revoked the old key
        assert prod.chat(0, "hooli") == grpc.StatusCode.OK  # so the proxy used the new one

        prod.upstream.config.keys = {"openai": {new, newest}}
        ok(prod.byokctl("keys", "rotate", cid, "--expected-version", "2", stdin=newest))
        versions = prod.vault.json("kv", "metadata", "get", f"secret/byok/hooli/{cid}",
                                   token=prod.operator)["data"]["versions"]
        # BYOK_KEEP_SECRET_VERSIONS=1: the current version and one previous stay; older ones are destroyed.
        assert {v: info["destroyed"] for v, info in versions.items()} == {"1": True, "2": False, "3": False}
    finally:
        prod.upstream.config.keys = {}


# -- 5. Emergency revoke ------------------------------------------------------------------------------------
def test_emergency_revoke_reaches_both_proxies_within_a_second(prod: Prod) -> None:
    cid = prod.add_key("wayne", fake_openai_key())
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "wayne"))

    def warm() -> None:
        assert [prod.chat(i, "wayne") for i in (0, 1)] == [grpc.StatusCode.OK] * 2

    def refused_everywhere() -> bool:
        return all(prod.chat(i, "wayne") == grpc.StatusCode.NOT_FOUND for i in (0, 1))

    warm()
    assert table(ok(prod.byokctl("keys", "deactivate", cid)))[0]["active"] == "no"
    assert poll(refused_everywhere, 1.0) < 1.0
    ok(prod.byokctl("keys", "activate", cid))
    warm()
    assert ok(prod.byokctl("orgs", "revoke", "--org", "wayne")).strip() == "wayne: deactivated 1 credentials"
    assert poll(refused_everywhere, 1.0) < 1.0
    assert ok_json(prod.byokctl("--json", "keys", "list", "--org", "wayne", "--active", "no"))[0]["credential_id"] \
        == cid


# -- 6. Audit lookup by HMAC ----------------------------------------------------------------------------------
def test_find_a_value_in_the_vault_audit_log_by_its_hmac(prod: Prod) -> None:
    key = fake_openai_key()
    cid = prod.add_key("audited", key)
    hashed = prod.vault.run("write", "-field=hash", "sys/audit-hash/byok", f"input={cid}",
                            token=prod.operator).stdout.strip()
    assert hashed.startswith("hmac-sha256:")
    log = prod.audit_log.read_text()
    entries = [json.loads(line) for line in log.splitlines() if hashed in line]
    assert entries, "the credential id's HMAC is in the audit log"
    assert any(e["request"]["path"] == f"secret/metadata/byok/audited/{cid}" for e in entries)
    assert key not in log  # request and response values are only ever logged as HMACs


# -- 7. Certificates ------------------------------------------------------------------------------------------
def test_renew_service_certificates_without_restart(prod: Prod) -> None:
    files, port = prod.certs["keyservice"], prod.keyservice.port
    old_serial = serial_of(files)
    cid = prod.add_key("cyberdyne", fake_openai_key())
    watch = grpc.secure_channel(f"localhost:{port}", channel_credentials(prod.certs["proxyservice"]))
    prod.channels.append(watch)
    stream = kpb_grpc.KeyServiceStub(watch).WatchRevocations(kpb.WatchRevocationsRequest(), timeout=60)
    assert next(stream).ready

    # Renew = issue a new certificate and replace the files; no restart.
    issue(prod.vault, "keyservice", "keyservice", KEYSERVICE_ID, prod.work / "certs", prod.issuer)
    new_serial = serial_of(files)
    assert new_serial != old_serial
    assert served_certificate(port, prod.certs["admin"]).serial_number == new_serial  # new connections
    ok(prod.byokctl("keys", "deactivate", cid))
    assert next(stream).credential_id == cid  # the stream opened before the renewal continues
    stream.cancel()

    # The proxies' client certificate: replaced on disk, used for the next connection to keyservice.
    issue(prod.vault, "proxyservice", "proxyservice", PROXY, prod.work / "certs", prod.issuer)
    prod.add_key("cyberdyne-2", fake_openai_key())
    ok(prod.byokctl("bindings", "add", CALLER, "--org", "cyberdyne-2"))
    assert prod.chat(0, "cyberdyne-2") == grpc.StatusCode.OK

    # Revoking the old certificate is recorded by the CA, but gRPC Python does not check CRLs: it is the
    # short lifetime (24h, max 72h) that ends a revoked certificate (expired ones are refused:
    # tests/integration/test_cert_reload.py).
    revoked = prod.vault.json("write", "pki_int/revoke", f"serial_number={_colon_hex(old_serial)}",
                              token=prod.operator)
    assert revoked["data"]["revocation_time"] > 0


def _colon_hex(serial: int) -> str:
    raw = f"{serial:x}"
    raw = raw if len(raw) % 2 == 0 else "0" + raw
    return ":".join(raw[i:i + 2] for i in range(0, len(raw), 2))


# -- 8. Vault outage ------------------------------------------------------------------------------------------
def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2).status)
        except grpc.RpcError:
            return -1


def unseal(vault: Vault, log: Path) -> None:
    """`vault operator unseal` prompts for the key on a terminal (never argv): drive it through a pty."""
    match = None
    deadline = time.monotonic() + 10
    while match is None and time.monotonic() < deadline:
        match = re.search(r"Unseal Key: (\S+)", log.read_text())
    assert match, "the dev server prints its unseal key"
    master, slave = os.openpty()
    try:
        process = subprocess.Popen([cli_binary(), "operator", "unseal"], stdin=slave, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=vault.env())
        os.write(master, (match.group(1) + "\n").encode())
        output, _ = process.communicate(timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert process.returncode == 0 and b"Sealed          false" in output, output[-500:]


def test_vault_outage_unavailable_not_internal_and_recovery_without_restart(prod: Prod) -> None:
    work = prod.work / "outage"
    work.mkdir()
    server = start_bao(work)
    vault = Vault(server.addr, server.root_token)
    services, apps = prod.services, []
    try:
        settings = KeyServiceSettings(
            grpc_addr="127.0.0.1:0", tls=prod.certs["keyservice"], database_url=f"sqlite:///{work}/ks.db",
            vault=VaultSettings(addr=server.addr, token=server.root_token, max_retries=1, timeout_seconds=2.0),
            roles={ADMIN: "admin", PROXY: "proxy"}, health_addr="127.0.0.1:0", reconcile_interval_seconds=3600,
            provider_base_urls=upstream_base_urls(prod.upstream.base_url), egress=DEV_EGRESS)
        keyservice = services.run(create_server(settings))
        apps.append(keyservice)
        proxy = services.run(create_proxy(proxy_settings(SimpleNamespace(proxyservice=prod.certs["proxyservice"]),
                                                         keyservice.port)))
        apps.append(proxy)
        env = client_env(keyservice.port, prod.certs["admin"])

        def ctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return byokctl(*args, env=env, stdin=stdin)

        def add(org: str) -> subprocess.CompletedProcess[str]:
            return ctl("--timeout", "10", "keys", "add", "--org", org, "--provider", "openai", "--name", "main",
                       stdin=fake_openai_key())

        for org in ("warm", "cold"):
            ok(add(org))
            ok(ctl("bindings", "add", CALLER, "--org", org))
        assert chat(proxy.port, prod.certs["caller"], "warm") == grpc.StatusCode.OK

        def outage(stop: Callable[[], None], what: str) -> None:
            stop()
            started = time.monotonic()
            down = add(f"during-{what}")
            assert down.returncode == 6 and "UNAVAILABLE" in down.stderr, down.stderr  # never INTERNAL
            assert time.monotonic() - started < 10
            assert chat(proxy.port, prod.certs["caller"], "cold") == grpc.StatusCode.UNAVAILABLE
            assert chat(proxy.port, prod.certs["caller"], "warm") == grpc.StatusCode.OK
            poll(lambda: health_status(keyservice.health_port) == health_pb2.HealthCheckResponse.NOT_SERVING,
                 12, 0.2)
            assert ok_json(ctl("--json", "keys", "list", "--org", "warm"))  # DB-only reads keep working

        def recovered(what: str) -> None:
            poll(lambda: health_status(keyservice.health_port) == health_pb2.HealthCheckResponse.SERVING, 12, 0.2)
            ok(add(f"after-{what}"))

        outage(lambda: vault.run("operator", "seal"), "seal")
        unseal(vault, server.log_path)  # type: ignore[arg-type]
        recovered("seal")

        def kill() -> None:
            assert server.process is not None
            server.process.kill()
            server.process.wait()

        outage(kill, "kill")
        # A dev server restarts empty (in memory; same root token here). A real one restarts sealed with its
        # data: unseal it as above. Either way keyservice reconnects by itself.
        restarted = start_bao(work, port=server.port, token=server.root_token)
        server.process = restarted.process
        recovered("restart")
    finally:
        for app in reversed(apps):
            services.run(app.stop(grace=0))
        server.stop()
