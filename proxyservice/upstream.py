"""Executes adapters' UpstreamRequests with httpx: the proxy's only httpx user.

One pooled AsyncClient per process. A streamed response is handed back open; the caller iterates raw
chunks and must close it (closing returns the connection to the pool, or drops it mid-body, which is what
a cancelled caller needs). Non-2xx answers are read (bounded) and turned into the proxy's errors with the
provider's retry-after; httpx exceptions are translated here. URLs never hold keys (adapters put keys in
headers), and no URL or header is ever put in an error message.
"""

from __future__ import annotations

import json

import httpx

from proxyservice import errors
from proxyservice.adapters.base import UpstreamRequest, error_message

MAX_ERROR_BODY = 64 * 1024


class UpstreamFailure(Exception):
    """A non-2xx answer, before any byte reached the caller. `error` is what the caller gets."""

    def __init__(self, status: int, error: errors.ProxyError) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


class Upstream:
    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=60),
            transport=transport, follow_redirects=False, trust_env=False)

    async def open(self, req: UpstreamRequest, family: str) -> httpx.Response:
        """Send and return the open response (2xx), or raise UpstreamFailure / a ProxyError."""
        request = self.client.build_request(req.method, req.url, headers=req.headers, content=req.body or None)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise errors.DeadlineExceeded(f"{family} upstream timed out") from None
        except httpx.HTTPError:
            raise errors.Unavailable(f"{family} upstream is unreachable") from None
        if response.status_code < 300:
            return response
        body = await self._read_bounded(response)
        status = response.status_code
        if status == 400 and family == "gemini" and b"API_KEY_INVALID" in body:
            status = 401  # Gemini says "bad key" with a 400; treat it as the rejection it is
            return_error: errors.ProxyError = errors.KeyRejected("gemini rejected the key (API_KEY_INVALID)")
        else:
            return_error = _status_error(response, body, family)
        raise UpstreamFailure(status, return_error)

    async def read_all(self, response: httpx.Response, family: str) -> bytes:
        try:
            return await response.aread()
        except httpx.TimeoutException:
            raise errors.DeadlineExceeded(f"{family} upstream timed out") from None
        except httpx.HTTPError:
            raise errors.Unavailable(f"{family} upstream dropped the connection") from None
        finally:
            await response.aclose()

    @staticmethod
    async def _read_bounded(response: httpx.Response) -> bytes:
        chunks, size = [], 0
        try:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass
        finally:
            await response.aclose()
        return b"".join(chunks)[:MAX_ERROR_BODY]

    async def close(self) -> None:
        await self.client.aclose()


def translate_stream_error(exc: httpx.HTTPError, family: str) -> errors.ProxyError:
    """An httpx failure while relaying a body the caller already started receiving."""
    if isinstance(exc, httpx.TimeoutException):
        return errors.DeadlineExceeded(f"{family} upstream stalled past the read timeout")
    return errors.Unavailable(f"{family} upstream dropped the stream")


def _status_error(response: httpx.Response, body: bytes, family: str) -> errors.ProxyError:
    status = response.status_code
    retry_after = response.headers.get("retry-after", "")[:32]
    try:
        parsed = json.loads(body)
        detail = error_message(parsed, family)[1] if isinstance(parsed, dict) else ""
    except ValueError:
        detail = ""
    detail = detail or f"{family} upstream answered HTTP {status}"
    if status == 429:
        return errors.RateLimited(detail, retry_after=retry_after or "1")
    if status in (401, 403):
        return errors.KeyRejected(f"{family} rejected the key (HTTP {status})")
    if status in (400, 404, 413, 422):
        return errors.InvalidArgument("upstream", detail)
    if status == 408 or status == 504:
        return errors.DeadlineExceeded(detail, retry_after=retry_after)
    return errors.Unavailable(detail, retry_after=retry_after)
