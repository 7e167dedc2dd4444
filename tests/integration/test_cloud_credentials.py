"""Cloud credentials (Amazon Bedrock, Azure OpenAI, Google Vertex AI) over mTLS gRPC on the real OpenBao, in
plain and envelope (transit) mode, and the real databases (SQLite and PostgreSQL): ListProviders' fields, each
kind stored as ONE Vault secret whose data are its secret fields (in envelope mode each field transit-encrypted)
with its settings in the database, refusals naming the field, rotation of each secret, ops' imports with the vault
CLI's layout, rewrap of every field, and byokctl with --setting and --secret-field.

Also the harness test_derived_leases.py shares: the token-service stand-ins (devstack/authfakes) over loopback
https with their own CA, and a keyservice configured to derive from them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from byok.keys.v1 import key_service_pb2 as pb
from devstack.authfakes import AuthFakes, shapes
from keyservice.derive import DeriveSettings
from keyservice.server import KeyServiceApp, create_server
from keyservice.settings import KeyServiceSettings
from tests.integration.test_byokctl import byokctl, client_env, ok, ok_json, table
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keys_stub, keyservice_settings, secure_channel

E = grpc.StatusCode
ENDPOINT = "https://contoso-east.openai.azure.com"


# -- harness (shared with test_derived_leases.py) -----------------------------------------------------------------
def serve_fakes(directory: Path) -> Iterator[AuthFakes]:
    """A local STS, Google token endpoint and Entra ID, over https with a CA of their own (for a fixture)."""
    started = AuthFakes.start(directory)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthFakes]:
    yield from serve_fakes(tmp_path_factory.mktemp("authfakes"))


def derive_settings(fakes: AuthFakes, **overrides: Any) -> DeriveSettings:
    """keyservice's derivation settings pointing at the stand-ins (as BYOK_AWS_STS_ENDPOINT,
    BYOK_ENTRA_AUTHORITY_HOST and BYOK_CLOUD_AUTH_CA_FILE would)."""
    env = fakes.keyservice_env()
    return replace(DeriveSettings(aws_sts_endpoint=env["BYOK_AWS_STS_ENDPOINT"],
                                  entra_authority_host=env["BYOK_ENTRA_AUTHORITY_HOST"],
                                  ca_file=env["BYOK_CLOUD_AUTH_CA_FILE"], timeout_seconds=5.0), **overrides)


def cloud_settings(bao: BaoDevServer, ids: Identities, database_url: str, fakes: AuthFakes, *,
                   derive: dict[str, Any] | None = None, **overrides: Any) -> KeyServiceSettings:
    return keyservice_settings(bao, ids, database_url, derive=derive_settings(fakes, **(derive or {})), **overrides)


@dataclass
class Running:
    app: KeyServiceApp
    admin: Any
    proxy: Any
    settings: KeyServiceSettings

    async def create(self, provider: str, name: str, org: str, *, secret: dict[str, str] | None = None,
                     api_key: str = "", settings: dict[str, str] | None = None, **kw: Any) -> pb.Credential:
        return (await self.admin.CreateCredential(pb.CreateCredentialRequest(
            provider=provider, scope=pb.Scope(org_id=org), name=name, api_key=api_key, secret_fields=secret or {},
            settings=settings or {}, **kw))).credential

    async def bind(self, org: str) -> None:
        await self.admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
            binding=pb.CallerBinding(caller_identity=CALLER, org_id=org)))

    async def lease(self, org: str, **kw: Any) -> pb.IssueKeyLeaseResponse:
        return await self.proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org),
                                                                      caller_identity=CALLER, **kw))


@asynccontextmanager
async def running(settings: KeyServiceSettings, ids: Identities) -> AsyncIterator[Running]:
    app = await create_server(settings)
    try:
        async with secure_channel(app.port, ids.admin) as a, secure_channel(app.port, ids.proxyservice) as p:
            yield Running(app, keys_stub(a), keys_stub(p), settings)
    finally:
        await app.stop(grace=0)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Kinds:
    """One credential of each kind, its secret and settings, the token services told about it."""

    pair: shapes.AccessKeyPair
    bedrock_key: str
    azure_key: str
    app: shapes.EntraApp
    service_account: str

    @classmethod
    def made(cls, fakes: AuthFakes) -> Kinds:
        kinds = cls(fakes.sts.add_user(shapes.access_key_pair()), shapes.bedrock_api_key(), shapes.azure_api_key(),
                    fakes.entra.add_app(shapes.entra_app()), shapes.service_account_key(fakes.google.token_uri))
        fakes.google.add_key(kinds.service_account)
        return kinds

    def requests(self) -> dict[str, tuple[str, dict[str, str], dict[str, str]]]:
        """name -> (provider, secret fields, settings)."""
        return {
            "aws-keys": ("bedrock", {"access_key_id": self.pair.access_key_id,
                                     "secret_access_key": self.pair.secret_access_key}, {"region": "us-east-1"}),
            "aws-apikey": ("bedrock", {"api_key": self.bedrock_key}, {"region": "us-west-2"}),
            "azure-key": ("azure_openai", {"api_key": self.azure_key},
                          {"endpoint": ENDPOINT, "api_version": "2024-10-21",
                           "deployments": '{"gpt-4o-mini": "mini-prod"}'}),
            "azure-app": ("azure_openai", {"client_secret": self.app.client_secret},
                          {"endpoint": ENDPOINT, "tenant_id": self.app.tenant_id, "client_id": self.app.client_id}),
            "vertex": ("vertex_ai", {"service_account_json": self.service_account}, {"location": "us-central1"}),
        }

    def secrets(self) -> list[str]:
        info = json.loads(self.service_account)
        return [self.pair.secret_access_key, self.bedrock_key, self.azure_key, self.app.client_secret,
                info["private_key"].split("\n")[5], info["private_key_id"]]


def transit(bao: BaoDevServer) -> Iterator[str]:
    """A transit engine of the test's own on the shared OpenBao (for a fixture)."""
    mount = unique("transit-cloud")
    bao.cli("secrets", "enable", f"-path={mount}", "transit")
    yield mount
    bao.cli("secrets", "disable", mount, check=False)


@pytest.fixture
def transit_mount(bao: BaoDevServer) -> Iterator[str]:
    yield from transit(bao)


def detail(info: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> str:
    return str(info.value.details())


def vault_data(bao: BaoDevServer, path: str) -> dict[str, Any]:
    return dict(bao.api("GET", f"secret/data/{path}").json()["data"]["data"])


# -- the catalog -----------------------------------------------------------------------------------------------------
async def test_list_providers_shows_the_cloud_fields(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                     fakes: AuthFakes) -> None:
    async with running(cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes), ids) as ks:
        providers = {p.name: p for p in (await ks.admin.ListProviders(pb.ListProvidersRequest())).providers}
    bedrock, azure, vertex = providers["bedrock"], providers["azure_openai"], providers["vertex_ai"]
    assert (bedrock.api_family, bedrock.display_name) == ("bedrock", "Amazon Bedrock")
    assert {(f.name, f.secret) for f in bedrock.fields} >= {("access_key_id", True), ("secret_access_key", True),
                                                            ("api_key", True), ("region", False)}
    assert [f.name for f in azure.fields if f.required] == ["endpoint"]
    assert [(f.name, f.secret, f.required) for f in vertex.fields][0] == ("service_account_json", True, True)
    assert bedrock.default_api_base == "https://bedrock-runtime.{region}.amazonaws.com"
    assert "anthropic" in bedrock.model_pattern and not providers["openai"].fields


# -- storage ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plain", "envelope"])
async def test_each_kind_is_one_vault_secret_with_its_settings_in_the_database(
        mode: str, bao: BaoDevServer, ids: Identities, database_url: str, fakes: AuthFakes,
        request: pytest.FixtureRequest) -> None:
    vault = {}
    if mode == "envelope":
        vault = {"transit_key": unique("byok-cloud"), "transit_mount": request.getfixturevalue("transit_mount")}
    kinds = Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, database_url, fakes, vault=vault), ids) as ks:
        org = unique("store")
        for name, (provider, secret, settings) in kinds.requests().items():
            cred = await ks.create(provider, name, org, secret=secret, settings=settings)
            assert cred.provider == provider and dict(cred.settings) == \
                {**settings, **({"deployments": '{"gpt-4o-mini":"mini-prod"}'} if name == "azure-key" else {})}
            raw = vault_data(bao, cred.secret_ref.path)
            if mode == "plain":
                assert raw == secret  # one secret, its data the secret fields
            else:
                assert set(raw) == {"transit_key"} | {"ciphertext" if n == "api_key" else f"ciphertext.{n}"
                                                      for n in secret}
                assert all(v.startswith("vault:v1:") for k, v in raw.items() if k != "transit_key")
                assert cred.secret_ref.transit_key == vault["transit_key"] and cred.secret_ref.transit_key_version == 1
                assert not any(value in json.dumps(raw) for value in secret.values())
            shown = str(cred)
            assert not any(value in shown for value in secret.values())
        rows = {c.name: c for c in (await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id=org))).credentials}
        assert rows["aws-keys"].key_hint == f"AKIA…{kinds.pair.access_key_id[-4:]}"
        assert rows["aws-apikey"].key_hint == "ABSK…" and rows["azure-key"].key_hint == "api-key@contoso-east"
        assert rows["azure-app"].key_hint == f"app {kinds.app.client_id}"
        assert rows["vertex"].key_hint == json.loads(kinds.service_account)["client_email"]
        assert len({r.fingerprint for r in rows.values()}) == 5
        # The database holds the settings as JSON beside the reference, and never a secret.
        engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            query = sa.text("SELECT name, settings_json FROM credentials WHERE org_id = :o")
            stored: dict[str, str] = {name: text for name, text in conn.execute(query, {"o": org}).all()}
            dump = json.dumps([list(r) for r in conn.execute(sa.text("SELECT * FROM credentials")).all()],
                              default=str)
            dump += json.dumps([list(r) for r in conn.execute(sa.text("SELECT * FROM audit_events")).all()],
                               default=str)
        engine.dispose()
        assert json.loads(stored["aws-keys"]) == {"region": "us-east-1"}
        assert json.loads(stored["vertex"]) == {"location": "us-central1"}
        assert not any(value in dump for value in kinds.secrets())


async def test_refusals_name_the_field_and_echo_nothing(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                        fakes: AuthFakes) -> None:
    pair = shapes.access_key_pair()
    async with running(cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes), ids) as ks:
        cases = [
            ("bedrock", {"access_key_id": pair.access_key_id, "secret_access_key": "x" * 12}, {"region": "us-east-1"},
             "secret_fields.secret_access_key"),
            ("bedrock", {"access_key_id": pair.access_key_id, "secret_access_key": pair.secret_access_key}, {},
             "settings.region"),
            ("azure_openai", {"api_key": shapes.azure_api_key()}, {"endpoint": "https://example.com"},
             "settings.endpoint"),
            ("vertex_ai", {"service_account_json": "{not json " + pair.secret_access_key}, {"location": "global"},
             "secret_fields.service_account_json"),
            ("vertex_ai", {"service_account_json": shapes.service_account_key("https://evil.example/token")},
             {"location": "global"}, "secret_fields.service_account_json (its token_uri)"),
        ]
        for provider, secret, settings, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ks.create(provider, "bad", "refusals", secret=secret, settings=settings)
            assert info.value.code() == E.INVALID_ARGUMENT and detail(info).startswith(field + ":")
            assert not any(value in detail(info) for value in (pair.secret_access_key, "BEGIN"))
        with pytest.raises(grpc.aio.AioRpcError) as both:
            await ks.create("bedrock", "both", "refusals", secret={"api_key": shapes.bedrock_api_key()},
                            api_key=shapes.bedrock_api_key(), settings={"region": "us-east-1"})
        assert both.value.code() == E.INVALID_ARGUMENT and detail(both).startswith("api_key:")
        # A lone api_key works for the providers that take one, as for every other provider.
        lone = await ks.create("azure_openai", "lone", "refusals", api_key=shapes.azure_api_key(),
                               settings={"endpoint": ENDPOINT})
        assert lone.key_hint == "api-key@contoso-east"


# -- rotation --------------------------------------------------------------------------------------------------------
async def test_rotation_of_each_secret(bao: BaoDevServer, ids: Identities, tmp_path: Path, fakes: AuthFakes) -> None:
    kinds, fresh = Kinds.made(fakes), Kinds.made(fakes)
    async with running(cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes), ids) as ks:
        org = unique("rotate")
        new_secrets = {name: secret for name, (_, secret, _) in fresh.requests().items()}
        for name, (provider, secret, settings) in kinds.requests().items():
            cred = await ks.create(provider, name, org, secret=secret, settings=settings)
            rotated = (await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=cred.credential_id, secret_fields=new_secrets[name], expected_version=1))).credential
            assert rotated.secret_ref.version == 2 and rotated.fingerprint != cred.fingerprint
            assert dict(rotated.settings) == dict(cred.settings)  # settings stay
            assert vault_data(bao, cred.secret_ref.path) == new_secrets[name]
            if name == "aws-keys":
                assert rotated.key_hint == f"AKIA…{fresh.pair.access_key_id[-4:]}"
            if name == "vertex":
                assert rotated.key_hint == json.loads(fresh.service_account)["client_email"]
        creds = {c.name: c for c in (await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id=org))).credentials}
        # A rotation may change the kind of secret when the settings suit it…
        to_key = await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
            credential_id=creds["aws-keys"].credential_id, secret_fields={"api_key": shapes.bedrock_api_key()}))
        assert to_key.credential.key_hint == "ABSK…"
        # …and is refused, by field, when they do not (no tenant_id or client_id for an Entra application).
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=creds["azure-key"].credential_id,
                secret_fields={"client_secret": shapes.entra_app().client_secret}))
        assert info.value.code() == E.INVALID_ARGUMENT and detail(info).startswith("settings.tenant_id:")


# -- ops' imports ----------------------------------------------------------------------------------------------------
async def test_register_a_secret_ops_wrote_with_the_vault_cli(bao: BaoDevServer, ids: Identities, tmp_path: Path,
                                                              fakes: AuthFakes) -> None:
    pair = shapes.access_key_pair()
    settings = cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes)
    prefix = settings.vault.kv_prefix
    path = f"{prefix}/imports/{unique('aws')}"
    bao.cli("kv", "put", f"secret/{path}", f"access_key_id={pair.access_key_id}", "secret_access_key=-",
            input=pair.secret_access_key)
    noisy = f"{prefix}/imports/{unique('noisy')}"
    bao.cli("kv", "put", f"secret/{noisy}", f"access_key_id={pair.access_key_id}", "secret_access_key=-",
            "region=us-east-1", input=pair.secret_access_key)
    async with running(settings, ids) as ks:
        registered = (await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
            provider="bedrock", scope=pb.Scope(org_id="imports"), name="aws", vault_path=path,
            settings={"region": "eu-central-1"}))).credential
        assert registered.key_hint == f"AKIA…{pair.access_key_id[-4:]}" and registered.secret_ref.path == path
        assert dict(registered.settings) == {"region": "eu-central-1"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
                provider="bedrock", scope=pb.Scope(org_id="imports"), name="noisy", vault_path=noisy,
                settings={"region": "us-east-1"}))
        assert info.value.code() == E.INVALID_ARGUMENT and detail(info).startswith("vault_path:")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
                provider="bedrock", scope=pb.Scope(org_id="imports"), name="nosettings", vault_path=path))
        assert missing.value.code() == E.INVALID_ARGUMENT and detail(missing).startswith("settings.region:")


# -- envelope mode: rewrap -------------------------------------------------------------------------------------------
async def test_rewrap_covers_every_field(bao: BaoDevServer, ids: Identities, tmp_path: Path, fakes: AuthFakes,
                                         transit_mount: str) -> None:
    transit_key = unique("byok-rewrap")
    kinds = Kinds.made(fakes)
    settings = cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes,
                              vault={"transit_key": transit_key, "transit_mount": transit_mount})
    async with running(settings, ids) as ks:
        org = unique("rewrap")
        await ks.bind(org)
        provider, secret, cloud = kinds.requests()["aws-apikey"]
        key = await ks.create(provider, "key", org, secret=secret, settings=cloud)
        provider, secret, cloud = kinds.requests()["aws-keys"]
        pair = await ks.create(provider, "pair", org, secret=secret, settings=cloud)
        bao.cli("write", "-f", f"{transit_mount}/keys/{transit_key}/rotate")
        answer = await ks.admin.RewrapSecrets(pb.RewrapSecretsRequest(org_id=org))
        assert (answer.rewrapped_count, answer.min_transit_key_version) == (2, 2)
        raw = vault_data(bao, pair.secret_ref.path)
        assert {k for k, v in raw.items() if v.startswith("vault:v2:")} == {"ciphertext.access_key_id",
                                                                            "ciphertext.secret_access_key"}
        lease = await ks.lease(org, credential_id=key.credential_id)
        assert (lease.api_key, lease.secret_version, lease.auth_scheme) == (kinds.bedrock_key, 2, "bearer")


# -- byokctl ---------------------------------------------------------------------------------------------------------
async def test_byokctl_adds_rotates_imports_and_lists_cloud_credentials(
        bao: BaoDevServer, ids: Identities, tmp_path: Path, fakes: AuthFakes) -> None:
    kinds, fresh = Kinds.made(fakes), Kinds.made(fakes)
    files = tmp_path / "secrets"
    files.mkdir()
    (files / "key-id.txt").write_text(kinds.pair.access_key_id + "\n")
    (files / "sa.json").write_text(kinds.service_account)
    (files / "new-id.txt").write_text(fresh.pair.access_key_id)
    settings = cloud_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", fakes)
    async with running(settings, ids) as ks:
        env = client_env(ks.app.port, ids.admin)

        async def cli(*args: str, stdin: str | None = None) -> Any:
            run = await asyncio.to_thread(byokctl, *args, env=env, stdin=stdin)
            assert not any(s in " ".join(run.args) for s in kinds.secrets())  # never a secret on argv
            return run

        aws = ok_json(await cli("--json", "keys", "add", "--org", "ctl", "--provider", "bedrock", "--name", "aws",
                                "--setting", "region=us-east-1", "--secret-field", f"access_key_id=@{files}/key-id.txt",
                                "--secret-field", "secret_access_key=-", stdin=kinds.pair.secret_access_key + "\n"))
        assert aws["settings"] == {"region": "us-east-1"} and aws["key_hint"] == f"AKIA…{kinds.pair.access_key_id[-4:]}"
        vertex = ok(await cli("keys", "add", "--org", "ctl", "--provider", "vertex_ai", "--name", "gcp", "-q",
                              "--setting", "location=europe-west4", "--secret-field",
                              f"service_account_json=@{files}/sa.json")).strip()
        azure = ok(await cli("keys", "add", "--org", "ctl", "--provider", "azure_openai", "--name", "az", "-q",
                             "--setting", f"endpoint={ENDPOINT}", "--setting", "api_version=2024-10-21",
                             stdin=kinds.azure_key)).strip()
        listed = {row["name"]: row for row in table(ok(await cli("keys", "list", "--org", "ctl")))}
        assert listed["aws"]["settings"] == "region=us-east-1" and listed["gcp"]["settings"] == "location=europe-west4"
        assert listed["az"]["settings"] == f"api_version=2024-10-21 endpoint={ENDPOINT}"
        assert listed["gcp"]["key"] == json.loads(kinds.service_account)["client_email"]
        got = ok_json(await cli("--json", "keys", "get", azure))
        assert got["key_hint"] == "api-key@contoso-east" and got["settings"]["endpoint"] == ENDPOINT
        rotated = ok_json(await cli("--json", "keys", "rotate", aws["credential_id"], "--secret-field",
                                    f"access_key_id=@{files}/new-id.txt", "--secret-field", "secret_access_key=-",
                                    stdin=fresh.pair.secret_access_key))
        assert rotated["secret_ref"]["version"] == "2" and rotated["key_hint"].endswith(fresh.pair.access_key_id[-4:])
        refused = await cli("keys", "rotate", vertex, "--secret-field", "service_account_json={}")
        assert refused.returncode == 2 and "never on the command line" in refused.stderr
        path = f"{settings.vault.kv_prefix}/imports/{unique('ctl')}"
        bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=fresh.bedrock_key)
        imported = ok_json(await cli("--json", "keys", "import", "--org", "ctl", "--provider", "bedrock", "--name",
                                     "imported", "--vault-path", path, "--setting", "region=ap-northeast-1"))
        assert imported["key_hint"] == "ABSK…" and imported["settings"] == {"region": "ap-northeast-1"}
        bad = await cli("keys", "add", "--org", "ctl", "--provider", "bedrock", "--name", "nope", "--setting",
                        "region=nowhere", stdin=fresh.bedrock_key)
        assert bad.returncode == 5 and "settings.region" in bad.stderr and fresh.bedrock_key not in bad.stderr
