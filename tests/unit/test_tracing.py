"""Traces of proxy requests with keyservice and the provider stubbed, spans caught by the SDK's InMemorySpanExporter:
nothing built when off; the span's name, kind, parent and gen_ai/byok attributes for Chat, StreamChat and Embed; the
caller's `traceparent` followed and the span's own handed back; errors; sampling; the settings; and what a span
never holds (the key, the prompt, the caller's trace context sent on to a provider)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.settings import SettingsError
from byokcommon.tls import TlsFiles
from proxyservice import errors, tracing
from proxyservice.leasecache import LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.native import headers as native_headers
from proxyservice.service import ChatServicer, _Outcome
from proxyservice.settings import ProxySettings
from proxyservice.tracing import Tracing
from proxyservice.upstream import UpstreamResponse
from tests.unit.test_service import BODY, KeyService, params

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PROMPT = "canary-prompt-zebra-quartz"
KEY = "sk-test-" + "k" * 20  # what tests.unit.test_service.KeyService leases
SSE = (b'data: {"id":"c","model":"gpt-4o-mini-2024","choices":[{"index":0,"delta":{"content":"alpha"}}]}\n\n'
       b'data: {"id":"c","model":"gpt-4o-mini-2024","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n'
       b'data: {"id":"c","model":"gpt-4o-mini-2024","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
       b'"prompt_tokens_details":{"cached_tokens":2}}}\n\n'
       b"data: [DONE]\n\n")
EMBED_BODY = (b'{"object":"list","model":"text-embedding-3-small","data":[{"object":"embedding","index":0,'
              b'"embedding":[0.5,0.25]}],"usage":{"prompt_tokens":4,"total_tokens":4}}')


class Context:
    """A gRPC servicer context: the caller's metadata in, the initial metadata the servicer sends out."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.sent: list[tuple[tuple[str, str], ...]] = []

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def send_initial_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.sent.append(metadata)


class Upstream:
    """A provider answering each call with `body` (SSE when streamed); it records the requests it got."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def open(self, req: Any, family: str, provider: str = "") -> UpstreamResponse:
        self.requests.append(req)
        body = SSE if b'"stream":true' in req.body else EMBED_BODY if req.url.endswith("/embeddings") else BODY
        return UpstreamResponse(httpx.Response(200, content=body), family)


def traced(sample_ratio: float = 1.0) -> tuple[ChatServicer, InMemorySpanExporter, Tracing]:
    exporter = InMemorySpanExporter()
    tracer = Tracing.exporting(exporter, sample_ratio)
    svc = ChatServicer(cache=LeaseCache(KeyService().fetch), keys=None, upstream=Upstream(),  # type: ignore[arg-type]
                       metrics=ProxyMetrics(CollectorRegistry()), tracing=tracer)
    return svc, exporter, tracer


def finished(exporter: InMemorySpanExporter, tracer: Tracing) -> list[ReadableSpan]:
    assert tracer.force_flush()
    return list(exporter.get_finished_spans())


def caller_context(flags: str = "01") -> Context:
    return Context((("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}"), ("tracestate", "acme=1"),
                    ("x-request-id", "r-1")))


def prompt_params(**kw: Any) -> pb.ChatParameters:
    chat = params(**kw)
    chat.messages[0].content = PROMPT
    return chat


def everything_in(spans: list[ReadableSpan]) -> str:
    """Every name, attribute, event and status a span holds, as one text for leak canaries."""
    return repr([(s.name, dict(s.attributes or {}), [(e.name, dict(e.attributes or {})) for e in s.events],
                  s.status.description, dict(s.resource.attributes)) for s in spans])


# --- off ----------------------------------------------------------------------------------------------------------

def test_off_by_default_builds_no_provider_no_exporter_no_thread(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    tracer = Tracing.from_settings(ProxySettings(grpc_addr="127.0.0.1:0", tls=TlsFiles("c", "k", "ca"),
                                                 keyservice_addr="localhost:1"))
    assert not tracer.enabled and tracer.provider is None
    assert tracer.grpc_span(Context(), "Chat", "chat", "m") is tracing.OFF  # type: ignore[arg-type]
    assert tracer.force_flush()
    tracer.shutdown()
    assert {t.name for t in threading.enumerate()} == before


async def test_off_a_request_sends_no_traceparent_and_records_nothing() -> None:
    svc = ChatServicer(cache=LeaseCache(KeyService().fetch), keys=None, upstream=Upstream(),  # type: ignore[arg-type]
                       metrics=ProxyMetrics(CollectorRegistry()))
    context = caller_context()
    reply = await svc.Chat(pb.ChatRequest(parameters=params()), context)  # type: ignore[arg-type]
    assert reply.choices[0].text == "alpha" and context.sent == []


# --- what a span says ---------------------------------------------------------------------------------------------

async def test_chat_span_is_the_callers_child_in_genai_terms_and_is_handed_back() -> None:
    svc, exporter, tracer = traced()
    context = caller_context()
    await svc.Chat(pb.ChatRequest(parameters=prompt_params(max_tokens=64, temperature=0.5, top_p=0.9, seed=7,
                                                           request_id="r-1")), context)  # type: ignore[arg-type]
    (span,) = finished(exporter, tracer)
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.status.status_code is StatusCode.UNSET
    assert context.sent == [(("traceparent", f"00-{CALLER_TRACE}-{span.context.span_id:016x}-01"),)]
    assert dict(span.attributes or {}) == {
        "rpc.system.name": "grpc", "rpc.method": "byok.proxy.v1.ChatService/Chat",
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "m", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1,
        "gen_ai.request.max_tokens": 64, "gen_ai.request.temperature": 0.5, "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "byok.credential_id": "cred_" + "0" * 24, "byok.key_source": "tenant",
        "byok.org_id": "acme", "byok.request_id": "r-1", "byok.status": "OK", "byok.upstream.status_code": 200,
    }  # the stub context names no caller: byok.caller is left out, never empty


async def test_stream_chat_span_has_stream_ttfb_usage_and_the_providers_finish_reason() -> None:
    svc, exporter, tracer = traced()
    context = caller_context()
    messages = [m async for m in svc.StreamChat(pb.StreamChatRequest(parameters=prompt_params()),
                                                  context)]  # type: ignore[arg-type]
    assert messages[0].HasField("start")
    (span,) = finished(exporter, tracer)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["rpc.method"] == "byok.proxy.v1.ChatService/StreamChat"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024"
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"],
            attributes["gen_ai.usage.cache_read.input_tokens"]) == (7, 3, 2)
    assert 0 < float(attributes["gen_ai.response.time_to_first_chunk"]) < 5  # type: ignore[arg-type]
    assert context.sent[0][0][1].startswith(f"00-{CALLER_TRACE}-")


async def test_embed_span_is_an_embeddings_span() -> None:
    svc, exporter, tracer = traced()
    request = pb.EmbedRequest(tenant=pb.Tenant(org_id="acme", user_id="u1"), model="text-embedding-3-small",
                              inputs=[pb.EmbedInput(text=PROMPT)], dimensions=2)
    await svc.Embed(request, Context())  # type: ignore[arg-type]
    (span,) = finished(exporter, tracer)
    attributes = dict(span.attributes or {})
    assert span.name == "embeddings text-embedding-3-small" and span.parent is None  # no caller trace: a root
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.embeddings.dimension.count"] == 2
    assert attributes["gen_ai.usage.input_tokens"] == 4 and "gen_ai.usage.output_tokens" not in attributes
    assert attributes["byok.user_id"] == "u1"
    assert PROMPT not in everything_in([span]) and KEY not in everything_in([span])


async def test_a_refused_request_is_an_error_span_with_the_code_and_the_safe_message() -> None:
    svc, exporter, tracer = traced()
    context = caller_context()
    with pytest.raises(errors.InvalidArgument) as refused:
        await svc.Chat(pb.ChatRequest(parameters=prompt_params(temperature=9.0)), context)  # type: ignore[arg-type]
    (span,) = finished(exporter, tracer)
    assert span.status.status_code is StatusCode.ERROR and span.status.description == refused.value.message
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "INVALID_ARGUMENT" and attributes["byok.status"] == "INVALID_ARGUMENT"
    assert "gen_ai.provider.name" not in attributes  # refused before any lease
    assert context.sent, "a refused call still tells the caller its trace"


async def test_a_cancelled_stream_records_cancelled_before_the_span_ends() -> None:
    svc, exporter, tracer = traced()
    stream = svc.StreamChat(pb.StreamChatRequest(parameters=prompt_params()), Context())  # type: ignore[arg-type]
    assert (await anext(stream)).HasField("start")
    await stream.aclose()  # type: ignore[attr-defined]  # the caller went away after the first message
    (span,) = finished(exporter, tracer)
    assert dict(span.attributes or {})["byok.status"] == "CANCELLED" and span.status.status_code is StatusCode.ERROR


async def test_the_key_and_the_prompt_are_in_no_span() -> None:
    svc, exporter, tracer = traced()
    for rpc in ("Chat", "StreamChat"):
        request: Any = (pb.ChatRequest if rpc == "Chat" else pb.StreamChatRequest)(parameters=prompt_params(
            stop=[PROMPT], tools=[pb.Tool(name="lookup", description=PROMPT, parameters_json="{}")]))
        if rpc == "Chat":
            await svc.Chat(request, caller_context())  # type: ignore[arg-type]
        else:
            _ = [m async for m in svc.StreamChat(request, caller_context())]  # type: ignore[arg-type]
    text = everything_in(finished(exporter, tracer))
    assert PROMPT not in text and KEY not in text and "acme=1" not in text  # nor the caller's tracestate


def test_http_header_names_are_read_in_any_case() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracing.exporting(exporter)
    tracer.start("GET /v1/models", (("Traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),), {}).end()
    (span,) = finished(exporter, tracer)
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE


# --- sampling -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ratio", "flags", "exported"), [(0.0, None, False), (1.0, None, True),
                                                          (0.0, "01", True), (1.0, "00", False)])
async def test_the_callers_sampled_flag_decides_else_the_ratio(ratio: float, flags: str | None,
                                                               exported: bool) -> None:
    svc, exporter, tracer = traced(ratio)
    context = caller_context(flags) if flags else Context()
    await svc.Chat(pb.ChatRequest(parameters=params()), context)  # type: ignore[arg-type]
    assert len(finished(exporter, tracer)) == (1 if exported else 0)
    ((_, value),) = context.sent[0]
    assert int(value.rsplit("-", 1)[1], 16) & 1 == exported  # the sampled flag; the caller learns the trace anyway


async def test_shutdown_exports_what_is_queued() -> None:
    svc, exporter, tracer = traced()
    await svc.Chat(pb.ChatRequest(parameters=params()), Context())  # type: ignore[arg-type]
    tracer.shutdown()  # no force_flush: the batch delay has not passed, shutdown must flush
    assert len(exporter.get_finished_spans()) == 1


# --- native requests and the provider ----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "operation", "model"), [
    ("/chat/completions", "chat", ""), ("/v1/chat/completions", "chat", ""), ("/responses", "chat", ""),
    ("/v1/messages", "chat", ""), ("/v1/messages/count_tokens", "", ""), ("/embeddings", "embeddings", ""),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent", "generate_content", "gemini-2.0-flash"),
    ("/v1beta/models/text-embedding-004:batchEmbedContents", "embeddings", "text-embedding-004"),
    ("/completions", "text_completion", ""), ("/models", "", ""), ("/files/abc", "", ""),
])
def test_a_native_requests_operation_and_model_come_from_its_path(path: str, operation: str, model: str) -> None:
    assert (tracing.native_operation(path), tracing.path_model(path)) == (operation, model)


def test_the_callers_trace_context_is_not_for_the_provider() -> None:
    headers = (("traceparent", "00-x"), ("tracestate", "a=1"), ("baggage", "user=1"), ("content-type", "json"))
    sent = native_headers.to_provider(headers, "openai", "sk-test-0000000000000000", None)
    assert "traceparent" not in sent and "tracestate" not in sent and "baggage" not in sent
    assert sent["content-type"] == "json"


def test_a_provider_the_conventions_spell_otherwise_keeps_its_catalog_name() -> None:
    exporter = InMemorySpanExporter()
    tracer = Tracing.exporting(exporter)
    for provider in ("mistral", "openai"):
        span = tracer.start("chat", (), {})
        tracing.record_request(span, _Outcome(request_id="r", caller="c", params=params(), provider=provider),
                               "OK", "")
        span.end()
    mistral, openai = (dict(s.attributes or {}) for s in finished(exporter, tracer))
    assert (mistral["gen_ai.provider.name"], mistral["byok.provider"]) == ("mistral_ai", "mistral")
    assert openai["gen_ai.provider.name"] == "openai" and "byok.provider" not in openai


def test_provider_names_follow_the_conventions_well_known_values() -> None:
    assert {p: tracing.PROVIDER_NAMES.get(p, p) for p in ("openai", "anthropic", "gemini", "mistral", "bedrock",
                                                          "azure_openai", "vertex_ai", "groq", "deepseek")} == {
        "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "mistral": "mistral_ai",
        "bedrock": "aws.bedrock", "azure_openai": "azure.ai.openai", "vertex_ai": "gcp.vertex_ai", "groq": "groq",
        "deepseek": "deepseek"}


# --- settings -----------------------------------------------------------------------------------------------------

def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    for name in ("c", "k", "ca"):
        (tmp_path / name).write_text("x")
    return {"BYOK_TLS_CERT": str(tmp_path / "c"), "BYOK_TLS_KEY": str(tmp_path / "k"),
            "BYOK_TLS_CA": str(tmp_path / "ca"), **values}


def test_settings_default_to_off(tmp_path: Path) -> None:
    settings = ProxySettings.from_env(_env(tmp_path))
    assert (settings.otlp_endpoint, settings.otlp_headers, settings.trace_sample_ratio) == ("", (), 1.0)


def test_settings_read_the_endpoint_headers_and_ratio_and_never_show_the_headers(tmp_path: Path) -> None:
    token = "Bearer%20s3cr3t-token"
    settings = ProxySettings.from_env(_env(tmp_path, BYOK_OTLP_ENDPOINT="https://otel.example:4317/",
                                           BYOK_OTLP_HEADERS=f"Authorization={token}, x-scope-orgid=acme",
                                           BYOK_TRACE_SAMPLE_RATIO="0.25"))
    assert settings.otlp_endpoint == "https://otel.example:4317" and settings.trace_sample_ratio == 0.25
    assert settings.otlp_headers == (("authorization", "Bearer s3cr3t-token"), ("x-scope-orgid", "acme"))
    assert "s3cr3t" not in repr(settings)


def test_settings_read_the_headers_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "headers").write_text("authorization=Bearer%20from-file\n")
    settings = ProxySettings.from_env(_env(tmp_path, BYOK_OTLP_HEADERS_FILE=str(tmp_path / "headers")))
    assert settings.otlp_headers == (("authorization", "Bearer from-file"),)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("BYOK_OTLP_ENDPOINT", "otel:4317", "http://HOST:PORT"),
    ("BYOK_OTLP_ENDPOINT", "https://u:s3cr3t@otel:4317", "credentials"),
    ("BYOK_OTLP_ENDPOINT", "http://otel:4318/v1/traces", "OTLP/gRPC"),
    ("BYOK_OTLP_HEADERS", "authorization:s3cr3t", "entry 1"),
    ("BYOK_OTLP_HEADERS", "ok=1,Bad Name=s3cr3t", "entry 2"),
    ("BYOK_OTLP_HEADERS_FILE", "/nonexistent/headers", "cannot read"),
    ("BYOK_TRACE_SAMPLE_RATIO", "2", "between 0.0 and 1.0"),
])
def test_bad_settings_fail_naming_the_variable_never_the_secret(tmp_path: Path, name: str, value: str,
                                                                says: str) -> None:
    with pytest.raises(SettingsError) as bad:
        ProxySettings.from_env(_env(tmp_path, **{name: value}))
    assert name in str(bad.value) and says in str(bad.value) and "s3cr3t" not in str(bad.value)
