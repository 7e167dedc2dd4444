"""Provider key-format checks, model routing and input validation."""

from __future__ import annotations

import pytest

from byokcommon.egress import EgressPolicy
from keyservice import validation
from keyservice.errors import InvalidArgument
from keyservice.providers import get_provider, provider_for_model
from keyservice.secrets_display import fingerprint, key_hint

GOOD_KEYS = {
    "openai": "sk-proj-" + "a1B2" * 10,
    "anthropic": "sk-ant-api03-" + "x9Y8" * 10,
    "gemini": "AIza" + "SyD3" * 8 + "abc",
    "mistral": "M1st" * 8,
    "groq": "gsk_" + "G7h8" * 10,
    "together": "f0e1" * 16,
    "deepseek": "sk-" + "d33p" * 8,
    "fireworks": "fw_" + "F1r3" * 6,
    "openrouter": "sk-or-v1-" + "0a1b" * 16,
    "openai_compatible": "local-key-" + "z" * 12,
}


@pytest.mark.parametrize("provider", sorted(GOOD_KEYS))  # the cloud providers have fields, not one key
def test_each_provider_accepts_a_key_of_its_shape(provider: str) -> None:
    get_provider(provider).check_key(GOOD_KEYS[provider])


@pytest.mark.parametrize(("provider", "bad"), [
    ("anthropic", "sk-proj-" + "a" * 40), ("groq", "sk-" + "a" * 40), ("openrouter", "sk-ant-" + "a" * 40),
    ("gemini", "sk-" + "a" * 36), ("fireworks", "gsk_" + "a" * 30), ("openai", "gsk_" + "a" * 30),
    ("openai", "sk-short"), ("mistral", "has spaces in it 0123456789"), ("openai", "sk-" + "é" * 30),
    ("openai", ""), ("openai", GOOD_KEYS["anthropic"]), ("openai", GOOD_KEYS["openrouter"]),
    ("deepseek", GOOD_KEYS["openai"]),
])
def test_wrong_shapes_are_refused_without_echoing_the_key(provider: str, bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        get_provider(provider).check_key(bad)
    assert info.value.field == "api_key"
    if bad:
        assert bad not in info.value.message


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="provider: unknown provider 'nope'; known: anthropic"):
        get_provider("nope")


@pytest.mark.parametrize(("model", "provider"), [
    ("gpt-4o-mini", "openai"), ("o3-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic"),
    ("gemini-2.0-flash", "gemini"), ("mistral-large-latest", "mistral"), ("deepseek-chat", "deepseek"),
    ("groq/llama-3.1", "groq"), ("accounts/fireworks/models/x", "fireworks"),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"), ("anthropic/claude-3.5-sonnet", "openrouter"),
])
def test_models_route_to_their_provider(model: str, provider: str) -> None:
    assert provider_for_model(model).name == provider


def test_unroutable_model() -> None:
    with pytest.raises(InvalidArgument, match="model: no provider serves"):
        provider_for_model("llama3")


def test_hint_and_fingerprint_reveal_little() -> None:
    key = GOOD_KEYS["anthropic"]
    assert key_hint(get_provider("anthropic"), key) == "sk-ant-…" + key[-4:]
    assert key_hint(get_provider("mistral"), GOOD_KEYS["mistral"]) == "…" + GOOD_KEYS["mistral"][-4:]
    fp = fingerprint(key)
    assert fp.startswith("sha256:") and len(fp) == 23 and fp == fingerprint(key) != fingerprint(key + "x")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 200, "with space", "-lead"])
def test_scope_ids_are_path_safe(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        validation.scope_id(bad, "scope.org_id", required=True)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://api.example.com/v1", True), ("http://127.0.0.1:8080/v1", True), ("http://localhost/v1", True),
    ("http://api.example.com/v1", False), ("https://user:pw@example.com", False), ("ftp://x", False),
    ("https://x/v1?key=abc", False), ("not a url", False), ("https://[::1/", False),
])
def test_api_base_rules(url: str, ok: bool) -> None:
    if ok:
        assert validation.api_base(url) == url.rstrip("/")
    else:
        with pytest.raises(InvalidArgument, match="^api_base"):
            validation.api_base(url)


def test_vault_path_rules() -> None:
    assert validation.vault_path("byok/imports/acme-openai") == "byok/imports/acme-openai"
    for bad in ["/abs", "a/../b", "a//b", "", "a/b?c"]:
        with pytest.raises(InvalidArgument, match="^vault_path"):
            validation.vault_path(bad)


# -- api_base: the provider's hosts, public destinations (issue 11, findings 2 and 3) ---------------------------

@pytest.mark.parametrize(("provider", "url", "ok"), [
    ("openai", "https://api.openai.com/v1", True), ("anthropic", "https://api.anthropic.com/v1", True),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta", True),
    ("together", "https://api.together.ai/v1", True),
    ("openai", "https://attacker.example/v1", False),  # a named provider's key stays on its hosts
    ("anthropic", "https://api.openai.com/v1", False),
    ("openai", "https://api.openai.com.attacker.example/v1", False),
    ("openai_compatible", "https://llm.tenant.example/v1", True),  # its api_base is the tenant's own server
    ("openai_compatible", "https://169.254.169.254/latest", False), ("openai_compatible", "https://10.0.0.1", False),
    ("openai_compatible", "https://100.64.1.1", False), ("openai_compatible", "https://[::1]:9090", False),
    ("openai_compatible", "https://metadata.google.internal", False),
    ("openai_compatible", "https://localhost:8443", False),
    ("openai", "http://127.0.0.1:8080/v1", False),  # plain http and loopback need the development setting
])
def test_api_base_stays_on_the_providers_hosts_and_public_addresses(provider: str, url: str, ok: bool) -> None:
    spec = get_provider(provider)
    if ok:
        spec.check_api_base(url, EgressPolicy())
    else:
        with pytest.raises(InvalidArgument, match="^api_base: "):
            spec.check_api_base(url, EgressPolicy())


def test_ops_allowlist_and_development_setting_for_api_base() -> None:
    ops = EgressPolicy.from_env({"BYOK_API_BASE_ALLOWLIST": "*.gw.corp.example,10.8.0.0/16"})
    get_provider("openai").check_api_base("https://eu.gw.corp.example/openai/v1", ops)
    get_provider("openai_compatible").check_api_base("https://10.8.1.2/v1", ops)
    with pytest.raises(InvalidArgument, match="BYOK_API_BASE_ALLOWLIST"):
        get_provider("openai").check_api_base("https://gw.other.example/v1", ops)
    dev = EgressPolicy(dev_loopback_http=True)
    get_provider("openai").check_api_base("http://127.0.0.1:8080/v1", dev)  # the local stand-in
    with pytest.raises(InvalidArgument, match="https"):
        get_provider("openai_compatible").check_api_base("http://llm.tenant.example/v1", dev)


@pytest.mark.parametrize(("provider", "bad_key", "wording"), [
    ("openai", "sk-ant-" + "a" * 30, "not an OpenAI key"),
    ("anthropic", "sk-" + "a" * 30, "does not look like an Anthropic key"),
    ("gemini", "xyz" + "a" * 35, "does not look like a Google Gemini key"),
    ("groq", "a" * 30, "does not look like a Groq key"),
    ("openrouter", "sk-" + "a" * 30, "does not look like an OpenRouter key"),
])
def test_key_errors_name_the_provider_as_people_write_it(provider: str, bad_key: str, wording: str) -> None:
    """Issue 12: "a openai key" read wrong; messages use the display name with its article."""
    from keyservice.errors import InvalidArgument
    from keyservice.providers import PROVIDERS, get_provider

    with pytest.raises(InvalidArgument) as err:
        get_provider(provider).check_key(bad_key)
    assert wording in err.value.message and bad_key not in err.value.message
    assert all(p.display_name for p in PROVIDERS.values())
