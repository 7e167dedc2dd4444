"""Which headers cross the proxy in a native request, each way.

Toward the provider: the caller's headers minus everything that could carry a credential (whatever key the SDK
sent: `authorization`, `x-api-key`, `x-goog-api-key`, Azure's `api-key`; cookies), minus hop-by-hop headers, the
proxy's own `x-byok-*` and forwarding headers, and the OpenAI account selectors (`openai-organization`,
`openai-project`: the credential decides whose account is billed, not the caller). An AWS SDK's own signature goes
too (`authorization`, `x-amz-security-token`, `x-amz-date`, `x-amz-content-sha256`): a Bedrock request is signed
again, by upstream, with the lease's session credentials. Then the lease's key in the provider's own header (or as
the lease's auth scheme says: `auth`), and `accept-encoding: identity` so the relayed bytes are the body itself
(the usage tap reads them).

Toward the caller: the provider's headers worth passing on (content type, request ids, rate limits,
retry-after, …) minus hop-by-hop headers, cookies, anything naming a key, and any header whose value holds the
lease's key (a provider echoing a key must not deliver it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from byokcommon.wire import KEY_HEADERS, auth_headers

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
_NOT_TO_PROVIDER = HOP_BY_HOP | frozenset(KEY_HEADERS) | frozenset({
    "host", "content-length", "expect", "cookie", "accept-encoding", "forwarded", "via", "x-forwarded-for",
    "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "openai-organization",
    "openai-project", "x-goog-user-project", "x-amz-date", "x-amz-content-sha256",
    # The caller's trace context (and baggage, its internal key-values) is no third party's business.
    "traceparent", "tracestate", "baggage"})
_NOT_TO_CALLER = HOP_BY_HOP | frozenset(KEY_HEADERS) | frozenset({
    "content-length", "set-cookie", "set-cookie2", "server", "date", "alt-svc", "strict-transport-security", "via",
    "www-authenticate"})
# Headers the proxy sets on every answer: a provider's header of the same name never passes.
PROXY_HEADERS = ("x-byok-request-id", "x-byok-key-source", "x-byok-credential-id")


def to_provider(headers: Iterable[tuple[str, str]], family: str, api_key: str,
                auth: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of the upstream request (`headers`: the caller's, lower-case names); `auth`: the headers that
    present the lease's credential, when not `api_key` in the family's own header (empty for a request upstream
    signs)."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name in _NOT_TO_PROVIDER or name.startswith(("x-byok-", "proxy-")):
            continue
        out[name] = value if name not in out else f"{out[name]}, {value}"
    for name, value in (auth_headers(family, api_key) if auth is None else auth).items():
        if name == "anthropic-version" and name in out:
            continue  # the caller's SDK chose its API version; the key is ours to set, the version is not
        out[name] = value
    out["accept-encoding"] = "identity"
    return out


def to_caller(headers: Iterable[tuple[str, str]], api_key: str) -> list[tuple[str, str]]:
    """The provider's headers that go back to the caller (`headers`: lower-case names, repeats kept)."""
    return [(name, value) for name, value in headers
            if name not in _NOT_TO_CALLER and not name.startswith("x-byok-") and not (api_key and api_key in value)]
