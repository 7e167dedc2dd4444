"""Checks on callers' chat requests; each failure names the field (INVALID_ARGUMENT).

These are the provider-independent rules (shapes, ranges, references between fields); what one provider cannot
take is its adapter's refusal (`RequestMappingError`), also before any upstream call.
"""

from __future__ import annotations

import json
import re

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.adapters import options
from proxyservice.adapters.base import RequestMappingError
from proxyservice.errors import InvalidArgument

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+?=&-]{0,255}")
_PROVIDER = re.compile(r"[a-z_]{1,32}")
_CREDENTIAL = re.compile(r"cred_[0-9a-f]{24}")
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MEDIA_TYPE = re.compile(r"[a-z]+/[a-z0-9.+-]{1,100}")
# Computed once: Role.values() builds a new list per call (about 1 µs, per message, on every request).
_ROLES = frozenset(pb.Role.values()) - {pb.ROLE_UNSPECIFIED}
MAX_MESSAGES = 2048
MAX_TOOLS = 256
MAX_PARTS = 1024
MAX_URL = 8192


def validate_route(prefix: str, tenant: pb.Tenant, model: str, provider: str, credential_id: str) -> None:
    """Who a request is for and where it goes, as chat and Embed both name them (fields under `prefix`)."""
    if not tenant.org_id:
        raise InvalidArgument(f"{prefix}tenant.org_id", "is required")
    for name, value in (("org_id", tenant.org_id), ("project_id", tenant.project_id), ("user_id", tenant.user_id)):
        if value and (not _ID.fullmatch(value) or ".." in value):
            raise InvalidArgument(f"{prefix}tenant.{name}", "must be 1-128 letters, digits and . _ : @ -")
    if model and not _MODEL.fullmatch(model):
        raise InvalidArgument(f"{prefix}model", "must be at most 256 characters of letters, digits, . _ : / @ + -")
    if provider and not _PROVIDER.fullmatch(provider):
        raise InvalidArgument(f"{prefix}provider", "must be a provider name such as openai")
    if credential_id and not _CREDENTIAL.fullmatch(credential_id):
        raise InvalidArgument(f"{prefix}credential_id", "must look like cred_ followed by 24 hex digits")


def validate_parameters(p: pb.ChatParameters) -> None:
    validate_route("parameters.", p.tenant, p.model, p.provider, p.credential_id)
    if not p.model and not p.provider:
        raise InvalidArgument("parameters.model", "model or provider is required")
    if not p.messages:
        raise InvalidArgument("parameters.messages", "at least one message is required")
    if len(p.messages) > MAX_MESSAGES:
        raise InvalidArgument("parameters.messages", f"at most {MAX_MESSAGES} messages")
    for i, m in enumerate(p.messages):
        if m.role not in _ROLES:
            raise InvalidArgument(f"parameters.messages[{i}].role", "must be system, user, assistant or tool")
        if m.role == pb.ROLE_TOOL and not m.tool_call_id:
            raise InvalidArgument(f"parameters.messages[{i}].tool_call_id", "is required for a tool result")
        if m.parts:
            _validate_parts(m, f"parameters.messages[{i}].parts")
    if len(p.tools) > MAX_TOOLS:
        raise InvalidArgument("parameters.tools", f"at most {MAX_TOOLS} tools")
    for i, tool in enumerate(p.tools):
        if not tool.name:
            raise InvalidArgument(f"parameters.tools[{i}].name", "is required")
        if tool.parameters_json:
            try:
                schema = json.loads(tool.parameters_json)
            except ValueError:
                raise InvalidArgument(f"parameters.tools[{i}].parameters_json", "is not valid JSON") from None
            if not isinstance(schema, dict):
                raise InvalidArgument(f"parameters.tools[{i}].parameters_json", "must be a JSON object")
    if p.HasField("temperature") and not 0 <= p.temperature <= 2:
        raise InvalidArgument("parameters.temperature", "must be between 0 and 2")
    if p.HasField("max_tokens") and not 1 <= p.max_tokens <= 1_000_000:
        raise InvalidArgument("parameters.max_tokens", "must be between 1 and 1000000")
    _validate_controls(p)
    if len(p.stop) > 16:
        raise InvalidArgument("parameters.stop", "at most 16 stop sequences")
    if len(p.request_id) > 128:
        raise InvalidArgument("parameters.request_id", "at most 128 characters")


def _validate_parts(m: pb.Message, where: str) -> None:
    if len(m.parts) > MAX_PARTS:
        raise InvalidArgument(where, f"at most {MAX_PARTS} parts")
    for j, part in enumerate(m.parts):
        kind = part.WhichOneof("part")
        field = f"{where}[{j}]"
        if kind is None:
            raise InvalidArgument(field, "must be one of text, image, document or reasoning")
        if kind in ("image", "document"):
            _validate_source(getattr(part, kind), f"{field}.{kind}", kind)
        elif kind == "reasoning":
            if m.role != pb.ROLE_ASSISTANT:
                raise InvalidArgument(f"{field}.reasoning", "is only for assistant messages (the model's own)")
            r = part.reasoning
            if r.redacted and (r.text or r.signature):
                raise InvalidArgument(f"{field}.reasoning", "redacted reasoning has no text or signature of its own")
            if not (r.text or r.signature or r.redacted):
                raise InvalidArgument(f"{field}.reasoning", "needs text, a signature or redacted data")


def _validate_source(source: pb.ImagePart | pb.DocumentPart, field: str, kind: str) -> None:
    """Exactly one of url and data; a media type with data; an https or data: URL (never a local or plain-http
    one: the provider fetches it, and the tenant's request must not point the provider at internal hosts)."""
    if bool(source.url) == bool(source.data):
        raise InvalidArgument(field, f"a {kind} needs exactly one of url and data")
    if source.media_type and not _MEDIA_TYPE.fullmatch(source.media_type):
        raise InvalidArgument(f"{field}.media_type", "must be a media type such as image/png")
    if source.data and not source.media_type:
        raise InvalidArgument(f"{field}.media_type", f"is required with inline {kind} data")
    if source.url:
        if len(source.url) > MAX_URL and not source.url.startswith("data:"):
            raise InvalidArgument(f"{field}.url", f"at most {MAX_URL} characters")
        if not source.url.startswith(("https://", "data:")):
            raise InvalidArgument(f"{field}.url", "must be an https:// or data: URL")
        if source.url.startswith("data:") and ";base64," not in source.url[:200]:
            raise InvalidArgument(f"{field}.url", "a data: URL must be base64 (data:<media type>;base64,…)")


def _validate_controls(p: pb.ChatParameters) -> None:
    """The v2 controls: reasoning, structured output, tool choice, sampling, provider options."""
    if p.HasField("reasoning"):
        r = p.reasoning
        if r.effort not in pb.ReasoningEffort.values():
            raise InvalidArgument("parameters.reasoning.effort", "is not a known effort level")
        if r.HasField("budget_tokens") and not 0 <= r.budget_tokens <= 1_000_000:
            raise InvalidArgument("parameters.reasoning.budget_tokens", "must be between 0 and 1000000")
    if p.HasField("response_format"):
        f = p.response_format
        if not _SCHEMA_NAME.fullmatch(f.name):
            raise InvalidArgument("parameters.response_format.name", "must be 1-64 letters, digits, _ or -")
        try:
            schema = json.loads(f.schema_json)
        except ValueError:
            raise InvalidArgument("parameters.response_format.schema_json", "is not valid JSON") from None
        if not isinstance(schema, dict):
            raise InvalidArgument("parameters.response_format.schema_json", "must be a JSON object")
    if p.HasField("tool_choice"):
        c = p.tool_choice
        if c.mode not in pb.ToolChoiceMode.values():
            raise InvalidArgument("parameters.tool_choice.mode", "is not a known mode")
        if c.mode == pb.TOOL_CHOICE_MODE_TOOL:
            if c.name not in {t.name for t in p.tools}:
                raise InvalidArgument("parameters.tool_choice.name", "must name one of parameters.tools")
        elif c.name:
            raise InvalidArgument("parameters.tool_choice.name", "is only for TOOL_CHOICE_MODE_TOOL")
        if c.mode in (pb.TOOL_CHOICE_MODE_REQUIRED, pb.TOOL_CHOICE_MODE_TOOL) and not p.tools:
            raise InvalidArgument("parameters.tool_choice", "requires tools")
    if p.HasField("top_p") and not 0 <= p.top_p <= 1:
        raise InvalidArgument("parameters.top_p", "must be between 0 and 1")
    for name in ("presence_penalty", "frequency_penalty"):
        if p.HasField(name) and not -2 <= getattr(p, name) <= 2:
            raise InvalidArgument(f"parameters.{name}", "must be between -2 and 2")
    if p.provider_options_json:
        try:  # checked here too, before a lease is asked for; the adapter merges them
            options.parse(p.provider_options_json)
        except RequestMappingError as exc:
            raise InvalidArgument(exc.field, str(exc)) from None
