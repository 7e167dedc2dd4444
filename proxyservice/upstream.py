"""Executes adapters' UpstreamRequests with httpx: the proxy's only httpx user.

One pooled AsyncClient per process. A 2xx response is handed back open as an `UpstreamResponse`: the caller
iterates its chunks and must close it (closing returns the connection to the pool, or drops it mid-body,
which is what a cancelled caller needs). Non-2xx answers are read (bounded) and turned into the proxy's
errors with the provider's retry-after. httpx exceptions are translated here and nowhere else, so no other
module of the proxy imports httpx. URLs never hold keys (adapters put keys in headers), and no URL or
header is ever put in an error message.

Under httpx runs the proxy's own HTTP/1.1 transport (proxyservice/transport.py: asyncio protocols, httptools'
parser, a keep-alive pool that never hands out a connection the server closed), chosen by measurement
(docs/benchmarks.md, "The upstream client"). A body is read from the transport's `Body` directly when the answer
has no content-encoding to undo: one read per chunk, no httpx stream layers; any other transport (tests' httpx
`MockTransport`) or an encoded body goes through httpx's own iteration.

Every request passes `PinnedTransport` first (byokcommon/egress.py, docs/security.md "api_base and SSRF"): the
host is resolved when the request is sent, every address it has must be public (or in ops' allowlist), and
the request goes to the checked address, with the name kept for TLS verification (httpx's `sni_hostname`
request extension) and the Host header. A refused destination is FAILED_PRECONDITION before any connection.
A provider's refusal of the key is read from its structured evidence only (byokcommon/provider_answers.py):
the failure then carries the reason, which the servicer reports and fails over on.

A request with `sigv4` credentials (a Bedrock lease's temporary AWS credentials) is signed here, as it is sent,
with botocore's SigV4 signer over the URL httpx will send (its path bytes exactly: a model id's `%3A` stays
encoded), the adapter's headers and the body; a failover's second attempt is signed afresh. AWS answers errors as
`{"message": …}` with their type in `x-amzn-ErrorType`; an authentication refusal (an invalid, expired or
mis-signed session token) is the credential's refusal, anything else maps by status as for every family.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TypeVar

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from byokcommon.egress import EgressPolicy, EgressRefused, PinningResolver, Unresolvable
from byokcommon.provider_answers import key_rejection
from byokcommon.wire import BoundedBody
from proxyservice import errors
from proxyservice.adapters.base import SigV4Credentials, UpstreamRequest, error_message, safe_text
from proxyservice.transport import BODY, Body, Http1Transport

# What tests pass to swap the network out (httpx.MockTransport, or a transport to a local upstream).
Transport = httpx.AsyncBaseTransport



class UpstreamFailure(Exception):
    """A non-2xx answer, before any byte reached the caller. `error` is what the caller gets; `key_reason` is
    the provider's structured bad-key evidence ("" when the answer is not a refusal of the key)."""

    def __init__(self, status: int, error: errors.ProxyError, key_reason: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.error = error
        self.key_reason = key_reason


class PinnedTransport(httpx.AsyncBaseTransport):
    """A transport in front of another, sending each request only to an address the resolver checked (see the
    module docstring). Uses httpx's public transport API only: the request's URL and extensions."""

    def __init__(self, inner: httpx.AsyncBaseTransport, resolver: PinningResolver) -> None:
        self._inner = inner
        self._resolver = resolver
        self._pinned: dict[tuple[httpx.URL, str], httpx.URL] = {}  # (URL, checked address) -> URL to send to

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self._resolver.address(url.scheme, url.host, port)
        if address != url.host:
            key = (url, address)
            request.url = self._pinned.get(key) or _remember(self._pinned, key, url.copy_with(host=address))
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": url.host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _OpenResponse:
    """An open answer: `_body` is the transport's own reader when it can serve the bytes wanted (see
    `_direct_body`), else None and httpx's iteration (`_fallback`) reads the body."""

    _decoded = True  # the body's content-encoding undone (httpx's aiter_bytes) or kept (aiter_raw)

    def __init__(self, response: httpx.Response, family: str) -> None:
        self._response = response
        self._family = family
        self._body = _direct_body(response, decoded=self._decoded)
        self.status_code = response.status_code

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a failure mid-body is the caller's DEADLINE_EXCEEDED or UNAVAILABLE."""
        fallback = self._response.aiter_bytes if self._decoded else self._response.aiter_raw
        return _chunks(self._body, fallback, self._family)

    async def aclose(self) -> None:
        await self._response.aclose()


class UpstreamResponse(_OpenResponse):
    """An open 2xx response: its body as chunks (decoded: a provider may compress), errors translated."""

    async def read(self) -> bytes:
        """The whole body, then closed."""
        try:
            if self._body is None:
                return await self._response.aread()
            parts = [chunk async for chunk in self.chunks()]
            return parts[0] if len(parts) == 1 else b"".join(parts)
        except httpx.HTTPError as exc:
            raise _mid_body_error(exc, self._family) from None
        finally:
            await self._response.aclose()


class NativeResponse(_OpenResponse):
    """An open answer of a provider's own API, any status: its headers as sent and its body's bytes exactly as
    they arrive (no decoding: a compressed body stays compressed, with its content-encoding header)."""

    _decoded = False

    @property
    def headers(self) -> list[tuple[str, str]]:
        """(lower-case name, value) pairs, repeated headers kept."""
        return [(name.lower(), value) for name, value in self._response.headers.multi_items()]

    async def read_bounded(self) -> bytes:
        """Up to MAX_ERROR_BODY bytes of the body (an error answer's), then closed."""
        return await Upstream._read_bounded(self._response)


async def _chunks(body: Body | None, fallback: Callable[[], AsyncIterator[bytes]], family: str
                  ) -> AsyncIterator[bytes]:
    """One generator per body: the transport's reads directly (one await per chunk), or httpx's iteration."""
    try:
        if body is not None:
            while chunk := await body.read():
                yield chunk
        else:
            async for chunk in fallback():
                yield chunk
    except httpx.HTTPError as exc:
        raise _mid_body_error(exc, family) from None


def _direct_body(response: httpx.Response, *, decoded: bool) -> Body | None:
    """The transport's own body reader when its bytes are the ones wanted (`decoded`: only when the answer has no
    content-encoding to undo), else None: httpx's iteration then reads the body."""
    body = response.extensions.get(BODY)
    if body is None or (decoded and response.headers.get("content-encoding", "identity") != "identity"):
        return None
    return body


class Upstream:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int,
                 transport: Transport | None = None, egress: EgressPolicy | None = None,
                 resolver: PinningResolver | None = None) -> None:
        pinned = PinnedTransport(transport or Http1Transport(max_connections=max_connections, keepalive_expiry=60),
                                 resolver or PinningResolver(egress or EgressPolicy()))
        # No cookie a provider sets on one tenant's answer is kept for the next request (any tenant's).
        no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            transport=pinned, follow_redirects=False, trust_env=False, cookies=no_cookies)
        # What build_request would work out again for every request, worked out once: the client's default
        # headers (user-agent, accept-encoding, …), its timeouts, and each URL parsed (a few per provider).
        self._defaults = dict(self.client.headers)
        self._extensions = {"timeout": self.client.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    async def open(self, req: UpstreamRequest, family: str, provider: str = "") -> UpstreamResponse:
        """Send and return the open response (2xx), or raise UpstreamFailure / a ProxyError."""
        response = await self._send(req, family)
        if response.status_code < 300:
            return UpstreamResponse(response, family)
        body = await self._read_bounded(response)
        status = response.status_code
        reason = key_rejection(provider or family, family, status, body)
        if reason:
            raise UpstreamFailure(status, errors.KeyRejected(f"{family} rejected the key ({reason})"), reason)
        raise UpstreamFailure(status, _status_error(response, body, family))

    async def open_native(self, req: UpstreamRequest, family: str) -> NativeResponse:
        """Send a request of the provider's own API and return its answer open, whatever its status (the native
        passthrough relays the provider's errors as they are); only a failure to get an answer raises."""
        return NativeResponse(await self._send(req, family), family)

    def _request(self, req: UpstreamRequest) -> httpx.Request:
        """The httpx request for `req`: what the client's build_request makes (its default headers under the
        adapter's, its timeouts), from the parts kept since the last request to the same URL."""
        url = self._urls.get(req.url) or _remember(self._urls, req.url, httpx.URL(req.url))
        headers = {**self._defaults, **{name.lower(): value for name, value in req.headers.items()}}
        if req.sigv4 is not None:
            headers.update(sigv4_headers(req.sigv4, req.method, str(url), req.headers, req.body))
        return httpx.Request(req.method, url, headers=headers, content=req.body or None, extensions=self._extensions)

    async def _send(self, req: UpstreamRequest, family: str) -> httpx.Response:
        try:
            return await self.client.send(self._request(req), stream=True)
        except EgressRefused as exc:
            raise errors.FailedPrecondition(f"api_base: {exc}") from None
        except httpx.TimeoutException:
            raise errors.DeadlineExceeded(f"{family} upstream timed out") from None
        except (httpx.HTTPError, Unresolvable):
            raise errors.Unavailable(f"{family} upstream is unreachable") from None

    @staticmethod
    async def _read_bounded(response: httpx.Response) -> bytes:
        body = BoundedBody()
        try:
            async for chunk in response.aiter_raw():
                if body.add(chunk):
                    break
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        return body.bytes()

    async def close(self) -> None:
        await self.client.aclose()


_MEMO_ENTRIES = 1024  # parsed and pinned URLs kept (a few per provider and model); all dropped when full
K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    if len(cache) >= _MEMO_ENTRIES:
        cache.clear()
    cache[key] = value
    return value


def sigv4_headers(creds: SigV4Credentials, method: str, url: str, headers: dict[str, str], body: bytes
                  ) -> dict[str, str]:
    """The headers that sign a request with temporary AWS credentials (botocore's SigV4: `authorization`,
    `x-amz-date`, `x-amz-security-token`). Signed: `headers` and the host (from `url`, as httpx sends it)."""
    aws = AWSRequest(method=method, url=url, headers=headers, data=body)
    SigV4Auth(ReadOnlyCredentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
              creds.service, creds.region).add_auth(aws)
    return {"authorization": aws.headers["Authorization"], "x-amz-date": aws.headers["X-Amz-Date"],
            "x-amz-security-token": aws.headers["X-Amz-Security-Token"]}


# AWS's answers refusing the credentials themselves (not the request): an unknown or expired session token, a
# signature that does not verify.
_AWS_AUTH_ERRORS = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                              "IncompleteSignatureException", "MissingAuthenticationTokenException"})


def _aws_error(response: httpx.Response, body: bytes) -> tuple[str, str]:
    """(type, safe message) of an AWS JSON error: the type from `x-amzn-ErrorType` (before its ':'), else the
    body's `__type` (after any '#'); the message from the body's `message` (or `Message`)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    obj = parsed if isinstance(parsed, dict) else {}
    etype = response.headers.get("x-amzn-errortype", "").split(":", 1)[0] or str(obj.get("__type", "")).split("#")[-1]
    message = obj.get("message") or obj.get("Message") or ""
    etype = safe_text(etype, 60)
    return etype, f"bedrock upstream error {etype or response.status_code}" + (f": {safe_text(message)}"
                                                                                if message else "")


def _mid_body_error(exc: httpx.HTTPError, family: str) -> errors.ProxyError:
    """An httpx failure while reading a body (the caller may already have part of it)."""
    if isinstance(exc, httpx.TimeoutException):
        return errors.DeadlineExceeded(f"{family} upstream stalled past the read timeout")
    return errors.Unavailable(f"{family} upstream dropped the stream")


def _status_error(response: httpx.Response, body: bytes, family: str) -> errors.ProxyError:
    status = response.status_code
    retry_after = response.headers.get("retry-after", "")[:32]
    if family == "bedrock":
        etype, detail = _aws_error(response, body)
        if status in (401, 403) and etype in _AWS_AUTH_ERRORS:
            return errors.KeyRejected(f"bedrock rejected the credentials ({etype})")
    else:
        try:
            parsed = json.loads(body)
            detail = error_message(parsed, family)[1] if isinstance(parsed, dict) else ""
        except ValueError:
            detail = ""
    detail = detail or f"{family} upstream answered HTTP {status}"
    if status == 429:
        return errors.RateLimited(detail, retry_after=retry_after or "1")
    if status == 401:  # an authentication answer without the provider's bad-key evidence
        return errors.KeyRejected(f"{family} rejected the key (HTTP {status})")
    if status == 403:  # content policy, region, model access: the request was refused, not the key
        return errors.PermissionDenied(f"{family} upstream refused the request (HTTP 403)")
    if status in (400, 404, 413, 422):
        return errors.InvalidArgument("upstream", detail)
    if status == 408 or status == 504:
        return errors.DeadlineExceeded(detail, retry_after=retry_after)
    return errors.Unavailable(detail, retry_after=retry_after)
