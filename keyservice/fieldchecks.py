"""Shape checks of the cloud credentials' fields, one function per kind of value: each returns the value (some
normalised) or raises InvalidArgument naming the field and the expected format, never echoing the value (a
secret pasted into the wrong field must not come back in the error, the RPC log or the audit trail).

The formats are the clouds' documented ones: AWS access key ids (AKIA/ASIA + 16 upper-case letters or digits)
and 40-character secret keys, region names, IAM role ARNs and external ids, Bedrock API keys (ABSK… long-term,
bedrock-api-key-… short-term), Azure resource endpoints, api-versions and deployment names, Entra ID GUIDs and
client secrets, Google Cloud locations and project ids, and service-account key files (parsed; their private key
must load). keyservice/cloud_fields.py decides which fields a provider takes; this module only checks shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from byokcommon.egress import EgressPolicy
from keyservice import validation
from keyservice.errors import InvalidArgument
from keyservice.providers import PROVIDERS, check_destination

_ACCESS_KEY_ID = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}")
_SECRET_ACCESS_KEY = re.compile(r"[A-Za-z0-9/+]{40}")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}")
_ROLE_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([\w+=,.@-]{1,64}/){0,8}[\w+=,.@-]{1,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_BEDROCK_KEY_PREFIXES = ("ABSK", "bedrock-api-key-")
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=]+")
_AZURE_KEY = re.compile(r"[A-Za-z0-9]{32,128}")
_CLIENT_SECRET = re.compile(r"[\x21-\x7e]{8,256}")  # printable ASCII without spaces ('~', '.', '_', '-' appear)
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?|preview|latest")
_DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LOCATION = re.compile(r"global|[a-z]+-[a-z]+[0-9]{1,2}")
_PROJECT = re.compile(r"([a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PRIVATE_KEY_ID = re.compile(r"[0-9a-f]{40}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}")

# Where Google's service-account key files send their JWT grant (token_uri): today's, and the two older ones keys
# made years ago still name. Any other host must be allowed by ops (byokcommon/egress.py).
GOOGLE_TOKEN_HOSTS = frozenset({"oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com"})
_SERVICE_ACCOUNT_REQUIRED = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")
_MAX_SERVICE_ACCOUNT_JSON = 16 * 1024
_MAX_DEPLOYMENTS = 200


def _matching(pattern: re.Pattern[str], value: str, field: str, expected: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidArgument(field, f"must be {expected}")
    return value


def _shape(pattern: re.Pattern[str], expected: str) -> Callable[[str, str], str]:
    """A check `(value, field) -> value` that the value matches `pattern` ("must be <expected>" otherwise)."""
    return lambda value, field: _matching(pattern, value, field, expected)


def aws_access_key_id(value: str, field: str) -> str:
    _matching(_ACCESS_KEY_ID, value, field, "an AWS access key id: AKIA followed by 16 upper-case letters or digits")
    if value.startswith("ASIA"):
        # A temporary key id needs its session token and expires within hours: keyservice derives those itself.
        raise InvalidArgument(field, "is a temporary (ASIA…) key id; store the IAM user's long-lived AKIA… key pair "
                                     "and keyservice derives session credentials from it")
    return value


aws_secret_access_key = _shape(_SECRET_ACCESS_KEY, "an AWS secret access key: 40 letters, digits, '/' or '+'")


aws_region = _shape(_REGION, "an AWS region name such as us-east-1 or us-gov-west-1")


aws_role_arn = _shape(_ROLE_ARN, "an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>")


aws_external_id = _shape(_EXTERNAL_ID, "2-1224 letters, digits or + = , . @ : / - _")


def bedrock_api_key(value: str, field: str) -> str:
    prefix = next((p for p in _BEDROCK_KEY_PREFIXES if value.startswith(p)), "")
    rest = value[len(prefix):]
    if not prefix or not 32 <= len(value) <= 8192 or not _BASE64ISH.fullmatch(rest):
        raise InvalidArgument(field, "must be an Amazon Bedrock API key: ABSK… (long-term) or bedrock-api-key-… "
                                     "(short-term) followed by base64")
    return value


azure_api_key = _shape(_AZURE_KEY, "an Azure OpenAI key: 32 hex digits, or 84 letters and digits")


def entra_client_secret(value: str, field: str) -> str:
    _matching(_CLIENT_SECRET, value, field, "an Entra ID client secret: 8-256 printable characters without spaces")
    if _GUID.fullmatch(value):
        # The portal shows a secret's id beside its value; Entra ID refuses the id (AADSTS7000215).
        raise InvalidArgument(field, "is a GUID: that is the secret's id, not its value (the value is shown once, "
                                     "when the secret is created)")
    return value


def guid(value: str, field: str) -> str:
    return _matching(_GUID, value, field, "a GUID such as 00000000-0000-0000-0000-000000000000").lower()


def azure_endpoint(value: str, field: str, policy: EgressPolicy) -> str:
    """The resource's URL, normalised to scheme://host[:port]: https on Azure OpenAI's documented hosts, or a host
    ops allow (an API gateway in front of it), or loopback in development."""
    spec = PROVIDERS["azure_openai"]
    validation.api_base(value, field)  # an absolute https URL without credentials, query or fragment
    parts = urlsplit(value)
    if parts.path not in ("", "/"):
        raise InvalidArgument(field, "must be the resource's root URL, without a path (e.g. "
                                     "https://my-resource.openai.azure.com)")
    check_destination(value, policy, field=field, official=spec.official_host,
                      expected=f"an Azure OpenAI resource's host ({spec.host_description})")
    return f"{parts.scheme}://{parts.netloc.lower()}"


azure_api_version = _shape(_API_VERSION, "an Azure api-version such as 2024-10-21 or 2025-01-01-preview")


def azure_deployments(value: str, field: str) -> str:
    """A JSON object from model name to deployment name, returned in one canonical form (sorted, compact)."""
    try:
        parsed = json.loads(value)
    except ValueError:
        raise InvalidArgument(field, 'must be a JSON object such as {"gpt-4o": "prod-gpt4o"}') from None
    if not isinstance(parsed, dict) or not 0 < len(parsed) <= _MAX_DEPLOYMENTS:
        raise InvalidArgument(field, f"must be a JSON object of 1-{_MAX_DEPLOYMENTS} model: deployment entries")
    for model, deployment in parsed.items():
        if not model:
            raise InvalidArgument(field, "has an empty model name")
        validation.model(model, f"{field} (a model name)")
        if not isinstance(deployment, str) or not _DEPLOYMENT.fullmatch(deployment):
            raise InvalidArgument(field, "deployment names must be 1-64 letters, digits, '.', '_' or '-'")
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


gcp_location = _shape(_LOCATION, "a Google Cloud location such as us-central1 or europe-west4, or global")


gcp_project = _shape(_PROJECT, "a Google Cloud project id: 6-30 lower-case letters, digits or '-', starting with a "
                               "letter")


@dataclass(frozen=True)
class ServiceAccount:
    """What keyservice needs from a service-account key file besides the key itself (none of it secret)."""

    client_email: str
    project_id: str
    token_uri: str


def service_account_json(value: str, field: str, policy: EgressPolicy) -> ServiceAccount:
    """A Google service account's JSON key file: an object of type service_account with every field the JWT
    grant needs, a PEM RSA private key that loads, and a token_uri on Google's hosts (or one ops allow)."""
    if len(value) > _MAX_SERVICE_ACCOUNT_JSON:
        raise InvalidArgument(field, f"is larger than {_MAX_SERVICE_ACCOUNT_JSON // 1024} KiB; expected a service "
                                     "account's JSON key file")
    try:
        info: Any = json.loads(value)
    except ValueError:
        raise InvalidArgument(field, "is not JSON; expected a service account's JSON key file") from None
    if not isinstance(info, dict):
        raise InvalidArgument(field, "must be a JSON object (a service account's key file)")
    if info.get("type") != "service_account":
        raise InvalidArgument(field, 'must have "type": "service_account" (user credentials, external account and '
                                     "impersonation files are not service-account keys)")
    missing = [name for name in _SERVICE_ACCOUNT_REQUIRED if not isinstance(info.get(name), str) or not info[name]]
    if missing:
        raise InvalidArgument(field, f"lacks {', '.join(missing)}; expected a complete service-account key file")
    if info.get("universe_domain", "googleapis.com") != "googleapis.com":
        raise InvalidArgument(field, "names a universe_domain other than googleapis.com, which is not supported")
    if not _PRIVATE_KEY_ID.fullmatch(info["private_key_id"]):
        raise InvalidArgument(field, "has a private_key_id that is not 40 hex digits")
    if not _EMAIL.fullmatch(info["client_email"]):
        raise InvalidArgument(field, "has a client_email that is not an email address")
    gcp_project(info["project_id"], f"{field} (its project_id)")
    _rsa_private_key(info["private_key"], field)
    token_uri = info["token_uri"]
    if len(token_uri) > 2048:
        raise InvalidArgument(field, "has a token_uri longer than 2048 characters")
    check_token_uri(token_uri, policy, field)
    return ServiceAccount(client_email=info["client_email"], project_id=info["project_id"], token_uri=token_uri)


def check_token_uri(token_uri: str, policy: EgressPolicy, field: str) -> None:
    """The JWT grant (signed by the key) goes to token_uri: Google's hosts, or a host ops allow. A key file naming
    another host must not make keyservice send its grant there. Checked again before each grant."""
    check_destination(token_uri, policy, field=f"{field} (its token_uri)", official=GOOGLE_TOKEN_HOSTS.__contains__,
                      expected=f"Google's token endpoint ({', '.join(sorted(GOOGLE_TOKEN_HOSTS))})")


def _rsa_private_key(pem: str, field: str) -> None:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # cryptography's text is dropped too
        raise InvalidArgument(field, "has a private_key that is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidArgument(field, "has a private_key that is not an RSA key (service-account keys are RSA)")
