"""Stand-ins for the cloud providers whose credentials are not one API key: Bedrock, Azure OpenAI, Vertex AI.

They cannot be reached from here, so tests and the local stack talk to these, which check what the real services
check and answer in their shapes: `bedrock` (SigV4 verified with botocore from the session credentials it was told
are valid, `sigv4`; ConverseStream as AWS event-stream frames, `eventstream`; InvokeModel for the embeddings models,
`bedrock_invoke`; AWS's error types), `azure` (api-key or Entra ID bearer, api-version, deployments, chat and
embeddings, Azure's error JSON), `vertex` (OAuth2 bearer, project and location, generateContent and the embeddings
models' :predict, Google's error JSON). `server.CloudUpstream` serves them beside the local upstream's own routes
on one port.
"""

from __future__ import annotations

from devstack.cloudfakes.azure import AzureConfig, AzureOpenAI
from devstack.cloudfakes.bedrock import BedrockConfig, BedrockRuntime, validation_report
from devstack.cloudfakes.eventstream import event, exception, message
from devstack.cloudfakes.server import CloudRequest, CloudUpstream
from devstack.cloudfakes.sigv4 import Refusal, SessionCredentials, verify
from devstack.cloudfakes.vertex import VertexAI, VertexConfig

__all__ = ["AzureConfig", "AzureOpenAI", "BedrockConfig", "BedrockRuntime", "CloudRequest", "CloudUpstream",
           "Refusal", "SessionCredentials", "VertexAI", "VertexConfig", "event", "exception", "message",
           "validation_report", "verify"]
