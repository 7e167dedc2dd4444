"""Bedrock, Azure OpenAI and Vertex AI end to end: real keyservice (SQLite, the shared OpenBao) deriving short-lived
credentials from the stand-ins of STS, Google's token endpoint and Entra ID (devstack/authfakes, over https), the
real proxy, and the cloud stand-ins (devstack/cloudfakes) checking what the providers check: SigV4 signatures by
the session credentials STS issued (recomputed with botocore), Bedrock API keys as bearers, Azure's api-key, Entra
tokens and api-version, Vertex's bearer, project and location.

- The lease the proxy holds for each kind carries only what keyservice derived (session credentials, a token) or a
  key leased as is, never the stored long-lived secret.
- The native front with the providers' own clients: botocore's bedrock-runtime client (converse_stream and
  converse, parsed by botocore from the relayed event stream) through https://PROXY/bedrock, signed again by the
  proxy; the openai SDK's AzureOpenAI (a deployment URL with api-version), with a key and with an Entra ID
  application's token; Vertex's streamGenerateContent over Forward.
- The unified schema (StreamChat, Chat) for every kind: SigV4-signed Bedrock Converse with the STS session, a
  Bedrock API key, Azure deployment URLs and its /openai/v1 API with a key or an Entra token, Vertex under its
  project and location; provider errors in Bedrock's shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.config
import botocore.session
import grpc
import openai
import pytest
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from devstack.authfakes import AuthFakes, StsFake
from devstack.authfakes.shapes import (
    AccessKeyPair,
    EntraApp,
    access_key_pair,
    azure_api_key,
    bedrock_api_key,
    entra_app,
    service_account_key,
)
from devstack.cloudfakes import CloudUpstream, SessionCredentials
from devstack.upstream import UpstreamConfig, generated_text
from keyservice.derive.settings import DeriveSettings
from keyservice.server import KeyServiceApp, create_server
from proxyservice.adapters import adapter_for
from proxyservice.keyclient import LeaseKey
from proxyservice.server import ProxyApp
from proxyservice.server import create_server as create_proxy
from tests.support.bao import BaoDevServer
from tests.support.http_front import front_url, mtls_client
from tests.support.stack import CALLER, Identities, keyservice_settings, proxy_settings, secure_channel

ORG = "acme"
FRAMES = 6
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"


class _Issued(Mapping[str, SessionCredentials]):
    """The session credentials the local STS has issued so far, live: what the Bedrock stand-in accepts."""

    def __init__(self, sts: StsFake) -> None:
        self._sts = sts

    def __getitem__(self, key: str) -> SessionCredentials:
        return self._sts.sessions[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sts.sessions)

    def __len__(self) -> int:
        return len(self._sts.sessions)


@dataclass
class Cloud:
    ids: Identities
    upstream: CloudUpstream
    fakes: AuthFakes
    keyservice: KeyServiceApp
    proxy: ProxyApp
    admin: kpb_grpc.KeyServiceStub
    chat: pb_grpc.ChatServiceStub
    pair: AccessKeyPair
    app: EntraApp
    bedrock_key: str
    azure_key: str
    service_account: str

    @property
    def sts(self) -> StsFake:
        return self.fakes.sts

    async def add(self, provider: str, name: str, secret: dict[str, str], **settings: str) -> str:
        reply = await self.admin.CreateCredential(kpb.CreateCredentialRequest(
            provider=provider, scope=kpb.Scope(org_id=ORG), name=name, secret_fields=secret, settings=settings))
        return str(reply.credential.credential_id)

    async def lease(self, provider: str, credential_id: str) -> kpb.IssueKeyLeaseResponse:
        """The lease as the proxy gets it (its own client, its own certificate)."""
        return await self.proxy.keys.issue_lease(LeaseKey(CALLER, ORG, "", "", provider, "", credential_id))

    def secrets(self) -> list[str]:
        """Every long-lived secret the tenant stored: none may reach the proxy, a log or a provider."""
        return [self.pair.secret_access_key, json.loads(self.service_account)["private_key"].splitlines()[1],
                self.app.client_secret]


@contextlib.asynccontextmanager
async def cloud_system(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[Cloud]:
    upstream = CloudUpstream(UpstreamConfig(frames=FRAMES, chunk_size=-1))
    await upstream.start()
    fakes = AuthFakes.start(tmp_path / "authfakes")  # STS, Google's token endpoint, Entra ID: https, their own CA
    pair, app = fakes.sts.add_user(access_key_pair()), fakes.entra.add_app(entra_app())
    service_account = service_account_key(fakes.google.token_uri)
    fakes.google.add_key(service_account)
    bedrock_key, azure_key = bedrock_api_key(), azure_api_key()
    upstream.bedrock.config.sessions = _Issued(fakes.sts)
    upstream.bedrock.config.api_keys = {bedrock_key}
    upstream.azure.config.api_keys = {azure_key}
    upstream.azure.config.tokens = fakes.entra.tokens  # the tokens the token services issued, live
    upstream.vertex.config.tokens = fakes.google.tokens
    bases = {"bedrock": upstream.bedrock_base, "azure_openai": upstream.azure_endpoint,
             "vertex_ai": upstream.vertex_base}
    env = fakes.keyservice_env()
    keyservice = await create_server(keyservice_settings(
        bao, ids, f"sqlite:///{tmp_path}/ks.db", provider_base_urls=bases, derive=DeriveSettings(
            aws_sts_endpoint=env["BYOK_AWS_STS_ENDPOINT"], entra_authority_host=env["BYOK_ENTRA_AUTHORITY_HOST"],
            ca_file=env["BYOK_CLOUD_AUTH_CA_FILE"])))
    proxy = await create_proxy(proxy_settings(ids, keyservice.port))
    channels = [secure_channel(keyservice.port, ids.admin), secure_channel(proxy.port, ids.caller)]
    cloud = Cloud(ids, upstream, fakes, keyservice, proxy, kpb_grpc.KeyServiceStub(channels[0]),
                  pb_grpc.ChatServiceStub(channels[1]), pair, app, bedrock_key, azure_key, service_account)
    await cloud.admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
        binding=kpb.CallerBinding(caller_identity=CALLER, org_id=ORG)))
    try:
        yield cloud
    finally:
        for channel in channels:
            await channel.close()
        await proxy.stop(grace=0)
        await keyservice.stop(grace=0)
        fakes.stop()
        await upstream.stop()


@pytest.fixture
async def cloud(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[Cloud]:
    async with cloud_system(bao, ids, tmp_path) as started:
        yield started


def params(model: str, provider: str, **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(tenant=pb.Tenant(org_id=ORG), model=model, provider=provider,
                             messages=[pb.Message(role=pb.ROLE_USER, content="hi")], **kw)


async def streamed(cloud: Cloud, p: pb.ChatParameters) -> tuple[pb.StreamStart, str, pb.Usage | None]:
    start, text, usage = None, "", None
    async for response in cloud.chat.StreamChat(pb.StreamChatRequest(parameters=p)):
        if response.HasField("start"):
            start = response.start
        text += "".join(c.text for c in response.choices)
        if response.HasField("usage"):
            usage = response.usage
    assert start is not None
    return start, text, usage


# ---- leases ---------------------------------------------------------------------------------------------------

async def test_each_lease_carries_only_a_derived_credential_or_a_key_leased_as_is(cloud: Cloud) -> None:
    sigv4 = await cloud.add("bedrock", "iam", {"access_key_id": cloud.pair.access_key_id,
                                               "secret_access_key": cloud.pair.secret_access_key}, region="us-east-1")
    vertex = await cloud.add("vertex_ai", "sa", {"service_account_json": cloud.service_account}, location="us-central1")
    keyed = await cloud.add("bedrock", "apikey", {"api_key": cloud.bedrock_key}, region="us-east-1")
    aws = await cloud.lease("bedrock", sigv4)
    assert (aws.auth_scheme, aws.api_key, aws.api_family) == ("aws_sigv4", "", "bedrock")
    assert aws.aws_credentials.access_key_id.startswith("ASIA") and aws.aws_credentials.session_token
    assert aws.aws_credentials.access_key_id in cloud.sts.sessions  # what STS issued, not the stored pair
    assert aws.expire_time.ToSeconds() <= aws.aws_credentials.expire_time.ToSeconds()
    assert dict(aws.settings) == {"region": "us-east-1"}
    token = await cloud.lease("vertex_ai", vertex)
    assert token.auth_scheme == "bearer" and token.api_key in cloud.fakes.google.tokens
    assert dict(token.settings) == {"location": "us-central1", "project": "byok-test-project"}
    bearer = await cloud.lease("bedrock", keyed)
    assert (bearer.auth_scheme, bearer.api_key) == ("bearer", cloud.bedrock_key)
    for lease in (aws, token, bearer):
        wire = lease.SerializeToString()
        assert not any(secret.encode() in wire for secret in cloud.secrets())
        assert cloud.pair.access_key_id.encode() not in wire


# ---- the native front, with the providers' own clients ---------------------------------------------------------

def bedrock_client(cloud: Cloud) -> Any:
    """botocore's bedrock-runtime client pointed at the proxy's front, with the caller's certificate and whatever
    AWS credentials it has (AWS's documented example pair: the proxy drops its signature and signs again)."""
    files = cloud.ids.caller
    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=f"{front_url(cloud.proxy.http_port)}/bedrock",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        verify=files.ca,
        config=botocore.config.Config(client_cert=(files.cert, files.key), retries={"max_attempts": 1}))
    client.meta.events.register("before-sign.bedrock-runtime.*",
                                lambda request, **_: request.headers.__setitem__("x-byok-org", ORG))
    return client


async def test_botocore_converses_through_the_native_front_signed_by_the_proxy(cloud: Cloud) -> None:
    await cloud.add("bedrock", "iam", {"access_key_id": cloud.pair.access_key_id,
                                       "secret_access_key": cloud.pair.secret_access_key}, region="us-east-1")
    client = bedrock_client(cloud)
    call = {"modelId": CLAUDE, "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 100}}

    def stream() -> list[dict[str, Any]]:
        return list(client.converse_stream(**call)["stream"])

    with structlog.testing.capture_logs() as logs:
        events = await asyncio.to_thread(stream)
        whole = await asyncio.to_thread(lambda: client.converse(**call))
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == generated_text(FRAMES) == whole["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"]["outputTokens"] == FRAMES and whole["stopReason"] == "end_turn"
    signed = [r for r in cloud.upstream.cloud_requests if r.cloud == "bedrock"]
    assert [r.status for r in signed] == [200, 200]
    assert all(r.signed_by in cloud.sts.sessions for r in signed)  # the session STS issued keyservice, not the SDK's
    assert all("x-amz-security-token" in r.credential_headers for r in signed)
    native = [line for line in logs if line.get("event") == "native"]
    assert [line["input_tokens"] is not None for line in native] == [True, True]  # the usage tap read both shapes
    dumped = json.dumps(logs, default=str)
    assert not any(s in dumped for s in cloud.secrets())
    session = next(iter(cloud.sts.sessions.values()))
    assert session.session_token not in dumped and session.secret_access_key not in dumped


def azure_sdk(cloud: Cloud, http: Any) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=f"{front_url(cloud.proxy.http_port)}/azure_openai",
                                   api_version="2024-10-21", api_key="unused-sdk-key", http_client=http, max_retries=0)


async def add_entra(cloud: Cloud) -> str:
    app = cloud.app
    return await cloud.add("azure_openai", "entra", {"client_secret": app.client_secret},
                           endpoint="https://acme.openai.azure.com", tenant_id=app.tenant_id, client_id=app.client_id)


async def test_an_entra_application_reaches_azure_with_only_its_token(cloud: Cloud) -> None:
    lease = await cloud.lease("azure_openai", await add_entra(cloud))
    assert lease.auth_scheme == "bearer" and lease.api_key in cloud.fakes.entra.tokens
    assert cloud.app.client_secret.encode() not in lease.SerializeToString()
    async with mtls_client(cloud.ids.caller, ORG) as http:
        reply = await azure_sdk(cloud, http).chat.completions.create(
            model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == generated_text(FRAMES)
    _, text, _ = await streamed(cloud, params("gpt-4o-prod", "azure_openai"))
    assert text == generated_text(FRAMES)
    native, unified = cloud.upstream.cloud_requests
    assert native.target == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert unified.target == "/openai/v1/chat/completions"
    assert all(r.credential_headers == ("authorization",) and r.status == 200 for r in (native, unified))


async def test_the_azure_sdk_reaches_a_deployment_with_the_leased_key(cloud: Cloud) -> None:
    await cloud.add("azure_openai", "main", {"api_key": cloud.azure_key}, endpoint="https://acme.openai.azure.com",
                    api_version="2024-10-21")
    async with mtls_client(cloud.ids.caller, ORG) as http:
        sdk = azure_sdk(cloud, http)
        reply = await sdk.chat.completions.create(model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == generated_text(FRAMES)
        with pytest.raises(openai.NotFoundError):  # Azure's own answer for a deployment the resource lacks
            await sdk.chat.completions.create(model="no-such-deployment", messages=[{"role": "user", "content": "x"}])
    (sent, missing) = [r for r in cloud.upstream.cloud_requests if r.cloud == "azure"]
    assert sent.target == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert sent.credential_headers == ("api-key",) and sent.status == 200 and missing.status == 404


async def test_vertex_streams_through_forward_with_the_minted_token(cloud: Cloud) -> None:
    await cloud.add("vertex_ai", "sa", {"service_account_json": cloud.service_account}, location="us-central1")
    path = "/v1/projects/byok-test-project/locations/us-central1/publishers/google/models/gemini-2.0-flash"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
    request = pb.ForwardRequest(tenant=pb.Tenant(org_id=ORG), provider="vertex_ai", method="POST",
                                path=path + ":streamGenerateContent", query="alt=sse", body=body,
                                headers=[pb.Header(name="content-type", value="application/json"),
                                         pb.Header(name="authorization", value="Bearer caller-sent-token")])
    decoder, start, responses = adapter_for("gemini").stream_decoder(), None, []
    async for part in cloud.chat.Forward(request):
        if part.HasField("start"):
            start = part.start
        responses += decoder.feed(part.body)
    assert start is not None and start.status == 200 and decoder.complete
    assert "".join(c.text for r in responses for c in r.choices) == generated_text(FRAMES)
    (sent,) = [r for r in cloud.upstream.cloud_requests if r.cloud == "vertex"]
    assert sent.status == 200 and sent.credential_headers == ("authorization",)
    wrong = pb.ForwardRequest()
    wrong.CopyFrom(request)
    wrong.path = path.replace("byok-test-project", "someone-elses") + ":streamGenerateContent"
    async for part in cloud.chat.Forward(wrong):
        if part.HasField("start"):
            assert part.start.status == 403  # Google's PERMISSION_DENIED, relayed as it came


# ---- the unified schema ---------------------------------------------------------------------------------------

async def test_a_bedrock_api_key_streams_and_answers_through_the_unified_schema(cloud: Cloud) -> None:
    await cloud.add("bedrock", "apikey", {"api_key": cloud.bedrock_key}, region="us-east-1")
    start, text, usage = await streamed(cloud, params(CLAUDE, "bedrock"))
    assert (start.provider, start.api_family, text) == ("bedrock", "bedrock", generated_text(FRAMES))
    assert usage is not None and usage.output_tokens == FRAMES
    whole = await cloud.chat.Chat(pb.ChatRequest(parameters=params(CLAUDE + "?tool=1", "bedrock", tools=[
        pb.Tool(name="lookup", parameters_json='{"type":"object"}')])))
    assert whole.choices[0].tool_calls[0].name == "lookup" and whole.choices[0].provider_finish_reason == "tool_use"
    assert all(r.credential_headers == ("authorization",) and not r.signed_by for r in cloud.upstream.cloud_requests)


async def test_bedrock_errors_reach_the_caller_in_grpc_terms(cloud: Cloud) -> None:
    await cloud.add("bedrock", "apikey", {"api_key": cloud.bedrock_key}, region="us-east-1")
    with pytest.raises(grpc.aio.AioRpcError) as throttled:
        await cloud.chat.Chat(pb.ChatRequest(parameters=params("fault:429", "bedrock")))
    assert throttled.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ThrottlingException" in (throttled.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as cut:
        await streamed(cloud, params("fault:stream-error", "bedrock"))
    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE and "modelStreamErrorException" in str(cut.value.details())
    with pytest.raises(grpc.aio.AioRpcError) as invalid:  # botocore's model refuses the body's shape
        await cloud.chat.Chat(pb.ChatRequest(parameters=params(CLAUDE, "bedrock", provider_options_json=json.dumps(
            {"inferenceConfig": {"topK": 3}}))))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ValidationException" in str(
        invalid.value.details())


async def test_an_azure_key_reaches_the_v1_api_through_the_unified_schema(cloud: Cloud) -> None:
    await cloud.add("azure_openai", "main", {"api_key": cloud.azure_key}, endpoint="https://acme.openai.azure.com")
    start, text, _ = await streamed(cloud, params("gpt-4o-prod", "azure_openai"))
    assert (start.provider, start.api_family, text) == ("azure_openai", "openai", generated_text(FRAMES))
    (sent,) = cloud.upstream.cloud_requests
    assert sent.target == "/openai/v1/chat/completions" and sent.credential_headers == ("api-key",)


async def test_a_sigv4_lease_streams_through_the_unified_schema(cloud: Cloud) -> None:
    await cloud.add("bedrock", "iam", {"access_key_id": cloud.pair.access_key_id,
                                       "secret_access_key": cloud.pair.secret_access_key}, region="us-east-1")
    _, text, _ = await streamed(cloud, params(CLAUDE, "bedrock"))
    assert text == generated_text(FRAMES)
    assert cloud.upstream.cloud_requests[-1].signed_by in cloud.sts.sessions


async def test_vertex_streams_through_the_unified_schema(cloud: Cloud) -> None:
    await cloud.add("vertex_ai", "sa", {"service_account_json": cloud.service_account}, location="us-central1")
    _, text, _ = await streamed(cloud, params("gemini-2.0-flash", "vertex_ai"))
    assert text == generated_text(FRAMES)


async def test_an_azure_deployment_map_and_api_version_route_the_unified_schema(cloud: Cloud) -> None:
    await cloud.add("azure_openai", "main", {"api_key": cloud.azure_key}, endpoint="https://acme.openai.azure.com",
                    api_version="2024-10-21", deployments=json.dumps({"gpt-4o": "gpt-4o-prod"}))
    _, text, _ = await streamed(cloud, params("gpt-4o", "azure_openai"))
    assert text == generated_text(FRAMES)
    assert cloud.upstream.cloud_requests[-1].target.startswith("/openai/deployments/gpt-4o-prod/")


