"""The HTTP front's OpenAI-shaped unified endpoints: `POST /v1/chat/completions`, `POST /v1/embeddings` and
`GET /v1/models`.

Chat completions in OpenAI's format go to any provider, routed by model through the same servicer core and
adapters as StreamChat (so an OpenAI SDK can call Claude or Gemini); the translation both ways is
`proxyservice/unified_openai.py`. Embeddings likewise go through the servicer's Embed core (OpenAI, the
OpenAI-compatible family, Gemini). `/v1/models` lists the models the tenant can reach: per provider, the default
model of the credential keyservice would lease, or of the platform's key (keyservice's ListTenantModels).
Answers carry `x-byok-request-id`, `x-byok-key-source` and `x-byok-credential-id` like the native passthrough.
A traced request's span (the front's) goes to the servicer's core, which records the outcome on it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator

from aiohttp import web

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice import errors
from proxyservice.http.error_shapes import error_body, status_of
from proxyservice.http.front import HttpFront, Refused
from proxyservice.keyclient import KeyServiceClient
from proxyservice.native.relay import require_org
from proxyservice.service import ChatServicer
from proxyservice.tracing import RequestSpan
from proxyservice.unified_openai import (
    ChunkEncoder,
    UnifiedRequestError,
    completion_json,
    embeddings_json,
    parse_chat_request,
    parse_embeddings_request,
)

_KEY_SOURCE: dict[int, str] = {pb.KEY_SOURCE_TENANT: "tenant", pb.KEY_SOURCE_PLATFORM: "platform"}


def _byok_headers(request_id: str, key_source: int, credential_id: str) -> dict[str, str]:
    return {"x-byok-request-id": request_id, "x-byok-key-source": _KEY_SOURCE.get(key_source, ""),
            "x-byok-credential-id": credential_id}


class UnifiedEndpoint:
    def __init__(self, *, servicer: ChatServicer, keys: KeyServiceClient, front: HttpFront) -> None:
        self.servicer = servicer
        self.keys = keys
        self.front = front

    async def handle(self, request: web.Request, caller: str, request_id: str, path: str,
                     span: RequestSpan | None = None) -> web.StreamResponse:
        try:
            if path == "/chat/completions" and request.method == "POST":
                return await self._chat(request, caller, request_id, span)
            if path == "/embeddings" and request.method == "POST":
                return await self._embeddings(request, caller, request_id, span)
            if path == "/models" and request.method == "GET":
                return await self._models(request, caller, request_id)
        except errors.ProxyError as exc:
            raise Refused.of(exc) from None
        except UnifiedRequestError as exc:
            raise Refused(400, str(exc), param=exc.param) from None
        raise Refused(404, f"no unified endpoint {request.method} /v1{path[:100]} (the unified endpoints are POST "
                           f"/v1/chat/completions, POST /v1/embeddings and GET /v1/models; a provider's own API is "
                           f"under /{{provider}}/)")

    @staticmethod
    def _tenant(request: web.Request) -> pb.Tenant:
        headers = request.headers
        org = headers.get("x-byok-org", "")
        require_org(org)
        return pb.Tenant(org_id=org, project_id=headers.get("x-byok-project", ""),
                         user_id=headers.get("x-byok-user", ""))

    async def _chat(self, request: web.Request, caller: str, request_id: str, span: RequestSpan | None
                    ) -> web.StreamResponse:
        tenant = self._tenant(request)
        params, stream, include_usage = parse_chat_request(await self.front.read_body(request), tenant)
        params.request_id = request_id
        params.credential_id = request.headers.get("x-byok-credential", "")
        params.provider = request.headers.get("x-byok-provider", "")  # else routed by the model's name
        completion_id, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        if not stream:
            reply = await self.servicer.chat(params, caller, span=span)
            return web.Response(body=completion_json(reply, completion_id, created, params.model),
                                content_type="application/json",
                                headers=_byok_headers(request_id, reply.key_source, reply.credential_id))
        messages = self.servicer.stream_chat(params, caller, span=span)
        try:
            first = await anext(messages)  # the StreamStart: every refusal comes before it
            return await self._stream(request, messages, first, ChunkEncoder(completion_id, created, params.model,
                                                                     include_usage=include_usage))
        finally:
            await messages.aclose()  # on cancellation too: closes the provider's stream

    async def _embeddings(self, request: web.Request, caller: str, request_id: str, span: RequestSpan | None
                          ) -> web.Response:
        embed, base64_vectors = parse_embeddings_request(await self.front.read_body(request), self._tenant(request))
        embed.request_id = request_id
        embed.credential_id = request.headers.get("x-byok-credential", "")
        embed.provider = request.headers.get("x-byok-provider", "")
        reply = await self.servicer.embed(embed, caller, span=span)
        return web.Response(body=embeddings_json(reply, base64_vectors=base64_vectors),
                            content_type="application/json",
                            headers=_byok_headers(request_id, reply.key_source, reply.credential_id))

    @staticmethod
    async def _stream(request: web.Request, messages: AsyncGenerator[pb.StreamChatResponse, None],
                      first: pb.StreamChatResponse, encoder: ChunkEncoder) -> web.StreamResponse:
        start = first.start
        response = web.StreamResponse(status=200, headers={
            "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            **_byok_headers(start.request_id, start.key_source, start.credential_id)})
        await response.prepare(request)
        await response.write(encoder.encode(first))
        try:
            async for message in messages:
                data = encoder.encode(message)
                if data:
                    await response.write(data)
        except errors.ProxyError as exc:
            # Mid-stream: the status is sent; OpenAI's way is an error event, which its SDK raises as APIError.
            await response.write(b"data: " + error_body("openai", status_of(exc), exc.message) + b"\n\n")
            await response.write_eof()
            return response
        await response.write(encoder.close())
        await response.write_eof()
        return response

    async def _models(self, request: web.Request, caller: str, request_id: str) -> web.Response:
        tenant = self._tenant(request)
        models = await self.keys.list_models(caller, tenant.org_id, tenant.project_id, tenant.user_id)
        seen: dict[str, dict[str, object]] = {}
        for model in models:
            seen.setdefault(model.model, {"id": model.model, "object": "model", "created": 0,
                                          "owned_by": model.provider})
        return web.Response(body=json.dumps({"object": "list", "data": list(seen.values())}).encode(),
                            content_type="application/json", headers={"x-byok-request-id": request_id})
