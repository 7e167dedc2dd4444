"""Clients of the proxy's HTTP front as services would build them: an httpx client presenting a caller's
certificate (what every official SDK takes as `http_client`), and the three SDKs pointed at the front."""

from __future__ import annotations

import ssl

import anthropic
import httpx
import httpx2
import openai
from google import genai
from google.genai import types as genai_types

from byokcommon.tls import TlsFiles


def mtls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files.ca)
    context.load_cert_chain(files.cert, files.key)
    return context


def tenant_headers(org: str = "", **headers: str) -> dict[str, str]:
    tenant = {"x-byok-org": org} if org else {}
    tenant.update({f"x-byok-{name}": value for name, value in headers.items()})
    return tenant


def mtls_client(files: TlsFiles, org: str = "", **headers: str) -> httpx.AsyncClient:
    """An httpx client with the caller's certificate and, when given, the tenant headers on every request."""
    return httpx.AsyncClient(verify=mtls_context(files), headers=tenant_headers(org, **headers), timeout=10.0)


def front_url(port: int) -> str:
    return f"https://localhost:{port}"


def openai_sdk(port: int, client: httpx.AsyncClient, provider: str = "openai") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{front_url(port)}/{provider}", api_key="unused", http_client=client,
                              max_retries=0)


def anthropic_sdk(port: int, files: TlsFiles, org: str = "", **headers: str) -> anthropic.AsyncAnthropic:
    """The anthropic SDK runs on httpx2 (its fork of httpx): its own client type, with the same certificate."""
    client = httpx2.AsyncClient(verify=mtls_context(files), headers=tenant_headers(org, **headers), timeout=10.0)
    return anthropic.AsyncAnthropic(base_url=f"{front_url(port)}/anthropic", api_key="unused", http_client=client,
                                    max_retries=0)


def genai_sdk(port: int, files: TlsFiles, org: str) -> genai.Client:
    """google-genai builds its own clients (aiohttp for async when installed, as here; httpx2 for sync) from their
    arguments: the same certificate for both."""
    return genai.Client(api_key="unused", http_options=genai_types.HttpOptions(
        base_url=f"{front_url(port)}/gemini", headers={"x-byok-org": org},
        async_client_args={"ssl": mtls_context(files)}, client_args={"verify": mtls_context(files)},
        retry_options=genai_types.HttpRetryOptions(attempts=1)))
