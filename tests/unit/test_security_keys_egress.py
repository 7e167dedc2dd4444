"""Issue 11, finding 3, in the proxy's upstream and the shared rules: keys go only to public addresses (or ops'
allowed networks), checked on the address actually connected to, so DNS rebinding gets nowhere."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.egress import EgressPolicy, PinningResolver, is_public
from byokcommon.settings import SettingsError
from proxyservice import errors
from proxyservice.adapters import adapter_for
from proxyservice.upstream import Upstream

KEY = "sk-proj-egress-" + "z" * 30


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2606:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("64:ff9b::a9fe:a9fe", False), ("2002:7f00:1::", False), ("192.0.2.1", False),
])
def test_what_counts_as_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_the_allowlist_setting_names_itself_when_wrong() -> None:
    policy = EgressPolicy.from_env({"BYOK_API_BASE_ALLOWLIST": " 10.0.0.0/8, *.corp.example ,gw.example",
                                    "BYOK_DEV_LOOPBACK_HTTP": "0"})
    assert policy.host_allowlisted("a.corp.example") and policy.host_allowlisted("gw.example")
    assert not policy.host_allowlisted("corp.example.evil.test") and not policy.dev_loopback_http
    for bad in ("10.0.0.0/33", "bad host", "*."):
        with pytest.raises(SettingsError, match="^BYOK_API_BASE_ALLOWLIST"):
            EgressPolicy.from_env({"BYOK_API_BASE_ALLOWLIST": bad})


def request(api_base: str) -> object:
    params = pb.ChatParameters(model="gpt-4o-mini", messages=[pb.Message(role=pb.ROLE_USER, content="hi")])
    return adapter_for("openai").build_request(params, api_base=api_base, api_key=KEY, model="gpt-4o-mini",
                                               stream=False, provider="openai")


def upstream(seen: list[httpx.Request], answers: list[list[str]], policy: EgressPolicy | None = None) -> Upstream:
    queue = iter(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return next(queue)

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"choices": []})
    return Upstream(connect_timeout=1, read_timeout=1, max_connections=2, transport=httpx.MockTransport(answer),
                    resolver=PinningResolver(policy or EgressPolicy(), resolve=resolve, ttl=0))


async def test_the_proxy_pins_the_checked_address_and_refuses_a_rebound_name() -> None:
    seen: list[httpx.Request] = []
    up = upstream(seen, [["8.8.8.8"], ["127.0.0.1"]])
    try:
        response = await up.open(request("https://rebind.test/v1"), "openai", "openai")  # type: ignore[arg-type]
        await response.aclose()
        assert (seen[0].url.host, seen[0].headers["host"], seen[0].extensions["sni_hostname"]) == \
            ("8.8.8.8", "rebind.test", "rebind.test")
        with pytest.raises(errors.FailedPrecondition, match="^api_base: rebind.test resolves to a non-public"):
            await up.open(request("https://rebind.test/v1"), "openai", "openai")  # type: ignore[arg-type]
        assert len(seen) == 1
    finally:
        await up.close()


@pytest.mark.parametrize("api_base", ["https://169.254.169.254/v1", "https://[fd00::1]/v1",
                                      "http://127.0.0.1:9090/v1", "https://metadata.google.internal/v1"])
async def test_the_proxy_refuses_internal_destinations(api_base: str) -> None:
    seen: list[httpx.Request] = []
    up = upstream(seen, [])
    try:
        with pytest.raises(errors.FailedPrecondition) as refused:
            await up.open(request(api_base), "openai", "openai")  # type: ignore[arg-type]
        assert KEY not in refused.value.message and seen == []
    finally:
        await up.close()


async def test_the_development_setting_allows_loopback_http_only() -> None:
    seen: list[httpx.Request] = []
    up = upstream(seen, [], EgressPolicy(dev_loopback_http=True))
    try:
        await (await up.open(request("http://127.0.0.1:8080/v1"), "openai", "openai")).aclose()  # type: ignore[arg-type]
        with pytest.raises(errors.FailedPrecondition, match="https"):
            await up.open(request("http://8.8.8.8/v1"), "openai", "openai")  # type: ignore[arg-type]
        assert len(seen) == 1
    finally:
        await up.close()
