"""What every provider adapter provides: the request to send, a stream decoder, a response parser.

Adapters are pure translation (no I/O): the proxy's upstream module executes the ``UpstreamRequest``
with httpx and feeds the response body to the adapter's decoder. Errors raised here carry messages
safe to return to callers: they never contain the API key (nor a provider message unredacted).

A lease says how its credential is presented (``auth_scheme``, byokcommon/wire.py): a header the request carries,
or temporary AWS credentials the request is signed with when it is sent (``UpstreamRequest.sigv4``: upstream signs
it at the last moment, so the signature's time is the sending time, on a retry too). ``presentation`` reads that
from the lease, once for every family. ``build_request`` takes the lease as a keyword (``lease``) for what its
other arguments do not carry (the scheme, AWS credentials, the cloud providers' routing settings); without it an
adapter presents ``api_key`` in its family's header, as before leases carried more.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.redaction import redact_text
from byokcommon.wire import AUTH_SCHEMES, SIGV4, auth_headers
from proxyservice.errors import FailedPrecondition

FR = pb.FinishReason


class R:
    """The Role values as plain class attributes: `pb.Role.ROLE_USER` goes through protobuf's enum wrapper
    `__getattr__` (about 0.6 µs a lookup, several per message, on every request); these are plain ints."""

    ROLE_SYSTEM = pb.ROLE_SYSTEM
    ROLE_USER = pb.ROLE_USER
    ROLE_ASSISTANT = pb.ROLE_ASSISTANT
    ROLE_TOOL = pb.ROLE_TOOL

# Provider finish/stop reasons → normalised FinishReason (anything unknown maps to OTHER).
_FINISH: dict[str, pb.FinishReason] = {
    # OpenAI family
    "stop": FR.FINISH_REASON_STOP,
    "length": FR.FINISH_REASON_LENGTH,
    "tool_calls": FR.FINISH_REASON_TOOL_CALLS,
    "function_call": FR.FINISH_REASON_TOOL_CALLS,
    "content_filter": FR.FINISH_REASON_CONTENT_FILTER,
    # Anthropic
    "end_turn": FR.FINISH_REASON_STOP,
    "stop_sequence": FR.FINISH_REASON_STOP,
    "max_tokens": FR.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": FR.FINISH_REASON_LENGTH,
    "tool_use": FR.FINISH_REASON_TOOL_CALLS,
    "refusal": FR.FINISH_REASON_CONTENT_FILTER,
    # Gemini
    "STOP": FR.FINISH_REASON_STOP,
    "MAX_TOKENS": FR.FINISH_REASON_LENGTH,
    "SAFETY": FR.FINISH_REASON_CONTENT_FILTER,
    "RECITATION": FR.FINISH_REASON_CONTENT_FILTER,
    "BLOCKLIST": FR.FINISH_REASON_CONTENT_FILTER,
    "PROHIBITED_CONTENT": FR.FINISH_REASON_CONTENT_FILTER,
    "SPII": FR.FINISH_REASON_CONTENT_FILTER,
    "IMAGE_SAFETY": FR.FINISH_REASON_CONTENT_FILTER,
    # Bedrock Converse (StopReason; end_turn, tool_use, max_tokens, stop_sequence as Anthropic's)
    "guardrail_intervened": FR.FINISH_REASON_CONTENT_FILTER,
    "content_filtered": FR.FINISH_REASON_CONTENT_FILTER,
}


def normalise_finish(reason: str) -> pb.FinishReason:
    """Map a provider's finish reason to ``FinishReason`` (UNSPECIFIED when empty, OTHER when unknown)."""
    if not reason:
        return FR.FINISH_REASON_UNSPECIFIED
    return _FINISH.get(reason, FR.FINISH_REASON_OTHER)


@dataclass(frozen=True, slots=True)
class SigV4Credentials:
    """Temporary AWS credentials (a lease's ``aws_credentials``) and the scope they sign in: region and service."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    region: str
    service: str = "bedrock"  # bedrock-runtime's signing name


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """An HTTP request for the upstream module to execute. ``body`` is JSON (empty for GET).

    ``headers`` hold the API key, ``sigv4`` the credentials upstream signs the request with when it sends it (None:
    the headers already present the key): never log this object (its repr hides them).
    """

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(default=b"", repr=False)
    sigv4: SigV4Credentials | None = field(default=None, repr=False)


# A Bedrock runtime host names its region: bedrock-runtime.us-east-1.amazonaws.com (also -fips, and .com.cn).
_BEDROCK_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


def signing_region(lease: kpb.IssueKeyLeaseResponse) -> str:
    """The region a SigV4 lease signs in: its ``region`` setting, else the one its api_base's host names."""
    region = lease.settings.get("region", "")
    if not region:
        match = _BEDROCK_HOST.fullmatch(urlsplit(lease.api_base).hostname or "")
        region = match.group(1) if match else ""
    if not region:
        raise FailedPrecondition(f"the {lease.provider[:32]} credential's lease has no region to sign in "
                                 "(its region setting)")
    return region


def presentation(lease: kpb.IssueKeyLeaseResponse | None, *, family: str, api_key: str, provider: str = ""
                 ) -> tuple[dict[str, str], SigV4Credentials | None]:
    """How a request presents the lease's credential: (headers, None), or ({}, the credentials upstream signs the
    request with). Without a lease: ``api_key`` in the family's header (the servicer's call before leases said)."""
    if lease is None:
        return auth_headers(family, api_key, provider=provider), None
    scheme = lease.auth_scheme
    if scheme not in AUTH_SCHEMES:
        raise FailedPrecondition(f"this proxy does not know the auth scheme {scheme[:32]!r} of the leased "
                                 "credential; upgrade the proxy")
    if scheme != SIGV4:
        return auth_headers(family, lease.api_key, scheme=scheme, provider=lease.provider), None
    aws = lease.aws_credentials
    if not (aws.access_key_id and aws.secret_access_key and aws.session_token):
        raise FailedPrecondition(f"the {lease.provider[:32]} lease says aws_sigv4 but carries no session credentials")
    return {}, SigV4Credentials(aws.access_key_id, aws.secret_access_key, aws.session_token, signing_region(lease))


class AdapterError(Exception):
    """The upstream sent something we cannot use (malformed JSON, an error object).

    The message is safe to show callers. ``partial`` holds the responses decoded from the same chunk
    before the error, which the caller should still forward.
    """

    def __init__(self, message: str, *, partial: list[pb.StreamChatResponse] | None = None) -> None:
        super().__init__(message)
        self.partial: list[pb.StreamChatResponse] = partial or []


class UpstreamStreamError(AdapterError):
    """The provider reported an error inside the stream (e.g. Anthropic ``overloaded_error``)."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "",
        partial: list[pb.StreamChatResponse] | None = None,
    ) -> None:
        super().__init__(message, partial=partial)
        self.error_type = error_type


class RequestMappingError(ValueError):
    """The caller's parameters cannot be expressed for this provider (e.g. invalid ``parameters_json``, a content
    part or control the provider does not take). ``field`` names the request field at fault, as the caller wrote
    it ("parameters.messages[2].parts[0].document"); the servicer returns it as INVALID_ARGUMENT."""

    def __init__(self, message: str, *, field: str = "parameters") -> None:
        super().__init__(message)
        self.field = field


def unsupported(field: str, provider: str, what: str) -> RequestMappingError:
    """The refusal of something a provider cannot take, naming the field and the provider."""
    return RequestMappingError(f"{what} is not supported by {provider}", field=field)


class StreamDecoder(Protocol):
    """Decodes one streamed response body; stateful, one per response.

    ``complete`` turns true once the provider said the answer is whole (OpenAI family: ``[DONE]`` or a
    finish_reason; Anthropic: ``message_stop``; Gemini: a finishReason or a blocked prompt). A body that ends
    cleanly before that was cut short somewhere (a proxy, a load balancer, a provider restart).
    """

    @property
    def complete(self) -> bool: ...

    def feed(self, chunk: bytes) -> list[pb.StreamChatResponse]: ...

    def close(self) -> list[pb.StreamChatResponse]: ...


class Adapter(Protocol):
    """One wire family ("openai" | "anthropic" | "gemini" | "bedrock")."""

    family: str

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "", lease: kpb.IssueKeyLeaseResponse | None = None,
    ) -> UpstreamRequest:
        """The request for ``model``; ``provider`` (the lease's provider name) lets a family adapter
        leave out what one provider of the family refuses; ``lease`` says how the key is presented and carries the
        cloud providers' session credentials and routing settings (see the module docstring)."""
        ...

    def stream_decoder(self) -> StreamDecoder: ...

    def parse_response(self, body: bytes) -> pb.ChatResponse: ...



def safe_text(text: Any, limit: int = 200) -> str:
    """A provider-supplied message made safe to repeat: key-shaped tokens masked (byokcommon's one key-shape
    rule), then the length capped. Masking first: a cut through a key would leave a prefix too short to match."""
    return redact_text(str(text))[:limit]


def loads(data: str | bytes, what: str) -> Any:
    """``json.loads`` that raises a safe ``AdapterError`` instead of echoing the body."""
    try:
        return json.loads(data)
    except (ValueError, TypeError):
        raise AdapterError(f"malformed JSON in {what} from upstream") from None


def error_message(obj: dict[str, Any], family: str) -> tuple[str, str]:
    """(type, safe message) of a provider error object ``{"error": {...}}``."""
    err = obj.get("error")
    if not isinstance(err, dict):
        return "error", f"{family} upstream reported an error"
    etype = str(err.get("type") or err.get("status") or err.get("code") or "error")
    msg = err.get("message")
    text = f"{family} upstream error {safe_text(etype, 60)}"
    if msg:
        text += f": {safe_text(msg)}"
    return etype, text


def json_object(data: str | bytes, what: str) -> dict[str, Any]:
    """``loads`` of a body that must be one JSON object (a response, an event's payload), else a safe AdapterError."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise AdapterError(f"unexpected JSON in {what} from upstream")
    return obj


def add_turn(turns: list[dict[str, Any]], role: str, key: str, items: list[Any]) -> None:
    """Append a turn of ``role`` with ``items`` under ``key``, or extend the last one when it has the same role: the
    APIs that want roles to alternate (and parallel calls' results in one turn) get consecutive turns merged."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def schema(parameters_json: str) -> dict[str, Any]:
    """A tool's JSON Schema; an empty one means 'no parameters'."""
    if not parameters_json:
        return {"type": "object", "properties": {}}
    try:
        value = json.loads(parameters_json)
    except ValueError:
        raise RequestMappingError("tool parameters_json is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestMappingError("tool parameters_json must be a JSON object")
    return value


def arguments_object(arguments: str) -> dict[str, Any]:
    """A history tool call's arguments as an object (Anthropic and Gemini want objects, not text)."""
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise RequestMappingError("tool call arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestMappingError("tool call arguments must be a JSON object")
    return value


def dumps(obj: Any) -> bytes:
    """Compact JSON body (non-ASCII kept as UTF-8)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def string(value: Any) -> str:
    """``value`` when the provider sent a string there, else "": a null or an odd type in a text field is no text,
    not an error (and never a str() of it)."""
    return value if isinstance(value, str) else ""


def compact(obj: Any) -> str:
    """Compact JSON text (non-ASCII kept): how a tool call given as an object (Gemini's args, a whole Anthropic
    tool_use block) becomes the arguments text of the unified schema."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def join_url(base: str, path: str) -> str:
    """``base`` (may end with /) + ``path`` (starts with /)."""
    return base.rstrip("/") + path


def count(value: Any) -> int | None:
    """A token count as the provider reported it, or None where it reported none (field absent, JSON null, not a
    number): the schema's optional counts stay unset then, so a caller can tell "not reported" from 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def usage(
    input_tokens: Any,
    output_tokens: Any,
    *,
    reasoning: Any = None,
    cached: Any = None,
    cache_creation: Any = None,
) -> pb.Usage:
    """A ``Usage`` from the provider's own numbers. Input and output are plain fields (0 when absent, as in v1);
    the reasoning and cache counts are set only when the provider reported them."""
    u = pb.Usage(input_tokens=count(input_tokens) or 0, output_tokens=count(output_tokens) or 0)
    if (n := count(reasoning)) is not None:
        u.reasoning_tokens = n
    if (n := count(cached)) is not None:
        u.cached_input_tokens = n
    if (n := count(cache_creation)) is not None:
        u.cache_creation_input_tokens = n
    return u
