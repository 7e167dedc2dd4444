"""A provider's credential checked as a whole: its secret (one api_key for most providers; named fields for Amazon
Bedrock, Azure OpenAI and Google Vertex AI, in one of the combinations each takes), its settings, and the rules
between them (a role only with an access key pair, an Entra ID application's ids with its secret), with the hint
and fingerprint shown for it and how its leases authenticate.

The combinations (keyservice/providers.py lists the fields, keyservice/fieldchecks.py checks each value):
- bedrock: access_key_id + secret_access_key (leases carry STS session credentials derived from them, "aws_sigv4")
  or api_key (a Bedrock API key, leased as is, "bearer"); settings region (required), role_arn and external_id.
- azure_openai: api_key (leased as is, sent in the `api-key` header, "api_key") or client_secret with settings
  tenant_id and client_id (leases carry Entra ID access tokens, "bearer"); settings endpoint (required),
  api_version, deployments.
- vertex_ai: service_account_json (leases carry OAuth2 access tokens, "bearer"); settings location (required),
  project (default: the key's project_id).
- every other provider: api_key, no settings; leases carry it for the family's own header ("").

Errors name where the value came from: `secret_fields.<name>` / `settings.<name>` by default, or what the caller's
labels say (`api_key`, `vault_path (its <name> field)`), and never echo a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from byokcommon.egress import EgressPolicy
from keyservice import fieldchecks as fc
from keyservice.errors import InvalidArgument
from keyservice.providers import ProviderSpec
from keyservice.secrets_display import fingerprint_secret, key_hint

# How the proxy authenticates a lease upstream (IssueKeyLeaseResponse.auth_scheme).
FAMILY_HEADER = ""  # api_key in the wire family's own header
API_KEY_HEADER = "api_key"  # Azure's `api-key` header
BEARER = "bearer"
AWS_SIGV4 = "aws_sigv4"

# What keyservice derives a lease's credential with; "" = the stored secret is leased as is.
DERIVE_STS, DERIVE_ENTRA, DERIVE_GOOGLE = "aws_sts", "entra_id", "google_oauth2"

Label = Callable[[str], str]
_MAX_SETTINGS = 16


def secret_fields_label(name: str) -> str:
    return f"secret_fields.{name}"


def settings_label(name: str) -> str:
    return f"settings.{name}"


@dataclass(frozen=True)
class CheckedCredential:
    """A credential that passed every check: what goes to Vault, what goes to the DB, and what is shown."""

    secret: dict[str, str]
    settings: dict[str, str]
    hint: str
    fingerprint: str


def check(spec: ProviderSpec, secret: Mapping[str, str], settings: Mapping[str, str], policy: EgressPolicy, *,
          label: Label = secret_fields_label, where: str = "secret_fields") -> CheckedCredential:
    """Check a credential of `spec`'s provider; `label` names a secret field in errors, `where` the secret as a
    whole. Settings are normalised (empty values dropped, deployments in one JSON form, endpoints without a
    trailing '/')."""
    given = {name: value for name, value in settings.items() if value}
    _check_setting_names(spec, given)
    if not secret:
        raise InvalidArgument(where, f"is required: {spec.key_format}")
    checker = _CHECKERS.get(spec.name)
    if checker is None:
        if set(secret) != {"api_key"}:
            raise InvalidArgument(where, f"{spec.name} takes one api_key")
        spec.check_key(secret["api_key"], field=label("api_key"))
        return CheckedCredential(dict(secret), {}, key_hint(spec, secret["api_key"]), fingerprint_secret(secret))
    hint, normalised = checker(dict(secret), given, policy, label, where)
    return CheckedCredential(dict(secret), normalised, hint, fingerprint_secret(secret))


def auth_scheme(spec: ProviderSpec, secret_names: frozenset[str] | set[str]) -> str:
    """How leases of a credential with these secret fields authenticate upstream."""
    if spec.name == "bedrock":
        return BEARER if "api_key" in secret_names else AWS_SIGV4
    if spec.name == "azure_openai":
        return API_KEY_HEADER if "api_key" in secret_names else BEARER
    if spec.name == "vertex_ai":
        return BEARER
    return FAMILY_HEADER


def derivation(spec: ProviderSpec, secret_names: frozenset[str] | set[str]) -> str:
    """Which derivation turns the stored secret into a lease's credential; "" = leased as is."""
    if spec.name == "bedrock" and "access_key_id" in secret_names:
        return DERIVE_STS
    if spec.name == "azure_openai" and "client_secret" in secret_names:
        return DERIVE_ENTRA
    if spec.name == "vertex_ai":
        return DERIVE_GOOGLE
    return ""


def routing_settings(spec: ProviderSpec, settings: Mapping[str, str]) -> dict[str, str]:
    """The settings a lease carries: those the proxy routes with (not a role to assume, not a tenant id)."""
    routing = {f.name for f in spec.fields if f.routing}
    return {name: value for name, value in settings.items() if name in routing}


def _check_setting_names(spec: ProviderSpec, settings: Mapping[str, str]) -> None:
    known = [f.name for f in spec.fields if not f.secret]
    if settings and not known:
        raise InvalidArgument("settings", f"{spec.name} takes no settings")
    if len(settings) > _MAX_SETTINGS or any(name not in known for name in settings):
        # The unknown name is not echoed: it is the caller's text, and could be a pasted key.
        raise InvalidArgument("settings", f"{spec.name} takes only the settings {', '.join(known)}")


def _required(settings: Mapping[str, str], name: str) -> str:
    value = settings.get(name, "")
    if not value:
        raise InvalidArgument(settings_label(name), "is required")
    return value


Checker = Callable[[dict[str, str], dict[str, str], EgressPolicy, Label, str], tuple[str, dict[str, str]]]


def _bedrock(secret: dict[str, str], settings: dict[str, str], policy: EgressPolicy, label: Label,
             where: str) -> tuple[str, dict[str, str]]:
    names = set(secret)
    if names == {"access_key_id", "secret_access_key"}:
        key_id = fc.aws_access_key_id(secret["access_key_id"], label("access_key_id"))
        fc.aws_secret_access_key(secret["secret_access_key"], label("secret_access_key"))
        hint = f"{key_id[:4]}…{key_id[-4:]}"  # the key id is an identifier (CloudTrail logs it), not the secret
    elif names == {"api_key"}:
        key = fc.bedrock_api_key(secret["api_key"], label("api_key"))
        hint = ("ABSK" if key.startswith("ABSK") else "bedrock-api-key-") + "…"  # the documented prefix only
    else:
        raise InvalidArgument(where, "bedrock takes access_key_id with secret_access_key (an IAM user's key pair), "
                                     "or api_key (a Bedrock API key)")
    out = {"region": fc.aws_region(_required(settings, "region"), settings_label("region"))}
    if "role_arn" in settings:
        if "api_key" in names:
            raise InvalidArgument(settings_label("role_arn"), "applies to an access key pair, not to a Bedrock API "
                                                              "key (which cannot assume a role)")
        out["role_arn"] = fc.aws_role_arn(settings["role_arn"], settings_label("role_arn"))
    if "external_id" in settings:
        if "role_arn" not in settings:
            raise InvalidArgument(settings_label("external_id"), "is used only with role_arn")
        out["external_id"] = fc.aws_external_id(settings["external_id"], settings_label("external_id"))
    return hint, out


def _azure(secret: dict[str, str], settings: dict[str, str], policy: EgressPolicy, label: Label,
           where: str) -> tuple[str, dict[str, str]]:
    names = set(secret)
    out = {"endpoint": fc.azure_endpoint(_required(settings, "endpoint"), settings_label("endpoint"), policy)}
    for name in ("tenant_id", "client_id"):
        if name in settings:
            out[name] = fc.guid(settings[name], settings_label(name))
    if names == {"api_key"}:
        fc.azure_api_key(secret["api_key"], label("api_key"))
        resource = (urlsplit(out["endpoint"]).hostname or "").split(".")[0]
        hint = f"api-key@{resource}"
    elif names == {"client_secret"}:
        fc.entra_client_secret(secret["client_secret"], label("client_secret"))
        for name in ("tenant_id", "client_id"):
            _required(settings, name)
        hint = f"app {out['client_id']}"
    else:
        raise InvalidArgument(where, "azure_openai takes api_key (the resource's key), or client_secret (an Entra ID "
                                     "application's, with settings tenant_id and client_id)")
    if "api_version" in settings:
        out["api_version"] = fc.azure_api_version(settings["api_version"], settings_label("api_version"))
    if "deployments" in settings:
        out["deployments"] = fc.azure_deployments(settings["deployments"], settings_label("deployments"))
    return hint, out


def _vertex(secret: dict[str, str], settings: dict[str, str], policy: EgressPolicy, label: Label,
            where: str) -> tuple[str, dict[str, str]]:
    if set(secret) != {"service_account_json"}:
        raise InvalidArgument(where, "vertex_ai takes service_account_json (a service account's JSON key file)")
    account = fc.service_account_json(secret["service_account_json"], label("service_account_json"), policy)
    out = {"location": fc.gcp_location(_required(settings, "location"), settings_label("location"))}
    if "project" in settings:
        out["project"] = fc.gcp_project(settings["project"], settings_label("project"))
    return account.client_email, out  # the account's email is its public identifier


_CHECKERS: dict[str, Checker] = {"bedrock": _bedrock, "azure_openai": _azure, "vertex_ai": _vertex}
