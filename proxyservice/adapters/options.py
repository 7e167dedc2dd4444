"""`provider_options_json`: the caller's JSON object merged into a provider request body, for what the unified
schema does not model (Anthropic's `metadata`, Gemini's `safetySettings`, OpenAI's `service_tier`, …).

The merge is deep (objects into objects) and never overrides: a key the adapter already set from the schema is a
conflict, refused, so a caller cannot use options to undo what the schema says (or smuggle a second, different
value past its validation). Some keys can never come from a caller, at any depth where they could matter:
credentials (a body is never where byok puts a key, and a provider that reads one there must not get the
caller's), the model and its routing (OpenRouter's `provider`/`models`/`route`, which would send the tenant's
request to another provider than the lease's), and URLs of the request itself (`base_url`, `endpoint`).
"""

from __future__ import annotations

import json
from typing import Any

from proxyservice.adapters.base import RequestMappingError

FIELD = "parameters.provider_options_json"
MAX_BYTES = 64 * 1024

# Top-level keys no caller may set: the model and where it is served, the stream switch, request URLs.
_TOP_LEVEL = frozenset({"model", "models", "provider", "route", "stream", "base_url", "api_base", "endpoint",
                        "url"})
# Keys no caller may set anywhere: credentials (compared lower-cased, with - and _ removed).
_CREDENTIALS = frozenset({"apikey", "key", "xapikey", "xgoogapikey", "authorization", "accesstoken",
                          "bearertoken", "token", "secret", "clientsecret", "password", "credentials"})


def parse(options_json: str) -> dict[str, Any]:
    """The caller's options as an object ({} when empty), or the refusal saying what is wrong with them."""
    if not options_json:
        return {}
    if len(options_json.encode()) > MAX_BYTES:
        raise RequestMappingError(f"must be at most {MAX_BYTES} bytes", field=FIELD)
    try:
        value = json.loads(options_json)
    except ValueError:
        raise RequestMappingError("is not valid JSON", field=FIELD) from None
    if not isinstance(value, dict):
        raise RequestMappingError("must be a JSON object", field=FIELD)
    for key in value:
        if key in _TOP_LEVEL:
            raise RequestMappingError(f"cannot set {key!r}: the request's model, provider and URL are byok's",
                                      field=FIELD)
    _refuse_credentials(value, "")
    return value


def _refuse_credentials(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower().replace("-", "").replace("_", "") in _CREDENTIALS:
                raise RequestMappingError(f"cannot set {path + str(key)!r}: credentials are byok's", field=FIELD)
            _refuse_credentials(item, f"{path}{key}.")
    elif isinstance(value, list):
        for item in value:
            _refuse_credentials(item, path)


def merge(body: dict[str, Any], options_json: str) -> dict[str, Any]:
    """``body`` with the caller's options merged in (``body`` is changed and returned); a key the body already has
    with a non-object value, or an object meeting a non-object, is a conflict naming its path."""
    _merge_into(body, parse(options_json), "")
    return body


def _merge_into(target: dict[str, Any], extra: dict[str, Any], path: str) -> None:
    for key, value in extra.items():
        if key not in target:
            target[key] = value
        elif isinstance(target[key], dict) and isinstance(value, dict):
            _merge_into(target[key], value, f"{path}{key}.")
        else:
            raise RequestMappingError(f"{path + key!r} conflicts with what the request's own fields set",
                                      field=FIELD)
