"""The local upstream with the cloud providers' endpoints on the same port: Bedrock, Azure OpenAI, Vertex AI.

`CloudUpstream` is a `FakeUpstream` (so the OpenAI, Anthropic and Gemini routes, pieces, pacing, disconnect
watching and records are the same) that first routes the cloud paths:

| path | stand-in |
|---|---|
| ``/model/{id}/converse[-stream]``, ``/model/{id}/invoke`` | `bedrock.BedrockRuntime` (root = ``bedrock_base``) |
| ``/openai/deployments/…``, ``/openai/v1/…`` | `azure.AzureOpenAI` (endpoint = ``azure_endpoint``) |
| ``/v1[beta1]/projects/{p}/locations/{l}/publishers/google/models/{m}:{v}`` | `vertex.VertexAI` (``vertex_base``) |

Each cloud request is recorded in ``cloud_requests`` (`CloudRequest`: the target as sent, which credential headers
came, the access key id a SigV4 signature names, the status answered), with credential header values never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from byokcommon.wire import KEY_HEADERS
from devstack.cloudfakes.azure import AzureConfig, AzureOpenAI
from devstack.cloudfakes.bedrock import BedrockConfig, BedrockRuntime
from devstack.cloudfakes.vertex import VertexAI, VertexConfig
from devstack.upstream import FakeUpstream, Response, UpstreamConfig
from devstack.upstream.answers import _Opts


@dataclass
class CloudRequest:
    """One request to a cloud stand-in (credential header values left out)."""

    cloud: str  # "bedrock" | "azure" | "vertex"
    method: str
    target: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    credential_headers: tuple[str, ...] = ()  # which of KEY_HEADERS came
    signed_by: str = ""  # the access key id of a SigV4 signature's credential scope (not a secret)
    status: int = 0


class CloudUpstream(FakeUpstream):
    def __init__(self, config: UpstreamConfig | None = None, *, bedrock: BedrockConfig | None = None,
                 azure: AzureConfig | None = None, vertex: VertexConfig | None = None) -> None:
        super().__init__(config)
        self.bedrock = BedrockRuntime(bedrock)
        self.azure = AzureOpenAI(azure)
        self.vertex = VertexAI(vertex)
        self.cloud_requests: list[CloudRequest] = []

    @property
    def bedrock_base(self) -> str:
        return self.base_url

    @property
    def azure_endpoint(self) -> str:
        return self.base_url

    @property
    def vertex_base(self) -> str:
        return self.base_url + "/v1"

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        path = urlsplit(target).path
        if path.startswith("/model/"):
            cloud = "bedrock"
            answer = self.bedrock.answer(method, target, headers, body, self._opts())
        elif path.startswith("/openai/"):
            cloud = "azure"
            answer = self.azure.answer(method, target, headers, body, self._openai)
        elif path.startswith(("/v1/projects/", "/v1beta1/projects/")):
            cloud = "vertex"
            answer = self.vertex.answer(method, target, headers,
                                        lambda model, action, query, token: self._gemini(model, action, query, token,
                                                                                         body), body)
        else:
            return super()._route(method, target, headers, body)
        scope = headers.get("authorization", "").partition("Credential=")[2]
        self.cloud_requests.append(CloudRequest(
            cloud, method, target, {k: v for k, v in headers.items() if k not in KEY_HEADERS}, body,
            tuple(k for k in KEY_HEADERS if k in headers), scope.split("/", 1)[0] if scope else "", answer.status))
        return answer

    def _opts(self) -> _Opts:
        cfg = self.config
        return _Opts(frames=cfg.frames, delay=cfg.frame_delay, chunk=cfg.chunk_size, tool=False)

    def _openai(self, model: str, payload: dict[str, Any], stream: bool, key: str) -> Response:
        """The OpenAI generator's answer for the model a deployment serves."""
        return self._generate("openai", model, payload, stream, "azure_openai", key, "chat")

    def _gemini(self, model: str, action: str, query: str, token: str, body: bytes) -> Response:
        """The Gemini API's own route answers (its checks, its generator), the token standing for its key."""
        target = f"/v1beta/models/{quote(model, safe='')}:{action}" + (f"?{query}" if query else "")
        return super()._route("POST", target, {"content-type": "application/json", "x-goog-api-key": token}, body)
