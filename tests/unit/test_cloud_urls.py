"""Where the cloud providers' requests go and how they present the lease's credential: Azure OpenAI's deployment
URLs (and its /openai/v1 API, model → deployment by the credential's settings), Vertex AI's project and location
paths, Bedrock's percent-encoded model ids, every auth scheme's headers, and a SigV4 signature made as upstream
sends the request that an AWS-style verifier (botocore computing it again from the credentials) accepts — and
refuses once anything signed changes. Also: a lease is never used past its AWS credentials' expiry."""

from __future__ import annotations

import datetime
import json
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers, presented_key
from devstack.cloudfakes import SessionCredentials, event, verify
from proxyservice import errors
from proxyservice.adapters import adapter_for
from proxyservice.adapters.base import presentation, signing_region
from proxyservice.adapters.bedrock import model_path
from proxyservice.adapters.gemini import vertex_api_base, vertex_model_url
from proxyservice.adapters.openai import azure_endpoint, azure_url
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import LeaseCache
from proxyservice.native.headers import to_provider
from proxyservice.native.paths import native_root
from proxyservice.native.usage_tap import UsageTap
from proxyservice.upstream import sigv4_headers

# Fakes shaped like the real things: an Azure key (32 hex), an Entra token (a JWT), an AWS session (ASIA…).
AZURE_KEY = "3f9c2a7b41d84e0f9a6b5c8d7e2f1a04"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvZ25pdGl2ZXNlcnZpY2VzIn0.c2lnbmF0dXJl"
GOOGLE_TOKEN = "ya29.a0AfB_byC3x9Fake-Token_For-Tests-Only0123456789abcdefABCDEF"
ACCESS_KEY_ID = "ASIAZ7FAKEEXAMPLE123"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY123"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIFakeSessionTokenForTestsOnly" * 3


def params(model: str = "gpt-4o", **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(model=model, messages=[pb.Message(role=pb.ROLE_USER, content="hi")], **kw)


def lease(provider: str, family: str, scheme: str = "", **kw: Any) -> kpb.IssueKeyLeaseResponse:
    return kpb.IssueKeyLeaseResponse(provider=provider, api_family=family, auth_scheme=scheme, **kw)


def build(lease_: kpb.IssueKeyLeaseResponse, model: str, stream: bool = True) -> Any:
    return adapter_for(lease_.api_family).build_request(
        params(model), api_base=lease_.api_base, api_key=lease_.api_key, model=model, stream=stream,
        provider=lease_.provider, lease=lease_)


# ---- Azure OpenAI ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "api_base", "model", "url", "body_model"), [
    ({"endpoint": "https://acme.openai.azure.com", "api_version": "2024-10-21"}, "", "gpt-4o",
     "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", "gpt-4o"),
    ({"endpoint": "https://acme.openai.azure.com/", "api_version": "2024-10-21",
      "deployments": '{"gpt-4o": "prod 4o/eu"}'}, "", "gpt-4o",
     "https://acme.openai.azure.com/openai/deployments/prod%204o%2Feu/chat/completions?api-version=2024-10-21",
     "gpt-4o"),
    ({"endpoint": "https://acme.cognitiveservices.azure.com", "deployments": '{"gpt-4o": "prod-4o"}'}, "", "gpt-4o",
     "https://acme.cognitiveservices.azure.com/openai/v1/chat/completions", "prod-4o"),
    ({}, "https://acme.openai.azure.com/openai/v1/", "gpt-4.1", "https://acme.openai.azure.com/openai/v1/chat/completions",
     "gpt-4.1"),
])
def test_azure_urls(settings: dict[str, str], api_base: str, model: str, url: str, body_model: str) -> None:
    assert azure_url(settings, api_base, model) == (url, body_model)


def test_azure_endpoint_is_the_api_base_else_the_setting() -> None:
    assert azure_endpoint({"endpoint": "https://a.openai.azure.com"}, "https://b.openai.azure.com/openai") == \
        "https://b.openai.azure.com"
    assert azure_endpoint({"endpoint": "https://a.openai.azure.com/"}, "") == "https://a.openai.azure.com"


@pytest.mark.parametrize("deployments", ['["gpt-4o"]', '{"gpt-4o": 3}', "{not json", '{"gpt-4o": ""}'])
def test_a_broken_deployments_setting_is_the_credentials_fault(deployments: str) -> None:
    with pytest.raises(errors.FailedPrecondition, match="deployments setting"):
        azure_url({"endpoint": "https://a.openai.azure.com", "deployments": deployments}, "", "gpt-4o")


def test_an_azure_api_key_goes_in_api_key_and_an_entra_token_as_a_bearer() -> None:
    settings = {"endpoint": "https://acme.openai.azure.com", "api_version": "2024-10-21"}
    keyed = build(lease("azure_openai", "openai", "api_key", api_key=AZURE_KEY, settings=settings), "gpt-4o")
    assert keyed.headers["api-key"] == AZURE_KEY and "authorization" not in keyed.headers
    assert keyed.url.startswith("https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?")
    entra = build(lease("azure_openai", "openai", "bearer", api_key=ENTRA_TOKEN, settings=settings), "gpt-4o")
    assert entra.headers["authorization"] == f"Bearer {ENTRA_TOKEN}" and "api-key" not in entra.headers
    for request in (keyed, entra):
        assert AZURE_KEY not in request.url and ENTRA_TOKEN not in request.url


def test_the_v1_api_names_the_deployment_in_the_body() -> None:
    settings = {"endpoint": "https://acme.openai.azure.com", "deployments": '{"gpt-4o": "prod-4o"}'}
    request = build(lease("azure_openai", "openai", api_key=AZURE_KEY, settings=settings), "gpt-4o")
    assert request.url == "https://acme.openai.azure.com/openai/v1/chat/completions"
    assert b'"model":"prod-4o"' in request.body


def test_other_openai_family_requests_are_unchanged_by_a_lease() -> None:
    plain = lease("openai", "openai", api_key="sk-proj-" + "a1" * 20, api_base="https://api.openai.com/v1")
    with_lease = build(plain, "gpt-4o")
    without = adapter_for("openai").build_request(params(), api_base=plain.api_base, api_key=plain.api_key,
                                                  model="gpt-4o", stream=True, provider="openai")
    assert (with_lease.url, with_lease.headers, with_lease.body) == (without.url, without.headers, without.body)


# ---- Vertex AI ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("location", "base"), [
    ("us-central1", "https://us-central1-aiplatform.googleapis.com/v1"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com/v1"),
    ("global", "https://aiplatform.googleapis.com/v1"),
])
def test_vertex_api_base_per_location(location: str, base: str) -> None:
    assert vertex_api_base(location) == base


def test_vertex_model_urls() -> None:
    settings = {"project": "acme-prod", "location": "us-central1"}
    assert vertex_model_url("", settings, "models/gemini-2.5-flash") == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/acme-prod/locations/us-central1/publishers/"
        "google/models/gemini-2.5-flash")
    assert vertex_model_url("http://127.0.0.1:9/v1/", settings, "gemini 2?x") == (
        "http://127.0.0.1:9/v1/projects/acme-prod/locations/us-central1/publishers/google/models/gemini%202%3Fx")
    with pytest.raises(errors.FailedPrecondition, match="project and location"):
        vertex_model_url("", {"location": "global"}, "gemini-2.5-flash")


def test_a_vertex_request_streams_with_the_token_as_a_bearer() -> None:
    vertex = lease("vertex_ai", "gemini", "bearer", api_key=GOOGLE_TOKEN,
                   api_base="https://global-unused.example/v1", settings={"project": "p1", "location": "global"})
    streamed, whole = build(vertex, "gemini-2.5-pro"), build(vertex, "gemini-2.5-pro", stream=False)
    assert streamed.url == ("https://global-unused.example/v1/projects/p1/locations/global/publishers/google/models/"
                            "gemini-2.5-pro:streamGenerateContent?alt=sse")
    assert whole.url.endswith("/models/gemini-2.5-pro:generateContent")
    assert streamed.headers["authorization"] == f"Bearer {GOOGLE_TOKEN}" and "x-goog-api-key" not in streamed.headers
    assert GOOGLE_TOKEN not in streamed.url


def test_vertex_without_its_lease_is_refused_not_sent_to_the_gemini_api() -> None:
    with pytest.raises(errors.FailedPrecondition):
        adapter_for("gemini").build_request(params("gemini-2.5-pro"), api_base="", api_key=GOOGLE_TOKEN,
                                            model="gemini-2.5-pro", stream=True, provider="vertex_ai")


# ---- Bedrock --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "path"), [
    ("anthropic.claude-3-sonnet-20240229-v1:0", "/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0",
     "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0",
     "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-3-70b-instruct-v1"
     "%3A0/converse-stream"),
])
def test_bedrock_model_ids_are_one_encoded_path_segment(model: str, path: str) -> None:
    assert model_path(model, stream=True) == path
    assert model_path(model, stream=False) == path.removesuffix("-stream")


def aws_lease(**kw: Any) -> kpb.IssueKeyLeaseResponse:
    return lease("bedrock", "bedrock", "aws_sigv4", api_base="https://bedrock-runtime.eu-central-1.amazonaws.com",
                 aws_credentials=kpb.AwsSessionCredentials(access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET,
                                                           session_token=SESSION_TOKEN), **kw)


def test_a_sigv4_lease_is_signed_by_upstream_not_put_in_a_header() -> None:
    request = build(aws_lease(), "anthropic.claude-3-haiku-20240307-v1:0")
    assert "authorization" not in request.headers and request.sigv4 is not None
    assert (request.sigv4.region, request.sigv4.service) == ("eu-central-1", "bedrock")
    assert SECRET not in repr(request) and SESSION_TOKEN not in repr(request)


def test_the_signing_region_is_the_setting_else_the_hosts() -> None:
    assert signing_region(aws_lease(settings={"region": "ap-south-1"})) == "ap-south-1"
    assert signing_region(aws_lease()) == "eu-central-1"
    with pytest.raises(errors.FailedPrecondition, match="region"):
        signing_region(lease("bedrock", "bedrock", "aws_sigv4", api_base="http://127.0.0.1:9"))


def test_a_bedrock_api_key_is_a_bearer() -> None:
    key = "ABSKQmVkcm9ja0FQSUtleS1mYWtlLWZvci10ZXN0cw=="
    for scheme in ("bearer", ""):
        request = build(lease("bedrock", "bedrock", scheme, api_key=key,
                              api_base="https://bedrock-runtime.us-east-1.amazonaws.com"), "amazon.nova-pro-v1:0")
        assert request.headers["authorization"] == f"Bearer {key}" and request.sigv4 is None


def test_a_sigv4_lease_without_session_credentials_is_refused() -> None:
    empty = lease("bedrock", "bedrock", "aws_sigv4", settings={"region": "us-east-1"})
    with pytest.raises(errors.FailedPrecondition, match="session credentials"):
        presentation(empty, family="bedrock", api_key="")


def test_an_unknown_auth_scheme_is_refused_naming_it() -> None:
    with pytest.raises(errors.FailedPrecondition, match="hmac_v9"):
        presentation(lease("openai", "openai", "hmac_v9", api_key="k"), family="openai", api_key="k")


def test_auth_headers_per_scheme() -> None:
    assert auth_headers("openai", "k") == {"authorization": "Bearer k"}
    assert auth_headers("openai", "k", provider="azure_openai") == {"api-key": "k"}
    assert auth_headers("openai", "k", scheme="bearer", provider="azure_openai") == {"authorization": "Bearer k"}
    assert auth_headers("gemini", "k", scheme="bearer") == {"authorization": "Bearer k"}
    assert presented_key({"api-key": "k"}) == "k"
    with pytest.raises(ValueError, match="signing"):
        auth_headers("bedrock", "", scheme="aws_sigv4")


def sent(url: str, headers: dict[str, str], body: bytes) -> httpx.Request:
    """The request as httpx would send it, signed as upstream signs it."""
    creds = presentation(aws_lease(settings={"region": "us-east-1"}), family="bedrock", api_key="")[1]
    assert creds is not None
    request = httpx.Request("POST", url, headers=headers, content=body)
    request.headers.update(sigv4_headers(creds, "POST", str(request.url), headers, body))
    return request


def test_a_signature_verifies_with_botocore_and_breaks_with_any_signed_change() -> None:
    url = "http://127.0.0.1:8443/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse-stream"
    body = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
    request = sent(url, {"content-type": "application/json"}, body)
    headers = {k.lower(): v for k, v in request.headers.items()}
    target = request.url.raw_path.decode()
    assert "%3A0" in target  # the encoded id, exactly as signed
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=15)
    known = {ACCESS_KEY_ID: SessionCredentials(ACCESS_KEY_ID, SECRET, SESSION_TOKEN, expires)}

    def check(**change: Any) -> str:
        refusal = verify("POST", change.get("target", target), change.get("headers", headers),
                         change.get("body", body), known=change.get("known", known),
                         region=change.get("region", "us-east-1"), now=change.get("now"))
        return refusal.error_type if refusal else "ok"

    assert check() == "ok"
    assert check(body=body + b" ") == "InvalidSignatureException"
    assert check(target=target.replace("%3A", ":")) == "InvalidSignatureException"
    assert check(headers={**headers, "content-type": "text/plain"}) == "InvalidSignatureException"
    assert check(region="us-west-2") == "InvalidSignatureException"
    assert check(known={ACCESS_KEY_ID: SessionCredentials(ACCESS_KEY_ID, SECRET[::-1], SESSION_TOKEN, expires)}) \
        == "InvalidSignatureException"
    assert check(headers={**headers, "x-amz-security-token": SESSION_TOKEN[:-1]}) == "UnrecognizedClientException"
    assert check(known={}) == "UnrecognizedClientException"
    assert check(now=expires + datetime.timedelta(seconds=1)) == "ExpiredTokenException"
    assert check(headers={k: v for k, v in headers.items() if k != "authorization"}) == \
        "MissingAuthenticationTokenException"


def test_a_signature_is_made_at_sending_time() -> None:
    request = sent("https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse", {}, b"{}")
    stamp = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    assert abs(datetime.datetime.now(datetime.UTC) - stamp) < datetime.timedelta(seconds=5)
    assert request.headers["x-amz-security-token"] == SESSION_TOKEN
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token" in request.headers["authorization"]


# ---- the lease cache and AWS expiry ---------------------------------------------------------------------------

def _stamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(int(seconds * 1e6))
    return ts


async def test_a_lease_is_not_used_past_its_aws_credentials_expiry() -> None:
    now = 1_000_000.0
    clock = {"t": now}
    leased = aws_lease(lease_id="lease_1", credential_id="cred_1", expire_time=_stamp(now + 300))
    leased.aws_credentials.expire_time.CopyFrom(_stamp(now + 30))  # the session ends first

    async def fetch(_key: LeaseKey, _exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        fresh = kpb.IssueKeyLeaseResponse()
        fresh.CopyFrom(leased)
        return fresh

    cache = LeaseCache(fetch, clock=lambda: clock["t"], wall=lambda: clock["t"])
    key = LeaseKey("spiffe://t/caller", "acme", "", "", "bedrock", "", "")
    first = await cache.get(key)
    assert first.expires_at == pytest.approx(now + 30 - 1.0)
    clock["t"] = now + 29.5
    assert cache.sweep() == 1  # past the session's end (and the margin): dropped, its secrets cleared
    assert not first.lease.HasField("aws_credentials") and not first.lease.api_key
    await cache.close()


# ---- the native passthrough -----------------------------------------------------------------------------------

def test_native_roots_are_the_sdks_roots() -> None:
    assert native_root(aws_lease()) == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    azure = lease("azure_openai", "openai", api_base="https://acme.openai.azure.com/openai/v1",
                  settings={"endpoint": "https://acme.openai.azure.com"})
    assert native_root(azure) == "https://acme.openai.azure.com"
    vertex = lease("vertex_ai", "gemini", api_base="https://us-central1-aiplatform.googleapis.com/v1")
    assert native_root(vertex) == "https://us-central1-aiplatform.googleapis.com"
    assert native_root(lease("vertex_ai", "gemini", settings={"location": "global"})) == \
        "https://aiplatform.googleapis.com"
    assert native_root(lease("openai", "openai", api_base="https://api.openai.com/v1")) == "https://api.openai.com/v1"


def test_an_aws_sdks_own_signature_never_reaches_bedrock() -> None:
    caller = [("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/x, Signature=abc"),
              ("x-amz-security-token", "caller-token"), ("x-amz-date", "20260101T000000Z"),
              ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("content-type", "application/json"),
              ("x-amzn-bedrock-trace", "ENABLED")]
    sent_headers = to_provider(caller, "bedrock", "", {})
    assert sent_headers == {"content-type": "application/json", "x-amzn-bedrock-trace": "ENABLED",
                            "accept-encoding": "identity"}
    azure = to_provider([("api-key", "caller-key")], "openai", AZURE_KEY, {"api-key": AZURE_KEY})
    assert azure["api-key"] == AZURE_KEY


def test_the_usage_tap_reads_bedrocks_counts_in_both_shapes() -> None:
    stream = UsageTap("application/vnd.amazon.eventstream")
    body = event("messageStop", {"stopReason": "end_turn"}) + event("metadata", {"usage": {
        "inputTokens": 11, "outputTokens": 4, "totalTokens": 15, "cacheReadInputTokens": 8}, "metrics": {}})
    for i in range(0, len(body), 7):
        stream.feed(body[i:i + 7])
    assert stream.close().fields() == {"input_tokens": 11, "output_tokens": 4, "cached_input_tokens": 8}
    whole = UsageTap("application/json")
    whole.feed(json.dumps({"output": {}, "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5,
                                                   "cacheWriteInputTokens": 1}}).encode())
    assert whole.close().fields() == {"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 1}
