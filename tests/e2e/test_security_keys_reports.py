"""Issue 11, finding 1: one caller's request can never take an org's key out of service.

The proxy reports a key only on the provider's structured bad-key evidence (byokcommon/provider_answers.py),
and keyservice marks it INVALID only once its own call to the provider confirms it. The local upstream plays
the providers; where a provider answers something it does not (Gemini's echo of unknown schema fields, a
content-policy 403), its answer is added here in the provider's wire format."""

from __future__ import annotations

import json
import secrets
from typing import Any

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.upstream import Response
from tests.e2e.conftest import System, params
from tests.support.stack import CALLER, secure_channel

# The fields of Gemini's Schema object (generativelanguage v1beta); any other name in a tool's parameters
# schema is answered with 400 "Unknown name ... Cannot find field", echoing the name.
GEMINI_SCHEMA_FIELDS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems",
                                  "minItems", "properties", "required", "minProperties", "maxProperties",
                                  "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
                                  "default", "items", "minimum", "maximum"})


def provider_json(status: int, obj: Any) -> Response:
    """A JSON answer of the stand-in, as the provider sends it."""
    body = json.dumps(obj).encode()
    return Response(status, [("content-type", "application/json"), ("content-length", str(len(body)))], body)


def gemini_key() -> str:
    return "AIza" + secrets.token_hex(18)[:35]


def openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(20)


def echo_unknown_schema_fields(system: System) -> None:
    """Make the upstream's Gemini answer unknown schema field names as Google does (400 with a BadRequest
    detail repeating the name)."""
    original = system.upstream._chat

    def chat(family: str, model: str, payload: dict[str, Any], stream: bool, provider: str = "",
             key: str = "") -> Any:
        violations = []
        for t, tool in enumerate(payload.get("tools") or []):
            for f, decl in enumerate(tool.get("functionDeclarations") or []):
                props = (decl.get("parameters") or {}).get("properties") or {}
                for p, value in enumerate(props.values()):
                    for name in value:
                        if name not in GEMINI_SCHEMA_FIELDS:
                            where = f"tools[{t}].function_declarations[{f}].parameters.properties[{p}].value"
                            violations.append({"field": where, "description": (
                                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                                "Cannot find field.")})
        if family == "gemini" and violations:
            return provider_json(400, {"error": {
                "code": 400, "message": "\n".join(v["description"] for v in violations),
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}]}})
        return original(family, model, payload, stream, provider, key)
    system.upstream._chat = chat  # type: ignore[method-assign]


async def health(system: System, credential_id: str) -> int:
    reply = await system.admin.GetCredential(kpb.GetCredentialRequest(credential_id=credential_id))
    return reply.credential.health


async def reports(system: System, org: str) -> list[dict[str, Any]]:
    reply = await system.admin.ListAuditEvents(kpb.ListAuditEventsRequest(
        org_id=org, action="credential.report_failure"))
    return [json.loads(e.details_json) for e in reply.events]


async def test_a_tool_schema_naming_api_key_invalid_disables_no_key(system: System) -> None:
    key_a, key_b = gemini_key(), gemini_key()
    system.upstream.config.keys = {"gemini": {key_a, key_b}}
    echo_unknown_schema_fields(system)
    first = await system.add_key("acme", "gemini", key_a, name="a")
    second = await system.add_key("acme", "gemini", key_b, name="b")
    await system.bind("acme")
    attack = params("acme", "gemini-2.0-flash", tools=[pb.Tool(
        name="lookup", description="x",
        parameters_json=json.dumps({"type": "object", "properties": {"q": {"type": "string",
                                                                           "API_KEY_INVALID": True}}}))])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await system.chat.Chat(pb.ChatRequest(parameters=attack))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the caller's own bad request
    # Neither key was reported, let alone disabled; the org's next request is served.
    for credential in (first, second):
        assert await health(system, credential.credential_id) != kpb.CREDENTIAL_HEALTH_INVALID
    assert await reports(system, "acme") == []
    served = await system.chat.Chat(pb.ChatRequest(parameters=params("acme", "gemini-2.0-flash")))
    assert served.credential_id in (first.credential_id, second.credential_id)


async def test_a_content_policy_403_is_not_a_bad_key(system: System) -> None:
    key = openai_key()
    system.upstream.config.keys = {"openai": {key}}
    original = system.upstream._chat

    def policy_refusal(family: str, model: str, payload: dict[str, Any], *args: Any) -> Any:
        if model == "gpt-4o-blocked":
            return provider_json(403, {"error": {"code": "unsupported_country_region_territory", "param": None,
                                              "message": "Country, region, or territory not supported",
                                              "type": "request_forbidden"}})
        return original(family, model, payload, *args)
    system.upstream._chat = policy_refusal  # type: ignore[method-assign]
    credential = await system.add_key("pol", "openai", key)
    await system.bind("pol")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await system.chat.Chat(pb.ChatRequest(parameters=params("pol", "gpt-4o-blocked")))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await health(system, credential.credential_id) != kpb.CREDENTIAL_HEALTH_INVALID
    assert (await system.chat.Chat(pb.ChatRequest(parameters=params("pol", "gpt-4o-mini")))).credential_id == \
        credential.credential_id


async def test_keyservice_confirms_a_report_before_marking_the_key_invalid(system: System) -> None:
    """A report with bad-key evidence for a key the provider still accepts changes nothing but the audit log;
    once the provider refuses the key, the same report marks it INVALID."""
    key = openai_key()
    system.upstream.config.keys = {"openai": {key}}
    credential = await system.add_key("conf", "openai", key)
    await system.bind("conf")
    channel = secure_channel(system.keyservice.port, system.ids.proxyservice)
    system.channels.append(channel)
    proxy = kpb_grpc.KeyServiceStub(channel)
    lease = await proxy.IssueKeyLease(kpb.IssueKeyLeaseRequest(scope=kpb.Scope(org_id="conf"), provider="openai",
                                                               caller_identity=CALLER))
    report = kpb.ReportKeyFailureRequest(lease_id=lease.lease_id, credential_id=credential.credential_id,
                                         http_status=401, provider_reason="invalid_api_key")
    answer = await proxy.ReportKeyFailure(report)
    assert answer.health != kpb.CREDENTIAL_HEALTH_INVALID
    assert await health(system, credential.credential_id) != kpb.CREDENTIAL_HEALTH_INVALID
    [audited] = await reports(system, "conf")
    assert (audited["confirmed"], audited["verify_health"], audited["provider_reason"]) == \
        (False, "active", "invalid_api_key")

    system.upstream.config.keys = {"openai": {openai_key()}}  # the provider now refuses this key
    answer = await proxy.ReportKeyFailure(report)
    assert answer.health == kpb.CREDENTIAL_HEALTH_INVALID
    assert await health(system, credential.credential_id) == kpb.CREDENTIAL_HEALTH_INVALID
    confirmed = (await reports(system, "conf"))[0]
    assert (confirmed["confirmed"], confirmed["verify_status"]) == (True, 401)
    assert key not in json.dumps(await reports(system, "conf"))

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await proxy.ReportKeyFailure(kpb.ReportKeyFailureRequest(
            lease_id=lease.lease_id, credential_id=credential.credential_id, http_status=401,
            provider_reason="invalid key with spaces"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.details().startswith("provider_reason: ")
