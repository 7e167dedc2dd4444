"""The providers keyservice knows: key format, default base URL and model, the model-name pattern that routes
a model to its provider, the platform-key environment variable, the wire family the proxy speaks, and the
hosts a credential's api_base may name (docs/security.md, "api_base and SSRF")."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from byokcommon.egress import ALLOWLIST_ENV, EgressPolicy, EgressRefused
from keyservice.errors import InvalidArgument


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    family: str  # "openai" | "anthropic" | "gemini": the wire protocol
    default_api_base: str
    default_model: str
    model_pattern: str  # routes a model name to this provider; "" = never by model name
    key_prefix: str  # "" = no prefix check, only charset and length
    key_format: str  # human description, for errors and ListProviders
    platform_key_env: str
    api_base_required: bool = False
    min_key_length: int = 20
    max_key_length: int = 256
    # Prefixes of other providers' keys that start with ours ("sk-ant-" starts with "sk-"): refused, because a
    # key stored under the wrong provider fails every request and bills nobody the tenant expects.
    foreign_prefixes: tuple[str, ...] = ()
    # Hosts of the provider's API besides its default api_base's host.
    extra_hosts: tuple[str, ...] = ()
    # How people write the provider's name ("OpenAI", "Google Gemini"), for messages; "" = the name.
    display_name: str = ""

    @property
    def title(self) -> str:
        return self.display_name or self.name

    def a(self, noun: str) -> str:
        """"an OpenAI key", "a Groq host": the article goes by the display name's first letter (right for every
        provider here)."""
        return f"{'an' if self.title[0].lower() in 'aeiou' else 'a'} {self.title} {noun}"

    @property
    def api_hosts(self) -> tuple[str, ...]:
        """The hosts an api_base of this provider may name without ops' allowlist; () = any public host
        (openai_compatible, whose api_base is the tenant's own server)."""
        default = urlsplit(self.default_api_base).hostname
        return ((default,) if default else ()) + self.extra_hosts

    def check_api_base(self, api_base: str, policy: EgressPolicy, field: str = "api_base") -> None:
        """Raise InvalidArgument unless api_base stays on this provider's hosts (or ops' allowlist) and on
        an allowed destination: keys must not be sent, by an admin's update, to a host of their choosing."""
        if not api_base:
            return
        parts = urlsplit(api_base)
        host = (parts.hostname or "").rstrip(".")
        try:
            policy.check_url(parts.scheme, host)
        except EgressRefused as exc:
            raise InvalidArgument(field, str(exc)) from None
        hosts = self.api_hosts
        if not hosts or host in hosts or policy.host_allowlisted(host):
            return
        if policy.dev_loopback_http and _loopback(host):
            return  # development: the local stand-in plays every provider
        raise InvalidArgument(field, f"{host} is not {self.a('host')} (expected {', '.join(hosts)}); ops may "
                                     f"allow others in {ALLOWLIST_ENV}")

    def check_key(self, api_key: str, field: str = "api_key") -> None:
        """Raise InvalidArgument (naming the field and the expected format, never echoing the key)."""
        if not api_key:
            raise InvalidArgument(field, "is required")
        if not _KEY_CHARSET.fullmatch(api_key):
            raise InvalidArgument(field, f"contains characters {self.a('key')} never has; expected {self.key_format}")
        if self.key_prefix and not api_key.startswith(self.key_prefix):
            raise InvalidArgument(field, f"does not look like {self.a('key')}; expected {self.key_format}")
        for prefix in self.foreign_prefixes:
            if api_key.startswith(prefix):
                raise InvalidArgument(field, f"looks like a key of another provider ({prefix}…), not "
                                             f"{self.a('key')}; expected {self.key_format}")
        if not self.min_key_length <= len(api_key) <= self.max_key_length:
            raise InvalidArgument(field, f"has an implausible length for {self.a('key')}; expected {self.key_format}")

    def routes(self, model: str) -> bool:
        return bool(self.model_pattern) and re.fullmatch(self.model_pattern, model) is not None


_KEY_CHARSET = re.compile(r"[A-Za-z0-9_\-.]+")


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

PROVIDERS: dict[str, ProviderSpec] = {p.name: p for p in (
    ProviderSpec("openai", "openai", "https://api.openai.com/v1", "gpt-4o-mini",
                 # text-embedding-00N are Gemini's embedding models (OpenAI's are text-embedding-3-*, -ada-002).
                 r"(gpt-|chatgpt-|o[1-9]|text-(?!embedding-00)|davinci|babbage|ft:gpt).*", "sk-",
                 "'sk-' followed by letters, digits, '-' or '_'", "OPENAI_API_KEY",
                 foreign_prefixes=("sk-ant-", "sk-or-"), display_name="OpenAI"),
    ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com/v1", "claude-sonnet-4-20250514",
                 r"claude-.*", "sk-ant-", "'sk-ant-' followed by letters, digits, '-' or '_'",
                 "ANTHROPIC_API_KEY", display_name="Anthropic"),
    ProviderSpec("gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta", "gemini-2.0-flash",
                 r"(models/)?(gemini-|text-embedding-00[0-9]|embedding-00[0-9]).*",  # + its embedding models
                 "AIza", "'AIza' followed by 35 letters, digits, '-' or '_'",
                 "GEMINI_API_KEY", min_key_length=30, max_key_length=64, display_name="Google Gemini"),
    ProviderSpec("mistral", "openai", "https://api.mistral.ai/v1", "mistral-small-latest",
                 r"(mistral-|open-mistral|open-mixtral|codestral|pixtral|ministral|magistral).*", "",
                 "32 letters or digits", "MISTRAL_API_KEY", display_name="Mistral"),
    ProviderSpec("groq", "openai", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile",
                 r"groq/.*", "gsk_", "'gsk_' followed by letters and digits", "GROQ_API_KEY", display_name="Groq"),
    ProviderSpec("together", "openai", "https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                 r"(meta-llama|mistralai|Qwen|deepseek-ai|togethercomputer)/.*", "",
                 "letters and digits (usually 64 hex characters)", "TOGETHER_API_KEY",
                 extra_hosts=("api.together.ai",), display_name="Together AI"),
    ProviderSpec("deepseek", "openai", "https://api.deepseek.com/v1", "deepseek-chat",
                 r"deepseek-(chat|reasoner|coder).*", "sk-", "'sk-' followed by letters and digits",
                 "DEEPSEEK_API_KEY", foreign_prefixes=("sk-ant-", "sk-or-", "sk-proj-"), display_name="DeepSeek"),
    ProviderSpec("fireworks", "openai", "https://api.fireworks.ai/inference/v1",
                 "accounts/fireworks/models/llama-v3p1-8b-instruct", r"accounts/fireworks/.*", "fw_",
                 "'fw_' followed by letters and digits", "FIREWORKS_API_KEY", display_name="Fireworks AI"),
    ProviderSpec("openrouter", "openai", "https://openrouter.ai/api/v1", "openai/gpt-4o-mini",
                 r"[a-z0-9\-]+/[A-Za-z0-9.\-:]+", "sk-or-", "'sk-or-' followed by letters, digits, '-'",
                 "OPENROUTER_API_KEY", display_name="OpenRouter"),
    ProviderSpec("openai_compatible", "openai", "", "", "", "", "8-256 letters, digits, '-', '_' or '.'",
                 "OPENAI_COMPATIBLE_API_KEY", api_base_required=True, min_key_length=8,
                 display_name="OpenAI-compatible"),
)}

# Pattern routing is tried in this order: specific prefixes before OpenRouter's catch-all "vendor/model".
_ROUTING_ORDER = ("openai", "anthropic", "gemini", "mistral", "deepseek", "groq", "fireworks", "together",
                  "openrouter")


def get_provider(name: str, field: str = "provider") -> ProviderSpec:
    if not name:
        raise InvalidArgument(field, "is required")
    spec = PROVIDERS.get(name)
    if spec is None:
        raise InvalidArgument(field, f"unknown provider {name[:64]!r}; known: {', '.join(sorted(PROVIDERS))}")
    return spec


def provider_for_model(model: str) -> ProviderSpec:
    """Route a model name to a provider by pattern; InvalidArgument when none matches."""
    for name in _ROUTING_ORDER:
        if PROVIDERS[name].routes(model):
            return PROVIDERS[name]
    raise InvalidArgument("model", f"no provider serves model {model[:64]!r}; name the provider explicitly")
