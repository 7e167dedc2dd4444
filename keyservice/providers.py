"""The providers keyservice knows: key format, default base URL and model, the model-name pattern that routes
a model to its provider, the platform-key environment variable, the wire family the proxy speaks, the hosts a
credential's api_base may name (docs/security.md, "api_base and SSRF"), and, for the cloud providers whose
credential is not one API key (Amazon Bedrock, Azure OpenAI, Google Vertex AI), the named fields it has
(keyservice/cloud_fields.py checks them)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from byokcommon.egress import ALLOWLIST_ENV, EgressPolicy, EgressRefused
from keyservice.errors import InvalidArgument


@dataclass(frozen=True)
class ProviderField:
    """One named field of a cloud credential (ListProviders shows them)."""

    name: str
    secret: bool  # in Vault, never shown; else a setting, kept in the DB and shown
    required: bool  # needed whatever the credential's variant (e.g. bedrock's region)
    description: str
    # A setting the proxy needs to reach the provider (region, endpoint, …): sent in leases. The others (a role
    # to assume, a tenant id) only matter to keyservice's own derivation.
    routing: bool = False


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
    # A cloud credential's named fields; () = one api_key.
    fields: tuple[ProviderField, ...] = ()
    # Hosts of the provider's API written as a pattern, where they are per region or per resource
    # (bedrock-runtime.<region>.amazonaws.com, <resource>.openai.azure.com).
    api_host_pattern: str = ""
    # The api_base when the credential's location setting is "global" (Vertex AI's global endpoint has no
    # location in its host).
    global_api_base: str = ""

    @property
    def title(self) -> str:
        return self.display_name or self.name

    def a(self, noun: str) -> str:
        """"an OpenAI key", "a Groq host": the article goes by the display name's first letter (right for every
        provider here)."""
        return f"{'an' if self.title[0].lower() in 'aeiou' else 'a'} {self.title} {noun}"

    @property
    def api_hosts(self) -> tuple[str, ...]:
        """The hosts an api_base of this provider may name without ops' allowlist (besides api_host_pattern's);
        both empty = any public host (openai_compatible, whose api_base is the tenant's own server)."""
        default = "" if "{" in self.default_api_base else urlsplit(self.default_api_base).hostname
        return ((default,) if default else ()) + self.extra_hosts

    def official_host(self, host: str) -> bool:
        """Whether `host` is one of the provider's own API hosts."""
        return host in self.api_hosts or bool(self.api_host_pattern) and \
            re.fullmatch(self.api_host_pattern, host) is not None

    def api_base_for(self, settings: Mapping[str, str]) -> str:
        """The default api_base of a credential with these settings (cloud providers' bases name the region,
        resource or location)."""
        if self.global_api_base and settings.get("location") == "global":
            return self.global_api_base
        try:
            return self.default_api_base.format_map(settings)
        except KeyError:
            return ""  # a setting it needs is missing: validation refuses such a credential

    @property
    def secret_field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.secret) or frozenset({"api_key"})

    def check_api_base(self, api_base: str, policy: EgressPolicy, field: str = "api_base") -> None:
        """Raise InvalidArgument unless api_base stays on this provider's hosts (or ops' allowlist) and on
        an allowed destination: keys must not be sent, by an admin's update, to a host of their choosing."""
        if not api_base:
            return
        any_public = not self.api_hosts and not self.api_host_pattern
        check_destination(api_base, policy, field=field, official=lambda host: any_public or self.official_host(host),
                          expected=f"{self.a('host')} (expected {', '.join(self.api_hosts) or self.host_description})")

    @property
    def host_description(self) -> str:
        return _HOST_DESCRIPTIONS.get(self.name, "the provider's own hosts")

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


def check_destination(url: str, policy: EgressPolicy, *, field: str, official: Callable[[str], bool],
                      expected: str) -> str:
    """Raise InvalidArgument unless `url` may be sent a secret: an allowed destination (byokcommon/egress.py) on a
    host `official` accepts, or one ops allow (BYOK_API_BASE_ALLOWLIST), or loopback in development. Used for
    api_base and for every endpoint keyservice sends a cloud credential to (STS, token endpoints): a tenant or
    an admin must not be able to send a key to a host of their choosing. Returns the host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        policy.check_url(parts.scheme, host)
    except EgressRefused as exc:
        raise InvalidArgument(field, str(exc)) from None
    if official(host) or policy.host_allowlisted(host):
        return host
    if policy.dev_loopback_http and _loopback(host):
        return host  # development: the local stand-ins play every provider and token endpoint
    raise InvalidArgument(field, f"{host} is not {expected}; ops may allow others in {ALLOWLIST_ENV}")


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

# Bedrock model ids: a vendor prefix and the vendor's model (anthropic.claude-3-sonnet-20240229-v1:0), optionally
# behind a cross-region inference profile's geography (us.anthropic.…), or an inference profile's or provisioned
# model's ARN. No other provider's model names contain "vendor." at the start, so the pattern overlaps none.
_BEDROCK_VENDORS = "anthropic|meta|amazon|mistral|cohere|ai21|deepseek|writer|qwen|openai|twelvelabs|stability"
_BEDROCK_MODELS = (rf"((us|eu|apac|jp|au|ca|us-gov|global)\.)?({_BEDROCK_VENDORS})\.[a-z0-9][A-Za-z0-9._:-]*"
                   r"|arn:aws(-cn|-us-gov)?:bedrock:[a-z0-9-]+:[0-9]{12}:(inference-profile|application-inference-profile"
                   r"|provisioned-model|foundation-model)/[A-Za-z0-9._:-]+")

_BEDROCK_FIELDS = (
    ProviderField("access_key_id", True, False, "an IAM user's access key id (AKIA + 16 upper-case letters or "
                                                "digits); with secret_access_key, instead of api_key"),
    ProviderField("secret_access_key", True, False, "that access key's secret (40 characters)"),
    ProviderField("api_key", True, False, "a Bedrock API key (ABSK… or bedrock-api-key-…), instead of an access "
                                          "key pair; leased as is, as a bearer token"),
    ProviderField("region", False, True, "the AWS region of the Bedrock runtime, e.g. us-east-1", routing=True),
    ProviderField("role_arn", False, False, "a role to assume (arn:aws:iam::<account>:role/<name>); leases then "
                                            "carry that role's session credentials"),
    ProviderField("external_id", False, False, "the external id the role's trust policy requires (with role_arn)"),
)
_AZURE_FIELDS = (
    ProviderField("api_key", True, False, "the resource's key (sent in the api-key header), or instead:"),
    ProviderField("client_secret", True, False, "an Entra ID application's client secret (with tenant_id and "
                                                "client_id); leases carry only access tokens derived from it"),
    ProviderField("endpoint", False, True, "the resource, https://<resource>.openai.azure.com or "
                                           "https://<resource>.cognitiveservices.azure.com", routing=True),
    ProviderField("api_version", False, False, "the api-version, e.g. 2024-10-21; empty = the /openai/v1 API",
                  routing=True),
    ProviderField("deployments", False, False, 'a JSON object from model to deployment name, e.g. '
                                               '{"gpt-4o": "prod-gpt4o"}', routing=True),
    ProviderField("tenant_id", False, False, "the Entra ID tenant (a GUID), with client_secret"),
    ProviderField("client_id", False, False, "the application's client id (a GUID), with client_secret"),
)
_VERTEX_FIELDS = (
    ProviderField("service_account_json", True, True, "a Google service account's JSON key file (type "
                                                      "service_account); leases carry only access tokens minted "
                                                      "from it"),
    ProviderField("location", False, True, "the Vertex AI location, e.g. us-central1, or global", routing=True),
    ProviderField("project", False, False, "the Google Cloud project; default: the key's project_id",
                  routing=True),
)
_HOST_DESCRIPTIONS = {
    "bedrock": "bedrock-runtime.<region>.amazonaws.com",
    "azure_openai": "<resource>.openai.azure.com or <resource>.cognitiveservices.azure.com",
    "vertex_ai": "<location>-aiplatform.googleapis.com or aiplatform.googleapis.com",
}

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
    # The cloud providers have no platform key: a platform lease carries no settings (region, endpoint, …).
    ProviderSpec("bedrock", "bedrock", "https://bedrock-runtime.{region}.amazonaws.com",
                 "anthropic.claude-3-5-haiku-20241022-v1:0", _BEDROCK_MODELS, "",
                 "access_key_id + secret_access_key (an IAM user's key pair), or api_key (a Bedrock API key)", "",
                 display_name="Amazon Bedrock", fields=_BEDROCK_FIELDS,
                 api_host_pattern=r"bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"),
    ProviderSpec("azure_openai", "openai", "{endpoint}", "gpt-4o-mini", "", "",
                 "api_key, or client_secret of an Entra ID application (settings tenant_id, client_id)", "",
                 display_name="Azure OpenAI", fields=_AZURE_FIELDS,
                 api_host_pattern=r"[a-z0-9][a-z0-9-]{0,62}\.(openai|cognitiveservices)\.azure\.com"),
    ProviderSpec("vertex_ai", "gemini", "https://{location}-aiplatform.googleapis.com/v1", "gemini-2.0-flash", "",
                 "", "service_account_json (a service account's JSON key file)", "",
                 display_name="Google Vertex AI", fields=_VERTEX_FIELDS,
                 api_host_pattern=r"([a-z]+-[a-z]+[0-9]{1,2}-)?aiplatform\.googleapis\.com",
                 global_api_base="https://aiplatform.googleapis.com/v1"),
)}

# Pattern routing is tried in this order: specific prefixes before OpenRouter's catch-all "vendor/model".
_ROUTING_ORDER = ("openai", "anthropic", "gemini", "bedrock", "mistral", "deepseek", "groq", "fireworks",
                  "together", "openrouter")


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
