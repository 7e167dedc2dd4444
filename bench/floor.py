"""The floor contender: a bare grpc.aio ChatService that generates the frames itself.

It speaks the proxy's contract over the same mTLS, with no keyservice, no lease cache and no upstream, so
it is the least any Python gRPC relay on this machine can cost. It reads the same model-name controls as
the local upstream (``gpt-4o?frames=64&delay=0.02``) and sends a StreamStart, then one text frame per
word (the first after one ``delay``, like the upstream), then the finish reason and usage.

Run: ``python -m bench.floor --port N --cert C --key K --ca CA`` (serves until SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

import grpc

from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def model_controls(model: str) -> tuple[str, int, float]:
    """(base name, frames, delay seconds) from a model name with the upstream's ``?k=v`` controls."""
    base, _, query = model.partition("?")
    opts = dict(parse_qsl(query))
    return base, int(opts.get("frames", 16)), float(opts.get("delay", 0.0))


def _word(i: int) -> str:
    return ("" if i == 0 else " ") + WORDS[i % len(WORDS)]


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
            message = pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, text=_word(i))])
            if i == 0:
                message.model = base
            yield message
        yield pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, provider_finish_reason="stop",
                                                            finish_reason=pb.FINISH_REASON_STOP)])
        yield pb.StreamChatResponse(usage=pb.Usage(input_tokens=1, output_tokens=frames))

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        base, frames, _delay = model_controls(request.parameters.model)
        text = "".join(_word(i) for i in range(frames))
        return pb.ChatResponse(request_id=request.parameters.request_id or "floor", provider="openai", model=base,
                               choices=[pb.Choice(index=0, text=text, provider_finish_reason="stop",
                                                  finish_reason=pb.FINISH_REASON_STOP)],
                               usage=pb.Usage(input_tokens=1, output_tokens=frames),
                               key_source=pb.KEY_SOURCE_TENANT)


async def serve(port: int, cert: Path, key: Path, ca: Path) -> None:
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())], root_certificates=ca.read_bytes(),
                                        require_client_auth=True)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ChatServiceServicer_to_server(FloorChat(), server)
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--ca", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415  (the proxy runs on uvloop too: same footing)
    except ImportError:
        asyncio.run(serve(args.port, args.cert, args.key, args.ca))
    else:
        uvloop.run(serve(args.port, args.cert, args.key, args.ca))


if __name__ == "__main__":
    main()
