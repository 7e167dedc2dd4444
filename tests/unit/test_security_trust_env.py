"""Issue 11, finding 7: no httpx client of ours takes proxy settings (HTTP(S)_PROXY, ALL_PROXY), certificates
or .netrc credentials from the environment. A key sent through an environment's proxy would reach a host that
no one configured for it, so keyservice's verify and the proxy's upstream pool follow the same rule:
`trust_env=False`. Shown by behaviour (a proxy named in the environment sees nothing) and checked in the source
(every httpx client or transport the services build says so)."""

from __future__ import annotations

import ast
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from keyservice.verify import verify_key
from proxyservice.adapters import adapter_for
from proxyservice.errors import Unavailable
from proxyservice.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-trust-env-" + "q" * 32
# RFC 6761: .invalid never resolves, so a direct connection fails fast and only an environment proxy could
# carry the request anywhere.
UNRESOLVABLE = "https://provider.byok-test.invalid/v1"


class _Recorder(socketserver.BaseRequestHandler):
    seen: list[bytes]

    def handle(self) -> None:
        self.request.settimeout(2)
        try:
            self.seen.append(self.request.recv(4096))
        except OSError:
            pass


@pytest.fixture
def env_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """A loopback HTTP proxy named in every proxy variable; yields what it received."""
    seen: list[bytes] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_verify_ignores_the_environments_proxy(env_proxy: list[bytes]) -> None:
    health, status = verify_key("openai", "openai", UNRESOLVABLE, KEY, timeout=3.0)
    assert (health, status) == ("unreachable", 0)
    assert env_proxy == []  # with trust_env the proxy got "CONNECT provider.byok-test.invalid:443"


async def test_the_proxys_upstream_ignores_the_environments_proxy(env_proxy: list[bytes]) -> None:
    params = pb.ChatParameters(model="gpt-4o-mini", messages=[pb.Message(role=pb.ROLE_USER, content="hi")])
    request = adapter_for("openai").build_request(params, api_base=UNRESOLVABLE, api_key=KEY, model="gpt-4o-mini",
                                                  stream=False, provider="openai")
    upstream = Upstream(connect_timeout=3.0, read_timeout=3.0, max_connections=4)
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await upstream.open(request, "openai")
    finally:
        await upstream.close()
    assert env_proxy == []


def _httpx_constructions() -> Iterator[tuple[str, int, ast.Call]]:
    for package in ("keyservice", "proxyservice", "byokcommon", "byokctl", "devstack"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "httpx" not in text:
                continue
            tree = ast.parse(text, str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "httpx" \
                        and node.func.attr in ("Client", "AsyncClient", "HTTPTransport", "AsyncHTTPTransport"):
                    yield str(path.relative_to(ROOT)), node.lineno, node


def test_every_httpx_client_and_transport_says_trust_env_false() -> None:
    found = list(_httpx_constructions())
    assert {path for path, _, _ in found} >= {"keyservice/verify.py", "proxyservice/upstream.py"}
    offenders = [f"{path}:{line}" for path, line, call in found
                 if not any(k.arg == "trust_env" and isinstance(k.value, ast.Constant) and k.value.value is False
                            for k in call.keywords)]
    assert offenders == []
