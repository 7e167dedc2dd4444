"""The floor contender: a bare grpc.aio ChatService that generates the frames itself.

It speaks the proxy's contract over the same mTLS, with no keyservice, no lease cache and no upstream, so
it is the least any Python gRPC relay on this machine can cost. It reads the same model-name controls as
the local upstream (``gpt-4o?frames=64&delay=0.02``) and sends a StreamStart, then one text frame per
word (the first after one ``delay``, like the upstream), then the finish reason and usage.

With ``--http`` it is the HTTP floor instead: a bare aiohttp HTTPS server with the HTTP front's TLS rules
(``server_ssl_context``: client certificate required) answering ``POST /openai/chat/completions`` in OpenAI's
own SSE or JSON shape, making the frames itself: the least a Python aiohttp relay can cost here, for the HTTP
front's rows.

Run: ``python -m bench.floor [--http] --port N --cert C --key K --ca CA`` (serves until SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from aiohttp import web

from bench.sse_frames import chunk, completion, first_event, last_events, model_controls, word
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import TlsFiles, server_ssl_context


class FloorChat(pb_grpc.ChatServiceServicer):
    async def StreamChat(self, request: pb.StreamChatRequest, context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[pb.StreamChatResponse]:
        base, frames, delay = model_controls(request.parameters.model)
        yield pb.StreamChatResponse(start=pb.StreamStart(request_id=request.parameters.request_id or "floor",
                                                         provider="openai",
                                                         key_source=pb.KEY_SOURCE_TENANT))
        for i in range(frames):
            if delay:
                await asyncio.sleep(delay)
            message = pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, text=word(i))])
            if i == 0:
                message.model = base
            yield message
        yield pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, provider_finish_reason="stop",
                                                            finish_reason=pb.FINISH_REASON_STOP)])
        yield pb.StreamChatResponse(usage=pb.Usage(input_tokens=1, output_tokens=frames))

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        base, frames, _delay = model_controls(request.parameters.model)
        text = "".join(word(i) for i in range(frames))
        return pb.ChatResponse(request_id=request.parameters.request_id or "floor", provider="openai", model=base,
                               choices=[pb.Choice(index=0, text=text, provider_finish_reason="stop",
                                                  finish_reason=pb.FINISH_REASON_STOP)],
                               usage=pb.Usage(input_tokens=1, output_tokens=frames),
                               key_source=pb.KEY_SOURCE_TENANT)


async def _http_chat(request: web.Request) -> web.StreamResponse:
    payload = await request.json()
    base, frames, delay = model_controls(payload["model"])
    # What the front does per request too: the caller's certificate, from the TLS object aiohttp hands over.
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    peer = {"x-peer-certificate": "yes" if ssl_object and ssl_object.getpeercert(binary_form=True) else "no"}
    if not payload.get("stream"):
        return web.Response(body=completion(base, frames), content_type="application/json", headers=peer)
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache", **peer})
    await response.prepare(request)
    await response.write(first_event(base))
    for i in range(frames):
        if delay:
            await asyncio.sleep(delay)
        await response.write(chunk(base, {"content": word(i)}))
    await response.write(last_events(base, frames))
    await response.write_eof()
    return response


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_http(port: int, cert: Path, key: Path, ca: Path) -> None:
    app = web.Application()
    app.router.add_post("/openai/chat/completions", _http_chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0)
    await runner.setup()
    context = server_ssl_context(TlsFiles(cert=str(cert), key=str(key), ca=str(ca)))
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, backlog=4096).start()
    await _until_signalled()
    await runner.cleanup()


async def serve(port: int, cert: Path, key: Path, ca: Path) -> None:
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())], root_certificates=ca.read_bytes(),
                                        require_client_auth=True)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ChatServiceServicer_to_server(FloorChat(), server)
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    await server.start()
    await _until_signalled()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--http", action="store_true", help="the HTTP floor (aiohttp, HTTPS with mTLS), not gRPC")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--ca", type=Path, required=True)
    args = ap.parse_args(argv)
    run = (serve_http if args.http else serve)(args.port, args.cert, args.key, args.ca)
    try:
        import uvloop  # noqa: PLC0415  (the proxy runs on uvloop too: same footing)
    except ImportError:
        asyncio.run(run)
    else:
        uvloop.run(run)


if __name__ == "__main__":
    main()
