"""Cloud credentials' fields without network: which combinations each provider takes, every field's shape check
(errors name the field and never echo the value), hints and fingerprints, how leases authenticate, the endpoints a
secret may be sent to, the derived-credential cache (single flight, refresh margin, drops), each cloud library's
answers classified, and byokctl's secret-field and setting options."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions
import google.auth.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from byokcommon.devcerts import CertificateAuthority
from byokcommon.egress import EgressPolicy
from byokcommon.settings import SettingsError
from byokctl.commands.keys import secret_fields, settings_of
from byokctl.inputs import UsageError
from devstack.authfakes import shapes
from keyservice import cloud_fields, fieldchecks
from keyservice.derive import REFRESH_MARGIN
from keyservice.derive import aws as derive_aws
from keyservice.derive import azure as derive_azure
from keyservice.derive import google as derive_google
from keyservice.derive.cache import Derived, DerivedCache
from keyservice.derive.http import Answer, Calls, CheckedHttp
from keyservice.derive.settings import DeriveSettings
from keyservice.errors import CredentialRejected, FailedPrecondition, InvalidArgument, KeyServiceError, Unavailable
from keyservice.providers import PROVIDERS, provider_for_model
from keyservice.settings import KeyServiceSettings

STRICT = EgressPolicy()
DEV = EgressPolicy(dev_loopback_http=True)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SA_KEY = shapes.service_account_key(GOOGLE_TOKEN_URI)
PAIR = shapes.access_key_pair()
APP = shapes.entra_app()
ENDPOINT = "https://contoso-east.openai.azure.com"


def check(provider: str, secret: dict[str, str], settings: dict[str, str] | None = None,
          policy: EgressPolicy = STRICT) -> cloud_fields.CheckedCredential:
    return cloud_fields.check(PROVIDERS[provider], secret, settings or {}, policy)


def refused(provider: str, secret: dict[str, str], settings: dict[str, str] | None = None,
            policy: EgressPolicy = STRICT) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        check(provider, secret, settings, policy)
    for value in [*secret.values(), *(settings or {}).values()]:
        if len(value) >= 8:  # nothing given is echoed (short values are words any message may hold)
            assert value not in info.value.message
    return info.value


# -- the catalog -------------------------------------------------------------------------------------------------
def test_the_three_clouds_list_their_fields() -> None:
    fields = {name: {(f.name, f.secret, f.required) for f in PROVIDERS[name].fields}
              for name in ("bedrock", "azure_openai", "vertex_ai")}
    assert fields["bedrock"] == {("access_key_id", True, False), ("secret_access_key", True, False),
                                 ("api_key", True, False), ("region", False, True), ("role_arn", False, False),
                                 ("external_id", False, False)}
    assert fields["azure_openai"] == {("api_key", True, False), ("client_secret", True, False),
                                      ("endpoint", False, True), ("api_version", False, False),
                                      ("deployments", False, False), ("tenant_id", False, False),
                                      ("client_id", False, False)}
    assert fields["vertex_ai"] == {("service_account_json", True, True), ("location", False, True),
                                   ("project", False, False)}
    assert PROVIDERS["bedrock"].family == "bedrock" and PROVIDERS["azure_openai"].family == "openai"
    assert PROVIDERS["vertex_ai"].family == "gemini"
    assert all(f.description for name in fields for f in PROVIDERS[name].fields)
    assert not PROVIDERS["openai"].fields  # single-key providers: one api_key, as before


@pytest.mark.parametrize("model", [
    "anthropic.claude-3-sonnet-20240229-v1:0", "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "eu.meta.llama3-2-3b-instruct-v1:0", "meta.llama3-70b-instruct-v1:0", "amazon.nova-pro-v1:0",
    "mistral.mistral-large-2402-v1:0", "cohere.command-r-plus-v1:0", "ai21.jamba-1-5-large-v1:0",
    "deepseek.r1-v1:0", "writer.palmyra-x5-v1:0", "qwen.qwen3-32b-v1:0", "openai.gpt-oss-120b-1:0",
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
])
def test_bedrock_model_ids_route_to_bedrock(model: str) -> None:
    assert provider_for_model(model).name == "bedrock"


@pytest.mark.parametrize(("model", "provider"), [
    ("gpt-4o", "openai"), ("mistral-large-latest", "mistral"), ("deepseek-chat", "deepseek"),
    ("claude-3-5-haiku-latest", "anthropic"), ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"),
    ("anthropic/claude-3.5-sonnet", "openrouter"), ("gemini-2.0-flash", "gemini"),
])
def test_other_providers_keep_their_models(model: str, provider: str) -> None:
    assert provider_for_model(model).name == provider


def test_default_api_bases_follow_the_settings() -> None:
    assert PROVIDERS["bedrock"].api_base_for({"region": "eu-west-3"}) == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert PROVIDERS["azure_openai"].api_base_for({"endpoint": ENDPOINT}) == ENDPOINT
    assert PROVIDERS["vertex_ai"].api_base_for({"location": "europe-west4"}) == \
        "https://europe-west4-aiplatform.googleapis.com/v1"
    assert PROVIDERS["vertex_ai"].api_base_for({"location": "global"}) == "https://aiplatform.googleapis.com/v1"


@pytest.mark.parametrize(("provider", "url", "ok"), [
    ("bedrock", "https://bedrock-runtime.us-west-2.amazonaws.com", True),
    ("bedrock", "https://bedrock-runtime-fips.us-east-1.amazonaws.com", True),
    ("bedrock", "https://bedrock.evil.example", False),
    ("azure_openai", "https://contoso.openai.azure.com", True),
    ("azure_openai", "https://contoso.cognitiveservices.azure.com", True),
    ("azure_openai", "https://contoso.openai.azure.com.evil.example", False),
    ("vertex_ai", "https://us-central1-aiplatform.googleapis.com/v1", True),
    ("vertex_ai", "https://aiplatform.googleapis.com/v1", True),
    ("vertex_ai", "https://generativelanguage.googleapis.com/v1beta", False),
])
def test_api_base_stays_on_the_clouds_hosts(provider: str, url: str, ok: bool) -> None:
    if ok:
        PROVIDERS[provider].check_api_base(url, STRICT)
    else:
        with pytest.raises(InvalidArgument, match="api_base"):
            PROVIDERS[provider].check_api_base(url, STRICT)


# -- bedrock ---------------------------------------------------------------------------------------------------
def test_bedrock_access_key_pair() -> None:
    got = check("bedrock", {"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key},
                {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/bedrock-invoke",
                 "external_id": "byok-acme-1"})
    assert got.hint == f"AKIA…{PAIR.access_key_id[-4:]}"  # the key id's last four, never the secret's
    assert PAIR.secret_access_key[-4:] not in got.hint
    assert got.settings == {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/bedrock-invoke",
                            "external_id": "byok-acme-1"}
    names = set(got.secret)
    assert cloud_fields.auth_scheme(PROVIDERS["bedrock"], names) == "aws_sigv4"
    assert cloud_fields.derivation(PROVIDERS["bedrock"], names) == cloud_fields.DERIVE_STS
    assert cloud_fields.routing_settings(PROVIDERS["bedrock"], got.settings) == {"region": "us-east-1"}


def test_bedrock_api_key() -> None:
    key = shapes.bedrock_api_key()
    got = check("bedrock", {"api_key": key}, {"region": "us-west-2"})
    assert got.hint == "ABSK…" and cloud_fields.auth_scheme(PROVIDERS["bedrock"], {"api_key"}) == "bearer"
    assert cloud_fields.derivation(PROVIDERS["bedrock"], {"api_key"}) == ""


@pytest.mark.parametrize(("secret", "settings", "field"), [
    ({"access_key_id": "AKIA123", "secret_access_key": PAIR.secret_access_key}, {"region": "us-east-1"},
     "secret_fields.access_key_id"),
    ({"access_key_id": "ASIA" + "Q" * 16, "secret_access_key": PAIR.secret_access_key}, {"region": "us-east-1"},
     "secret_fields.access_key_id"),
    ({"access_key_id": PAIR.access_key_id, "secret_access_key": "short-secret-value"}, {"region": "us-east-1"},
     "secret_fields.secret_access_key"),
    ({"access_key_id": PAIR.access_key_id}, {"region": "us-east-1"}, "secret_fields"),
    ({"api_key": "sk-proj-" + "x" * 40}, {"region": "us-east-1"}, "secret_fields.api_key"),
    ({"api_key": shapes.bedrock_api_key()}, {}, "settings.region"),
    ({"api_key": shapes.bedrock_api_key()}, {"region": "US-EAST-1"}, "settings.region"),
    ({"api_key": shapes.bedrock_api_key()}, {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/x"},
     "settings.role_arn"),
    ({"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key},
     {"region": "us-east-1", "role_arn": "arn:aws:iam::12345:role/x"}, "settings.role_arn"),
    ({"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key},
     {"region": "us-east-1", "external_id": "byok-ext-1"}, "settings.external_id"),
    ({"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key},
     {"region": "us-east-1", "endpoint": ENDPOINT}, "settings"),
])
def test_bedrock_refusals_name_the_field(secret: dict[str, str], settings: dict[str, str], field: str) -> None:
    assert refused("bedrock", secret, settings).field == field


def test_an_asia_key_id_is_refused_with_the_reason() -> None:
    err = refused("bedrock", {"access_key_id": "ASIA" + "Q" * 16, "secret_access_key": PAIR.secret_access_key},
                  {"region": "us-east-1"})
    assert "temporary" in err.message and "AKIA" in err.message


# -- azure -----------------------------------------------------------------------------------------------------
def test_azure_api_key_and_settings_normalised() -> None:
    key = shapes.azure_api_key()
    got = check("azure_openai", {"api_key": key},
                {"endpoint": ENDPOINT.upper().replace("HTTPS", "https") + "/", "api_version": "2024-10-21",
                 "deployments": '{"gpt-4o": "prod-gpt4o", "gpt-4o-mini":"mini"}'})
    assert got.settings == {"endpoint": ENDPOINT, "api_version": "2024-10-21",
                            "deployments": '{"gpt-4o":"prod-gpt4o","gpt-4o-mini":"mini"}'}
    assert got.hint == "api-key@contoso-east" and key[-4:] not in got.hint
    assert cloud_fields.auth_scheme(PROVIDERS["azure_openai"], {"api_key"}) == "api_key"
    assert cloud_fields.routing_settings(PROVIDERS["azure_openai"], got.settings) == got.settings


def test_azure_entra_application() -> None:
    got = check("azure_openai", {"client_secret": APP.client_secret},
                {"endpoint": ENDPOINT, "tenant_id": APP.tenant_id.upper(), "client_id": APP.client_id})
    assert got.hint == f"app {APP.client_id}" and got.settings["tenant_id"] == APP.tenant_id  # GUIDs lower-cased
    assert cloud_fields.derivation(PROVIDERS["azure_openai"], {"client_secret"}) == cloud_fields.DERIVE_ENTRA
    assert cloud_fields.routing_settings(PROVIDERS["azure_openai"], got.settings) == {"endpoint": ENDPOINT}


@pytest.mark.parametrize(("secret", "settings", "field"), [
    ({"api_key": shapes.azure_api_key()}, {}, "settings.endpoint"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": "http://contoso.openai.azure.com"}, "settings.endpoint"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": "https://contoso.example.com"}, "settings.endpoint"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT + "/openai/v1"}, "settings.endpoint"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT, "api_version": "v1"}, "settings.api_version"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT, "deployments": "gpt-4o=prod"},
     "settings.deployments"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT, "deployments": '{"gpt-4o": "has space"}'},
     "settings.deployments"),
    ({"api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT, "deployments": "[]"}, "settings.deployments"),
    ({"api_key": "not-an-azure-key!"}, {"endpoint": ENDPOINT}, "secret_fields.api_key"),
    ({"client_secret": APP.client_secret}, {"endpoint": ENDPOINT, "client_id": APP.client_id}, "settings.tenant_id"),
    ({"client_secret": APP.client_secret}, {"endpoint": ENDPOINT, "tenant_id": "contoso", "client_id": APP.client_id},
     "settings.tenant_id"),
    ({"client_secret": str(APP.tenant_id)}, {"endpoint": ENDPOINT, "tenant_id": APP.tenant_id,
                                              "client_id": APP.client_id}, "secret_fields.client_secret"),
    ({"client_secret": APP.client_secret, "api_key": shapes.azure_api_key()}, {"endpoint": ENDPOINT},
     "secret_fields"),
])
def test_azure_refusals_name_the_field(secret: dict[str, str], settings: dict[str, str], field: str) -> None:
    assert refused("azure_openai", secret, settings).field == field


def test_an_azure_endpoint_elsewhere_needs_ops_allowlist() -> None:
    gateway = {"api_key": shapes.azure_api_key()}, {"endpoint": "https://llm-gateway.corp.example"}
    refused("azure_openai", *gateway)
    allowed = EgressPolicy(allowed_hosts=("llm-gateway.corp.example",))
    assert check("azure_openai", *gateway, policy=allowed).settings["endpoint"] == "https://llm-gateway.corp.example"


# -- vertex ----------------------------------------------------------------------------------------------------
def test_vertex_service_account() -> None:
    got = check("vertex_ai", {"service_account_json": SA_KEY}, {"location": "us-central1"})
    info = json.loads(SA_KEY)
    assert got.hint == info["client_email"] and got.settings == {"location": "us-central1"}
    assert info["private_key_id"] not in got.hint and info["private_key"][40:60] not in got.hint
    assert cloud_fields.auth_scheme(PROVIDERS["vertex_ai"], {"service_account_json"}) == "bearer"


def _key_with(**changes: Any) -> str:
    info = json.loads(SA_KEY)
    for name, value in changes.items():
        if value is None:
            del info[name]
        else:
            info[name] = value
    return json.dumps(info)


_EC_PEM = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.parametrize(("key_file", "wording"), [
    ("not json at all", "is not JSON"),
    ("[1, 2]", "JSON object"),
    (_key_with(type="authorized_user"), "service_account"),
    (_key_with(private_key=None), "lacks private_key"),
    (_key_with(client_email=None, token_uri=None), "lacks client_email, token_uri"),
    (_key_with(private_key="-----BEGIN PRIVATE KEY-----\nnotbase64\n-----END PRIVATE KEY-----\n"), "PEM"),
    (_key_with(private_key=_EC_PEM), "not an RSA key"),
    (_key_with(private_key_id="abc"), "private_key_id"),
    (_key_with(project_id="Bad_Project"), "project id"),
    (_key_with(universe_domain="apis-tpclp.goog"), "universe_domain"),
    (_key_with(token_uri="https://token.evil.example/token"), "token_uri"),
    (_key_with(token_uri="http://127.0.0.1:9/token"), "token_uri"),
    ("x" * 20000, "larger than"),
])
def test_service_account_refusals(key_file: str, wording: str) -> None:
    err = refused("vertex_ai", {"service_account_json": key_file}, {"location": "us-central1"})
    assert err.field.startswith("secret_fields.service_account_json") and wording in err.message
    assert "PRIVATE KEY" not in err.message


def test_a_token_uri_elsewhere_is_refused_unless_ops_allow_it() -> None:
    local = _key_with(token_uri="http://127.0.0.1:8899/token")
    refused("vertex_ai", {"service_account_json": local}, {"location": "global"})
    assert check("vertex_ai", {"service_account_json": local}, {"location": "global"}, DEV).hint
    corp = _key_with(token_uri="https://oauth.corp.example/token")
    refused("vertex_ai", {"service_account_json": corp}, {"location": "global"})
    assert check("vertex_ai", {"service_account_json": corp}, {"location": "global"},
                 EgressPolicy(allowed_hosts=("oauth.corp.example",))).hint


@pytest.mark.parametrize(("settings", "field"), [
    ({}, "settings.location"), ({"location": "US-CENTRAL1"}, "settings.location"),
    ({"location": "us-central1", "project": "x"}, "settings.project"),
    ({"location": "us-central1", "region": "us-east-1"}, "settings"),
])
def test_vertex_settings_refusals(settings: dict[str, str], field: str) -> None:
    assert refused("vertex_ai", {"service_account_json": SA_KEY}, settings).field == field


# -- every provider ----------------------------------------------------------------------------------------------
def test_single_key_providers_take_no_settings_or_fields() -> None:
    key = "sk-proj-" + "a1B2" * 10
    assert check("openai", {"api_key": key}).hint == "sk-…" + key[-4:]
    assert refused("openai", {"api_key": key}, {"region": "us-east-1"}).field == "settings"
    assert refused("openai", {"access_key_id": PAIR.access_key_id}).field == "secret_fields"


def test_unknown_setting_names_are_not_echoed() -> None:
    pasted = "sk-proj-" + "Z" * 40
    err = refused("bedrock", {"api_key": shapes.bedrock_api_key()}, {"region": "us-east-1", pasted: "x"})
    assert pasted not in err.message and "region, role_arn, external_id" in err.message


def test_fingerprints_cover_every_field_of_the_secret() -> None:
    base = {"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key}
    other_secret = {**base, "secret_access_key": shapes.access_key_pair().secret_access_key}
    other_id = {**base, "access_key_id": shapes.access_key_pair().access_key_id}
    prints = {check("bedrock", s, {"region": "us-east-1"}).fingerprint for s in (base, other_secret, other_id)}
    assert len(prints) == 3 and all(p.startswith("sha256:") and len(p) == 23 for p in prints)
    assert check("bedrock", base, {"region": "us-east-1"}).fingerprint == \
        check("bedrock", dict(reversed(base.items())), {"region": "eu-west-1"}).fingerprint  # the secret's alone


# -- derivation endpoints ------------------------------------------------------------------------------------------
def test_endpoint_overrides_are_checked_at_start(tmp_path: Path) -> None:
    tls = CertificateAuthority.create().write_identity(tmp_path, "keyservice")
    base = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "hvs.test-token-value-0123456789",
            "BYOK_ROLES": "spiffe://byok.local/admin=admin", "BYOK_TLS_CERT": tls.cert, "BYOK_TLS_KEY": tls.key,
            "BYOK_TLS_CA": tls.ca}
    ok = KeyServiceSettings.from_env(base | {"BYOK_AWS_STS_ENDPOINT": "https://sts.eu-west-1.amazonaws.com",
                                             "BYOK_ENTRA_AUTHORITY_HOST": "https://login.microsoftonline.us/"})
    assert ok.derive.aws_sts_endpoint == "https://sts.eu-west-1.amazonaws.com"
    assert ok.derive.entra_authority_host == "https://login.microsoftonline.us"
    for name, url in (("BYOK_AWS_STS_ENDPOINT", "https://sts.evil.example"),
                      ("BYOK_AWS_STS_ENDPOINT", "https://127.0.0.1:4443"),
                      ("BYOK_ENTRA_AUTHORITY_HOST", "https://login.evil.example"),
                      ("BYOK_ENTRA_AUTHORITY_HOST", "http://login.microsoftonline.com")):
        with pytest.raises(SettingsError, match=name):
            KeyServiceSettings.from_env(base | {name: url})
    dev = KeyServiceSettings.from_env(base | {"BYOK_AWS_STS_ENDPOINT": "https://127.0.0.1:4443",
                                              "BYOK_DEV_LOOPBACK_HTTP": "1"})
    assert dev.derive.aws_sts_endpoint == "https://127.0.0.1:4443"
    allowed = KeyServiceSettings.from_env(base | {"BYOK_ENTRA_AUTHORITY_HOST": "https://login.corp.example",
                                                  "BYOK_API_BASE_ALLOWLIST": "login.corp.example"})
    assert allowed.derive.entra_authority_host == "https://login.corp.example"
    with pytest.raises(SettingsError, match="BYOK_CLOUD_AUTH_CA_FILE"):
        KeyServiceSettings.from_env(base | {"BYOK_CLOUD_AUTH_CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(SettingsError, match="BYOK_AWS_SESSION_SECONDS"):
        KeyServiceSettings.from_env(base | {"BYOK_AWS_SESSION_SECONDS": "60"})


def test_the_http_client_refuses_urls_a_library_learns_elsewhere() -> None:
    """MSAL posts the client secret to the token_endpoint a discovery document names: only the authority's host."""
    http = CheckedHttp(DEV)
    calls = http.calls(lambda host: host == "login.microsoftonline.com", "Entra ID", timeout=1.0)
    with pytest.raises(FailedPrecondition, match="evil.example is not Entra ID"):
        calls.send("POST", "https://evil.example/tenant/oauth2/v2.0/token", b"client_secret=x", {})
    with pytest.raises(FailedPrecondition, match="must use https"):
        calls.send("POST", "http://login.microsoftonline.com/t/oauth2/v2.0/token", b"", {})


# -- each library's answers ------------------------------------------------------------------------------------------
def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "The security token included in the request is invalid."},
         "ResponseMetadata": {"HTTPStatusCode": status}}, "GetSessionToken")


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("InvalidClientTokenId", 403, CredentialRejected), ("SignatureDoesNotMatch", 403, CredentialRejected),
    ("AccessDenied", 403, CredentialRejected), ("ExpiredToken", 400, CredentialRejected),
    ("Throttling", 400, Unavailable), ("InternalFailure", 500, Unavailable), ("SomethingNew", 503, Unavailable),
    ("ValidationError", 400, FailedPrecondition), ("RegionDisabledException", 403, FailedPrecondition),
    ("<script>", 400, FailedPrecondition),
])
def test_sts_answers_are_classified(code: str, status: int, kind: type[KeyServiceError]) -> None:
    ours = derive_aws._refusal(_client_error(code, status))  # noqa: SLF001 - the mapping itself
    assert type(ours) is kind and "security token" not in ours.message and "<script>" not in ours.message
    if isinstance(ours, CredentialRejected):
        assert ours.reason == code


def _botocore_transport_errors() -> list[type[BaseException]]:
    found, todo = [], [botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("exc_type", _botocore_transport_errors(), ids=lambda c: c.__name__)
def test_every_botocore_transport_error_is_unavailable(exc_type: type[BaseException]) -> None:
    assert issubclass(exc_type, derive_aws.TRANSPORT_ERRORS)


@pytest.mark.parametrize(("data", "retryable", "kind"), [
    ({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, False, CredentialRejected),
    ({"error": "invalid_client"}, False, CredentialRejected), ({"error": "unauthorized_client"}, False,
                                                               CredentialRejected),
    ({"error": "internal_failure"}, True, Unavailable), ({"error": "invalid_scope"}, False, FailedPrecondition),
])
def test_google_answers_are_classified(data: dict[str, str], retryable: bool, kind: type[KeyServiceError]) -> None:
    exc = google.auth.exceptions.RefreshError(f"{data['error']}: described", data, retryable=retryable)
    ours = derive_google._refusal(exc)  # noqa: SLF001
    assert type(ours) is kind and "described" not in ours.message


@pytest.mark.parametrize(("result", "status", "kind", "reason"), [
    ({"error": "invalid_client", "error_codes": [7000215]}, 401, CredentialRejected, "AADSTS7000215"),
    ({"error": "unauthorized_client", "error_codes": [700016]}, 400, CredentialRejected, "AADSTS700016"),
    ({"error": "invalid_tenant", "error_codes": [90002]}, 400, CredentialRejected, "AADSTS90002"),
    ({"error": "temporarily_unavailable"}, 503, Unavailable, ""),
    ({"error": "invalid_request", "error_codes": [90014]}, 429, Unavailable, ""),
    ({"error": "invalid_scope", "error_codes": [1002012]}, 400, FailedPrecondition, ""),
])
def test_entra_answers_are_classified(result: dict[str, Any], status: int, kind: type[KeyServiceError],
                                      reason: str) -> None:
    calls = Calls(CheckedHttp(STRICT), lambda host: True, "Entra ID", deadline=0)
    calls.last = Answer(status, {}, b"{}")
    ours = derive_azure._refusal(result, calls)  # noqa: SLF001
    assert type(ours) is kind
    if reason:
        assert ours.reason == reason  # type: ignore[attr-defined]


# -- the cache ------------------------------------------------------------------------------------------------------
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _cache(now: Callable[[], dt.datetime] = lambda: NOW) -> DerivedCache:
    return DerivedCache(refresh_before=dt.timedelta(seconds=60) + REFRESH_MARGIN, now=now)


def _token(minutes: float) -> Derived:
    return Derived("google_oauth2", expires_at=NOW + dt.timedelta(minutes=minutes), token="ya29.test")


def test_a_cached_credential_serves_until_the_refresh_margin() -> None:
    clock = [NOW]
    cache = _cache(lambda: clock[0])
    derivations = iter([_token(60), _token(120)])
    first = cache.get(("cred_a", 1), "google_oauth2", lambda: next(derivations))
    clock[0] = NOW + dt.timedelta(minutes=53, seconds=59)  # 6 min 1 s left: still more than TTL + margin
    assert cache.get(("cred_a", 1), "google_oauth2", lambda: next(derivations)) is first
    clock[0] = NOW + dt.timedelta(minutes=54, seconds=1)  # less than a lease lifetime + 5 minutes left
    assert cache.get(("cred_a", 1), "google_oauth2", lambda: next(derivations)).expires_at == NOW + \
        dt.timedelta(minutes=120)
    assert cache.stats == {("google_oauth2", "miss"): 2, ("google_oauth2", "hit"): 1}
    assert cache.peek(("cred_a", 2)) is None  # another secret version is another credential


def test_one_derivation_per_key_at_a_time() -> None:
    cache = _cache()
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> Derived:
        calls.append(1)
        entered.set()
        assert release.wait(10)
        return _token(60)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(cache.get, ("cred_a", 1), "google_oauth2", slow)
        assert entered.wait(10)
        waiting = [pool.submit(cache.get, ("cred_a", 1), "google_oauth2", slow) for _ in range(3)]
        release.set()
        results = [first.result(10), *(w.result(10) for w in waiting)]
    assert len(calls) == 1 and all(r is results[0] for r in results)
    assert cache.stats == {("google_oauth2", "miss"): 1, ("google_oauth2", "hit"): 3}


def test_a_drop_during_a_derivation_keeps_its_result_out() -> None:
    cache = _cache()

    def derive_then_dropped() -> Derived:
        cache.drop("cred_a")  # a rotation's revocation arrives while STS answers
        return _token(60)

    cache.get(("cred_a", 1), "aws_sts", derive_then_dropped)
    assert len(cache) == 0
    cache.get(("cred_a", 1), "aws_sts", lambda: _token(60))
    assert len(cache) == 1 and cache.drop("cred_a") == 1 and len(cache) == 0


def test_a_failed_derivation_is_counted_and_not_cached() -> None:
    cache = _cache()

    def refused_by_sts() -> Derived:
        raise CredentialRejected("AWS STS", "InvalidClientTokenId")

    with pytest.raises(CredentialRejected):
        cache.get(("cred_a", 1), "aws_sts", refused_by_sts)
    assert cache.stats == {("aws_sts", "error"): 1} and len(cache) == 0


def test_the_cache_is_bounded() -> None:
    cache = DerivedCache(refresh_before=dt.timedelta(minutes=6), max_entries=3, now=lambda: NOW)
    for i in range(5):
        cache.get((f"cred_{i}", 1), "aws_sts", lambda: _token(60))
    assert len(cache) == 3 and cache.peek(("cred_0", 1)) is None and cache.peek(("cred_4", 1)) is not None


def test_derive_settings_defaults() -> None:
    settings = DeriveSettings()
    assert settings.aws_session_seconds == 3600 and settings.entra_authority_host == \
        "https://login.microsoftonline.com"
    settings.check(STRICT)
    assert fieldchecks.GOOGLE_TOKEN_HOSTS >= {"oauth2.googleapis.com"}


# -- byokctl's options ---------------------------------------------------------------------------------------------
def test_byokctl_secret_fields_come_from_files_or_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "id.txt").write_text(PAIR.access_key_id + "\n")
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(PAIR.secret_access_key + "\n"))
    assert secret_fields([f"access_key_id=@{tmp_path}/id.txt", "secret_access_key=-"]) == \
        {"access_key_id": PAIR.access_key_id, "secret_access_key": PAIR.secret_access_key}
    with pytest.raises(UsageError) as err:
        secret_fields([f"secret_access_key={PAIR.secret_access_key}"])
    assert PAIR.secret_access_key not in str(err.value) and "never on the command line" in str(err.value)
    with pytest.raises(UsageError, match="only one field"):
        secret_fields(["a=-", "b=-"])
    with pytest.raises(UsageError, match="cannot read"):
        secret_fields([f"access_key_id=@{tmp_path}/missing.txt"])
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        secret_fields([f"x=@{tmp_path}/empty"])


def test_byokctl_settings() -> None:
    assert settings_of(["region=us-east-1", 'deployments={"a": "b"}']) == {"region": "us-east-1",
                                                                          "deployments": '{"a": "b"}'}
    with pytest.raises(UsageError, match="twice"):
        settings_of(["region=us-east-1", "region=eu-west-1"])
    with pytest.raises(UsageError, match="NAME=VALUE"):
        settings_of(["region"])
