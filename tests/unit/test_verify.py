"""VerifyCredential's reading of provider answers (httpx MockTransport stands in for the providers, with their
real error bodies), the bad-key rule keyservice and the proxy share, and where verify may send a key."""

from __future__ import annotations

import json

import httpx
import pytest

from byokcommon.egress import EgressPolicy, PinningResolver
from byokcommon.provider_answers import key_rejection, reported_rejection_counts
from keyservice.errors import FailedPrecondition
from keyservice.verify import verify_key

# Gemini's answer to a bad key, as the Generative Language API sends it: a 400, told apart by its ErrorInfo.
GEMINI_BAD_KEY = json.dumps({"error": {
    "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
GEMINI_BAD_REQUEST = json.dumps({"error": {"code": 400, "message": "Invalid value at 'page_size'",
                                           "status": "INVALID_ARGUMENT"}})
# Gemini repeats unknown schema field names in its 400s: a caller's tool schema with a field named
# API_KEY_INVALID puts that string in the body (issue 11, finding 1). Shape as Google sends it.
_ECHO = ("Invalid JSON payload received. Unknown name \"API_KEY_INVALID\" at "
         "'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field.")
GEMINI_ECHOED_FIELD = json.dumps({"error": {"code": 400, "message": _ECHO, "status": "INVALID_ARGUMENT", "details": [
    {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
        {"field": "tools[0].function_declarations[0].parameters.properties[0].value", "description": _ECHO}]}]}})
GEMINI_NO_KEY = json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED",
                                      "message": "Method doesn't allow unregistered callers"}})
OPENAI_BAD_KEY = json.dumps({"error": {"message": "Incorrect API key provided: sk-proj-****abcd.",
                                       "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
OPENAI_REGION = json.dumps({"error": {"code": "unsupported_country_region_territory",
                                      "message": "Country, region, or territory not supported",
                                      "param": None, "type": "request_forbidden"}})
ANTHROPIC_BAD_KEY = json.dumps({"type": "error", "error": {"type": "authentication_error",
                                                           "message": "invalid x-api-key"}})
ANTHROPIC_FORBIDDEN = json.dumps({"type": "error", "error": {
    "type": "permission_error", "message": "Your API key does not have permission to use the specified resource."}})
MISTRAL_401 = json.dumps({"message": "Unauthorized", "request_id": "0f3c"})

PUBLIC = "8.8.8.8"  # what the fake resolver answers for provider.test: a public address


def answering(status: int, body: str = "", seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, text=body)
    return httpx.MockTransport(answer)


def resolver(answers: dict[str, list[str]], policy: EgressPolicy | None = None) -> PinningResolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("unknown host")
        return answers[host]
    return PinningResolver(policy or EgressPolicy(), resolve_sync=resolve, ttl=0)


@pytest.mark.parametrize(("provider", "family", "status", "body", "health"), [
    ("openai", "openai", 200, "{}", "active"),
    ("openai", "openai", 401, OPENAI_BAD_KEY, "invalid"),
    ("openai", "openai", 403, OPENAI_REGION, "unreachable"),  # a region block is not a bad key
    ("anthropic", "anthropic", 401, ANTHROPIC_BAD_KEY, "invalid"),
    ("anthropic", "anthropic", 403, ANTHROPIC_FORBIDDEN, "unreachable"),  # nor a permission refusal
    ("gemini", "gemini", 400, GEMINI_BAD_KEY, "invalid"),
    ("gemini", "gemini", 400, GEMINI_BAD_REQUEST, "unreachable"),  # a bad request says nothing about the key
    ("gemini", "gemini", 400, GEMINI_ECHOED_FIELD, "unreachable"),  # an echoed field name is no evidence
    ("gemini", "gemini", 403, GEMINI_NO_KEY, "unreachable"),
    ("openai", "openai", 400, GEMINI_BAD_KEY, "unreachable"),  # the Gemini rule is Gemini's only
    ("mistral", "openai", 401, MISTRAL_401, "invalid"),  # other OpenAI-compatible providers: their 401
    ("openai", "openai", 429, "", "rate_limited"),
    ("openai", "openai", 503, "", "unreachable"),
])
def test_verify_reads_the_providers_answer(provider: str, family: str, status: int, body: str, health: str) -> None:
    assert verify_key(provider, family, "https://provider.test/v1", "k", timeout=1,
                      resolver=resolver({"provider.test": [PUBLIC]}), transport=answering(status, body)) == \
        (health, status)


def test_verify_without_an_answer_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert verify_key("openai", "openai", "https://provider.test/v1", "k", timeout=1,
                      resolver=resolver({"provider.test": [PUBLIC]}),
                      transport=httpx.MockTransport(refuse)) == ("unreachable", 0)


def test_only_structured_evidence_judges_the_key() -> None:
    assert key_rejection("openai", "openai", 401, OPENAI_BAD_KEY.encode()) == "invalid_api_key"
    assert key_rejection("openai", "openai", 401, b'{"error": {"code": "something_else"}}') == ""
    assert key_rejection("mistral", "openai", 401, MISTRAL_401.encode()) == "http_401"
    assert key_rejection("groq", "openai", 401, OPENAI_BAD_KEY.encode()) == "invalid_api_key"
    assert key_rejection("mistral", "openai", 403, b"") == ""  # 403 is never a bad key by itself
    assert key_rejection("anthropic", "anthropic", 401, ANTHROPIC_BAD_KEY.encode()) == "authentication_error"
    assert key_rejection("gemini", "gemini", 400, GEMINI_BAD_KEY.encode()) == "API_KEY_INVALID"
    assert key_rejection("gemini", "gemini", 400, GEMINI_ECHOED_FIELD.encode()) == ""
    assert key_rejection("gemini", "gemini", 400, b"API_KEY_INVALID") == ""
    assert key_rejection("gemini", "gemini", 429, GEMINI_BAD_KEY.encode()) == ""
    # keyservice's view of a report: status and reason must be a bad-key answer of that provider.
    assert reported_rejection_counts("gemini", "gemini", 400, "API_KEY_INVALID")
    assert not reported_rejection_counts("gemini", "gemini", 400, "INVALID_ARGUMENT")
    assert not reported_rejection_counts("openai", "openai", 403, "invalid_api_key")
    assert not reported_rejection_counts("openai", "openai", 401, "http_401")
    assert reported_rejection_counts("together", "openai", 401, "http_401")
    assert not reported_rejection_counts("anthropic", "anthropic", 401, "permission_error")


# -- where verify may send the key (issue 11, finding 3) --------------------------------------------------------

@pytest.mark.parametrize(("api_base", "answers"), [
    ("https://169.254.169.254/latest", {}),  # cloud metadata
    ("https://metadata.google.internal/v1", {}),
    ("https://10.0.0.8/v1", {}), ("https://100.64.0.1/v1", {}), ("https://[::ffff:127.0.0.1]/v1", {}),
    ("https://[fe80::1]/v1", {}), ("https://127.0.0.1:9090", {}),  # keyservice's own metrics port
    ("https://looks-public.test/v1", {"looks-public.test": ["192.168.1.5"]}),
    ("https://half.test/v1", {"half.test": [PUBLIC, "10.1.1.1"]}),  # any private address refuses the name
    ("http://127.0.0.1:8080/v1", {}),  # plain http without the development setting
])
def test_verify_refuses_non_public_destinations_before_connecting(api_base: str, answers: dict[str, list[str]]
                                                                  ) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(FailedPrecondition, match="^api_base: "):
        verify_key("openai", "openai", api_base, "sk-secret-key-000000000000", timeout=1, resolver=resolver(answers),
                   transport=answering(200, "{}", seen))
    assert seen == []


def test_verify_goes_to_the_address_it_checked_dns_rebinding() -> None:
    """A name that resolves to a public address and then to loopback: the first request goes to the checked
    public address (pinned, with the name as Host and TLS server name), the second is refused."""
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    seen: list[httpx.Request] = []
    pinned = PinningResolver(EgressPolicy(), resolve_sync=lambda host, port: next(answers), ttl=0)
    assert verify_key("openai", "openai", "https://rebind.test/v1", "k", timeout=1, resolver=pinned,
                      transport=answering(200, "{}", seen)) == ("active", 200)
    assert (seen[0].url.host, seen[0].headers["host"], seen[0].extensions["sni_hostname"]) == \
        (PUBLIC, "rebind.test", "rebind.test")
    with pytest.raises(FailedPrecondition, match="non-public"):
        verify_key("openai", "openai", "https://rebind.test/v1", "k", timeout=1, resolver=pinned,
                   transport=answering(200, "{}", seen))
    assert len(seen) == 1


def test_ops_allowlist_and_the_development_setting() -> None:
    policy = EgressPolicy.from_env({"BYOK_API_BASE_ALLOWLIST": "10.20.0.0/16,llm.corp.example"})
    seen: list[httpx.Request] = []
    assert verify_key("openai_compatible", "openai", "https://llm.corp.example/v1", "k", timeout=1,
                      resolver=resolver({"llm.corp.example": ["10.20.3.4"]}, policy),
                      transport=answering(200, "{}", seen)) == ("active", 200)
    assert seen[0].url.host == "10.20.3.4"
    with pytest.raises(FailedPrecondition):  # allowlisted name, address outside the allowed networks
        verify_key("openai_compatible", "openai", "https://llm.corp.example/v1", "k", timeout=1,
                   resolver=resolver({"llm.corp.example": ["10.30.3.4"]}, policy), transport=answering(200))
    dev = EgressPolicy.from_env({"BYOK_DEV_LOOPBACK_HTTP": "1"})
    assert verify_key("openai", "openai", "http://127.0.0.1:8080/v1", "k", timeout=1,
                      resolver=resolver({}, dev), transport=answering(200, "{}")) == ("active", 200)
    with pytest.raises(FailedPrecondition, match="https"):  # even in development, plain http only to loopback
        verify_key("openai", "openai", "http://provider.test/v1", "k", timeout=1,
                   resolver=resolver({"provider.test": [PUBLIC]}, dev), transport=answering(200))
