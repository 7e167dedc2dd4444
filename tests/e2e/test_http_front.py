"""The HTTP front with the official SDKs, unchanged, pointed at https://PROXY/{provider}."""

from __future__ import annotations

import secrets

import anthropic
import openai
import pytest

from tests.e2e.conftest import System
from tests.support.http_front import anthropic_sdk, genai_sdk, mtls_client, openai_sdk

OPENAI_KEY = "sk-proj-" + secrets.token_hex(20)
ANTHROPIC_KEY = "sk-ant-api03-" + secrets.token_hex(20)
GEMINI_KEY = "AIza" + secrets.token_hex(16)[:35].ljust(35, "x")


async def test_openai_sdk_streams_chat_through_the_front(system: System) -> None:
    await system.add_key("acme", "openai", OPENAI_KEY)
    await system.bind("acme")
    async with mtls_client(system.ids.caller, "acme") as http:
        client = openai_sdk(system.proxy.http_port, http)
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text
        reply = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.headers["x-byok-key-source"] == "tenant"
        assert reply.headers["x-byok-credential-id"].startswith("cred_")
        assert reply.parse().choices[0].message.content
    sent = [r for r in system.upstream.requests if r.path.endswith("/chat/completions")]
    assert sent and all(r.key_header == "authorization" and r.authorized for r in sent)


async def test_anthropic_sdk_streams_messages(system: System) -> None:
    await system.add_key("acme", "anthropic", ANTHROPIC_KEY)
    await system.bind("acme")
    async with anthropic_sdk(system.proxy.http_port, system.ids.caller, "acme") as client:
        async with client.messages.stream(model="claude-sonnet-4-20250514", max_tokens=64,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            message = await stream.get_final_message()
        assert message.content[0].type == "text" and message.content[0].text


async def test_gemini_sdk_streams(system: System) -> None:
    await system.add_key("acme", "gemini", GEMINI_KEY)
    await system.bind("acme")
    client = genai_sdk(system.proxy.http_port, system.ids.caller, "acme")
    text = ""
    async for chunk in await client.aio.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"):
        text += chunk.text or ""
    assert text
    sent = [r for r in system.upstream.requests if r.family == "gemini"]
    assert sent and all(r.key_header == "x-goog-api-key" and not r.key_in_url for r in sent)


async def test_missing_org_is_an_sdk_bad_request(system: System) -> None:
    async with mtls_client(system.ids.caller) as http:
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_sdk(system.proxy.http_port, http).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert "x-byok-org" in str(caught.value)
    async with anthropic_sdk(system.proxy.http_port, system.ids.caller) as client:
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model="claude-sonnet-4-20250514", max_tokens=8,
                                         messages=[{"role": "user", "content": "hi"}])
