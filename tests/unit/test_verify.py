"""VerifyCredential's reading of provider answers (httpx MockTransport stands in for the providers), and the
bad-key rule keyservice and the proxy share."""

from __future__ import annotations

import json

import httpx
import pytest

from byokcommon.provider_answers import rejects_key
from keyservice.verify import verify_key

# Gemini's answer to a bad key, as the Generative Language API sends it: a 400, told apart by its reason.
GEMINI_BAD_KEY = json.dumps({"error": {
    "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
GEMINI_BAD_REQUEST = json.dumps({"error": {"code": 400, "message": "Invalid value at 'page_size'",
                                           "status": "INVALID_ARGUMENT"}})


def answering(status: int, body: str = "") -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, text=body))


@pytest.mark.parametrize(("family", "status", "body", "health"), [
    ("openai", 200, "{}", "active"),
    ("openai", 401, "{}", "invalid"),
    ("anthropic", 403, "{}", "invalid"),
    ("gemini", 400, GEMINI_BAD_KEY, "invalid"),
    ("gemini", 400, GEMINI_BAD_REQUEST, "unreachable"),  # a bad request says nothing about the key
    ("openai", 400, GEMINI_BAD_KEY, "unreachable"),  # the Gemini rule is Gemini's only
    ("openai", 429, "", "rate_limited"),
    ("openai", 503, "", "unreachable"),
])
def test_verify_reads_the_providers_answer(family: str, status: int, body: str, health: str) -> None:
    assert verify_key(family, "https://provider.test/v1", "k", timeout=1, transport=answering(status, body)) == \
        (health, status)


def test_verify_without_an_answer_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert verify_key("openai", "https://provider.test/v1", "k", timeout=1,
                      transport=httpx.MockTransport(refuse)) == ("unreachable", 0)


def test_only_the_key_is_judged() -> None:
    assert rejects_key("openai", 401, b"") and rejects_key("mistral", 403, b"")
    assert rejects_key("gemini", 400, GEMINI_BAD_KEY.encode())
    assert not rejects_key("gemini", 400, GEMINI_BAD_REQUEST.encode())
    assert not rejects_key("gemini", 429, GEMINI_BAD_KEY.encode())
