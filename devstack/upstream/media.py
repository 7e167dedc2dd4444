"""Content parts in requests, checked as each provider checks them, and counted (`seen`) so answers can say what
arrived.

Each ``*_refusal`` walks a request's messages once and returns the provider's own error for the first part it would
refuse, or None. Plain string contents (the benchmark path) are skipped after one ``isinstance``.

- OpenAI Chat Completions (https://platform.openai.com/docs/api-reference/chat/create, ``messages[].content`` arrays):
  user parts ``text`` / ``image_url`` {url, detail auto|low|high|original} / ``input_audio`` / ``file`` {file_data
  (a ``data:application/pdf;base64,…`` URL), file_id, filename}; system, developer and tool messages take ``text``
  parts only, assistant messages ``text`` and ``refusal``. An image URL is ``http(s)://`` or a base64 ``data:`` URL
  of png/jpeg/gif/webp. Refusals carry OpenAI's messages ("Invalid image URL: … Expected a base64-encoded data URL
  with an image MIME type …", "Invalid file data: …", "Image URLs are only allowed for messages with role 'user'"),
  ``param`` the part's path and code ``invalid_value`` (``invalid_image_format`` for an image type it does not take).
- Mistral (https://docs.mistral.ai/api/, chat ``content`` chunks): ``text``, ``image_url`` (a string or {url}),
  ``document_url``, ``reference``, ``file`` {file_id}, ``thinking``, ``input_audio``; anything else is its 422.
- Anthropic Messages (https://docs.claude.com/en/api/messages): ``image`` blocks (source ``base64`` with media_type
  image/jpeg|png|gif|webp, ``url``, ``file``), ``document`` blocks (source ``base64`` application/pdf, ``text``
  text/plain, ``url``, ``content``, ``file``), ``tool_result`` content arrays (text/image/document/search_result),
  ``thinking`` blocks whose ``signature`` must be the one the stand-in gave that thinking (`frames.signature`: as the
  real API rejects edited thinking, "messages.N.content.M: Invalid `signature` in `thinking` block"; a missing one is
  "…thinking.signature: Field required"), and ``redacted_thinking`` blocks (opaque ``data``, accepted); a field a
  known block type does not define is "messages.N.content.M.<type>.<field>: Extra inputs are not permitted".
- Gemini (https://ai.google.dev/api/caching#Part): ``inlineData`` {mimeType, data: base64} (a bad base64 gets the
  proto parser's "Invalid value at '…' (TYPE_BYTES), Base64 decoding failed"), ``fileData`` {mimeType, fileUri},
  thought parts. Gemini 3 models (names starting ``gemini-3``) enforce thought signatures on function calls
  (https://ai.google.dev/gemini-api/docs/thought-signatures): in the current turn (the contents after the last user
  content with standard parts, i.e. not only functionResponse), the first ``functionCall`` part of each model step
  must carry its ``thoughtSignature``, else 400 INVALID_ARGUMENT "Function call is missing a thought_signature in
  functionCall parts. …"; a signature that is not the stand-in's own for that call (`call_signature`) is "Corrupted
  thought signature."; the documented dummy signatures (``skip_thought_signature_validator``,
  ``context_engineering_is_the_way_to_go``) pass.

Images and documents are counted over the whole request (`seen`); a generated answer then starts with `seen_note`.
Media bytes are checked as base64, not decoded as images (the fake does not sniff PNG or PDF headers).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from devstack.upstream.answers import (
    Response,
    _bad_request,
    _gemini_invalid,
    _mistral_invalid,
    _openai_invalid,
)
from devstack.upstream.wire import call_signature, proto_field, same_bytes, signature

OPENAI_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"})
OPENAI_PARTS_BY_ROLE = {
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "system": ("text",), "developer": ("text",), "tool": ("text",),
}
OPENAI_ALL_PARTS = ("text", "image_url", "input_audio", "refusal", "audio", "file")
MISTRAL_CHUNKS = ("text", "image_url", "document_url", "reference", "file", "thinking", "input_audio")
ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ANTHROPIC_SOURCES = {"image": ("base64", "url", "file"), "document": ("base64", "text", "url", "content", "file")}
# The fields of the content blocks Anthropic's request schema defines (its SDK's *BlockParam types); another field
# in one of these blocks is its 400 "messages.N.content.M.<type>.<field>: Extra inputs are not permitted".
ANTHROPIC_BLOCK_FIELDS = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control", "transformations"}),
    "document": frozenset({"type", "source", "title", "context", "citations", "cache_control"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller", "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control", "toolset_name"}),
    "search_result": frozenset({"type", "source", "title", "content", "citations", "cache_control"}),
}
GEMINI_DUMMY_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),(.*)", re.S)


def seen_note(images: int, documents: int) -> str:
    """What a generated answer says first when the request carried media, e.g. ``[saw 2 images, 1 document]``."""
    kinds = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((images, "image"), (documents, "document")) if n]
    return f"[saw {', '.join(kinds)}]" if kinds else ""


def _b64_ok(data: Any) -> bool:
    if not isinstance(data, str):
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        try:  # proto JSON's bytes also take the URL-safe alphabet
            base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            return False
        return re.fullmatch(r"[A-Za-z0-9_-]*=*", data) is not None
    return True


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a ``data:…;base64,…`` URL, or None when it is not one."""
    m = _DATA_URL.fullmatch(url)
    if m is None or ";base64" not in m.group(2):
        return None
    return m.group(1).lower(), m.group(3)


def _data_url_problem(url: str, accept: str) -> str:
    """Why ``url`` is not a base64 data URL of a media type starting with ``accept``, in OpenAI's words."""
    parsed = data_url(url)
    if parsed is None:
        return "a value without the 'data:' prefix" if not url.startswith("data:") else "an invalid data URL"
    media_type, payload = parsed
    if not media_type.startswith(accept):
        return f"unsupported MIME type '{media_type}'"
    if not payload:
        return "empty base64-encoded bytes"
    return "" if _b64_ok(payload) else "an invalid base64-encoded value"


# ---- OpenAI-compatible ----------------------------------------------------------------------------

def _openai_parts(payload: dict[str, Any]) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    """(message index, part index, role, part) for each content part of an OpenAI-shaped chat request."""
    for i, m in enumerate(payload.get("messages") or ()):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            role = m.get("role", "")
            for j, part in enumerate(content):
                yield i, j, role, part if isinstance(part, dict) else {}


def _openai_image(path: str, part: dict[str, Any]) -> Response | None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(image, dict) or not isinstance(url, str):
        return _openai_invalid(f"Missing required parameter: '{path}.image_url.url'.", f"{path}.image_url.url",
                               "missing_required_parameter")
    detail = image.get("detail", "auto")
    if detail not in ("auto", "low", "high", "original"):
        return _openai_invalid(f"Invalid value: '{detail}'. Supported values are: 'auto', 'low', 'high', and "
                               "'original'.", f"{path}.image_url.detail")
    if url.startswith(("https://", "http://")):
        return None
    media_type = (data_url(url) or ("", ""))[0]
    if media_type.startswith("image/") and media_type not in OPENAI_IMAGE_TYPES:
        return _openai_invalid("You uploaded an unsupported image. Please make sure your image has of one the "
                               "following formats: ['png', 'jpeg', 'gif', 'webp'].", None, "invalid_image_format")
    problem = _data_url_problem(url, "image/")
    if problem:
        return _openai_invalid(
            f"Invalid image URL: '{path}.image_url.url'. Expected a base64-encoded data URL with an image MIME type "
            f"(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got {problem}.", f"{path}.image_url.url")
    return None


def _openai_file(path: str, part: dict[str, Any]) -> Response | None:
    file = part.get("file")
    if not isinstance(file, dict) or not (file.get("file_data") or file.get("file_id")):
        return _openai_invalid(f"Missing required parameter: '{path}.file.file_data' (or '{path}.file.file_id').",
                               f"{path}.file", "missing_required_parameter")
    data = file.get("file_data")
    if data is None:
        return None
    problem = _data_url_problem(data, "application/pdf") if isinstance(data, str) else "a non-string value"
    if problem:
        return _openai_invalid(
            f"Invalid file data: '{path}.file.file_data'. Expected a base64-encoded data URL with an application/pdf "
            f"MIME type (e.g. 'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got {problem}.",
            f"{path}.file.file_data")
    return None


def _openai_part(i: int, j: int, role: str, part: dict[str, Any]) -> Response | None:
    """One part of an OpenAI message: its type allowed for the role, then its own fields."""
    path, kind = f"messages[{i}].content[{j}]", part.get("type")
    allowed = OPENAI_PARTS_BY_ROLE.get(role, OPENAI_ALL_PARTS)
    if kind in ("image_url", "file") and role != "user" and role in OPENAI_PARTS_BY_ROLE:
        what = "Image URLs" if kind == "image_url" else "Files"
        article = "an image URL" if kind == "image_url" else "a file"
        return _openai_invalid(f"Invalid 'messages[{i}]'. {what} are only allowed for messages with role 'user', "
                               f"but this message with role '{role}' contains {article}.", f"messages[{i}]")
    if kind not in allowed:
        names = ", ".join(f"'{a}'" for a in allowed[:-1]) + (", and " if len(allowed) > 2 else " and ")
        listed = f"'{allowed[0]}'" if len(allowed) == 1 else names + f"'{allowed[-1]}'"
        return _openai_invalid(f"Invalid value: '{kind}'. Supported values are: {listed}.", f"{path}.type")
    if kind == "text" and not isinstance(part.get("text"), str):
        return _openai_invalid(f"Missing required parameter: '{path}.text'.", f"{path}.text",
                               "missing_required_parameter")
    if kind == "image_url":
        return _openai_image(path, part)
    if kind == "file":
        return _openai_file(path, part)
    if kind == "input_audio" and not _b64_ok((part.get("input_audio") or {}).get("data")):
        return _openai_invalid(f"Invalid value for '{path}.input_audio.data': expected base64-encoded audio.",
                               f"{path}.input_audio.data")
    return None


def _mistral_part(i: int, j: int, role: str, part: dict[str, Any]) -> Response | None:
    """Mistral's chunk union: an unknown ``type`` tag is pydantic's union_tag_invalid; a file chunk needs file_id."""
    loc: list[Any] = ["messages", i, role, "content", "list", j]
    kind = part.get("type")
    if kind not in MISTRAL_CHUNKS:
        tags = ", ".join(f"'{t}'" for t in MISTRAL_CHUNKS)
        return _mistral_invalid("union_tag_invalid", loc, f"Input tag '{kind}' found using 'type' does not match any "
                                f"of the expected tags: {tags}", part)
    if kind == "file" and not isinstance(part.get("file_id"), str):
        return _mistral_invalid("missing", [*loc, "file", "file_id"], "Field required", part)
    return None


def openai_refusal(payload: dict[str, Any], provider: str) -> Response | None:
    """The first content part OpenAI (or, on its route, Mistral) would refuse, as that provider's error."""
    check = _mistral_part if provider == "mistral" else _openai_part
    for i, j, role, part in _openai_parts(payload):
        refused = check(i, j, role, part)
        if refused is not None:
            return refused
    return None


def _openai_seen(payload: dict[str, Any]) -> tuple[int, int]:
    images = documents = 0
    for _, _, _, part in _openai_parts(payload):
        kind = part.get("type")
        images += kind == "image_url"
        documents += kind in ("file", "document_url")
    return images, documents


# ---- Anthropic ------------------------------------------------------------------------------------

def _anthropic_blocks(payload: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, role, block) for each content block, tool_result contents included (Anthropic's dotted paths)."""
    for i, m in enumerate(payload.get("messages") or ()):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            block = block if isinstance(block, dict) else {}
            yield f"messages.{i}.content.{j}", m.get("role", ""), block
            inner = block.get("content") if block.get("type") == "tool_result" else None
            if isinstance(inner, list):
                for k, sub in enumerate(inner):
                    yield f"messages.{i}.content.{j}.tool_result.content.{k}", m.get("role", ""), \
                        sub if isinstance(sub, dict) else {}


def _anthropic_source(path: str, kind: str, block: dict[str, Any]) -> str:
    """What is wrong with an image or document block's source, as Anthropic words it ("" when nothing)."""
    source = block.get("source")
    stype = source.get("type") if isinstance(source, dict) else None
    tags = ANTHROPIC_SOURCES[kind]
    if stype not in tags:
        listed = ", ".join(f"'{t}'" for t in tags)
        return f"{path}.{kind}.source: Input tag '{stype}' found using 'type' does not match any of the expected " \
               f"tags: {listed}"
    assert isinstance(source, dict)
    at = f"{path}.{kind}.source.{stype}"
    if stype == "base64":
        accept = ANTHROPIC_IMAGE_TYPES if kind == "image" else ("application/pdf",)
        if source.get("media_type") not in accept:
            listed = " or ".join(", ".join(f"'{a}'" for a in accept).rsplit(", ", 1))
            return f"{at}.media_type: Input should be {listed}"
        if not _b64_ok(source.get("data")) or not source.get("data"):
            return f"{at}.data: The {kind} data is not valid base64."
    elif stype == "text" and (source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str)):
        return f"{at}.media_type: Input should be 'text/plain'"
    elif stype == "url" and not isinstance(source.get("url"), str):
        return f"{at}.url: Field required"
    elif stype == "file" and not isinstance(source.get("file_id"), str):
        return f"{at}.file_id: Field required"
    return ""


def _anthropic_block(path: str, block: dict[str, Any]) -> str:
    kind = block.get("type")
    known = ANTHROPIC_BLOCK_FIELDS.get(str(kind))  # block types the stand-in does not model are not checked
    extra = [k for k in block if k not in known] if known else []
    if extra:
        return f"{path}.{kind}.{extra[0]}: Extra inputs are not permitted"
    if kind in ANTHROPIC_SOURCES:
        return _anthropic_source(path, str(kind), block)
    if kind == "thinking":
        sig = block.get("signature")
        if not isinstance(sig, str):
            return f"{path}.thinking.signature: Field required"
        if not isinstance(block.get("thinking"), str) or sig != signature(block["thinking"]):
            return f"{path}: Invalid `signature` in `thinking` block"
    if kind == "redacted_thinking" and not isinstance(block.get("data"), str):
        return f"{path}.redacted_thinking.data: Field required"
    return ""


def anthropic_refusal(payload: dict[str, Any]) -> Response | None:
    """The first content block Anthropic would refuse, as its 400 invalid_request_error."""
    for path, _, block in _anthropic_blocks(payload):
        message = _anthropic_block(path, block)
        if message:
            return _bad_request("anthropic", message)
    return None


def _anthropic_seen(payload: dict[str, Any]) -> tuple[int, int]:
    images = documents = 0
    for _, _, block in _anthropic_blocks(payload):
        images += block.get("type") == "image"
        documents += block.get("type") == "document"
    return images, documents


# ---- Gemini ---------------------------------------------------------------------------------------

def _gemini_parts(payload: dict[str, Any]) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    for i, content in enumerate(payload.get("contents") or ()):
        if not isinstance(content, dict):
            continue
        for j, part in enumerate(content.get("parts") or ()):
            yield i, j, content.get("role", ""), part if isinstance(part, dict) else {}


def _media_kind(mime: Any, uri: Any = "") -> str:
    """"image", "document" or "" for a Gemini part's mimeType (or, without one, its URI's extension)."""
    mime = mime if isinstance(mime, str) else ""
    if not mime and isinstance(uri, str):
        mime = "application/pdf" if uri.lower().endswith(".pdf") else "image/" if re.search(
            r"\.(png|jpe?g|gif|webp|heic)$", uri.lower()) else ""
    if mime.startswith("image/"):
        return "image"
    return "document" if mime == "application/pdf" or mime.startswith("text/") else ""


def _gemini_part(i: int, j: int, part: dict[str, Any]) -> Response | None:
    at = f"contents[{i}].parts[{j}]"
    inline = proto_field(part, "inlineData")
    if isinstance(inline, dict):
        data = inline.get("data")
        if not isinstance(data, str) or not _b64_ok(data):
            shown = data if isinstance(data, str) and len(data) < 40 else "…"
            return _gemini_invalid(f"Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed "
                                   f"for \"{shown}\"", f"{at}.inline_data.data")
        if not proto_field(inline, "mimeType"):
            return _gemini_invalid(f"Unable to submit request because it has an empty inlineData.mimeType "
                                   f"(at {at}).")
    file = proto_field(part, "fileData")
    if isinstance(file, dict) and not proto_field(file, "fileUri"):
        return _gemini_invalid(f"Unable to submit request because it has an empty fileData.fileUri (at {at}).")
    return None


def _current_turn(contents: list[Any]) -> int:
    """Where Gemini's current turn starts: the last user content with a standard part (not only functionResponse)."""
    for i in range(len(contents) - 1, -1, -1):
        c = contents[i] if isinstance(contents[i], dict) else {}
        if c.get("role", "user") == "user" and any(
                isinstance(p, dict) and proto_field(p, "functionResponse") is None for p in c.get("parts") or ()):
            return i
    return 0


def _call_signatures(model: str, payload: dict[str, Any]) -> Response | None:
    """Gemini 3's thought-signature rule on function calls (see the module docstring)."""
    contents = payload.get("contents") or []
    start = _current_turn(contents)
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or () if isinstance(p, dict) and proto_field(p, "functionCall")]
        for n, part in enumerate(calls):
            sig, name = proto_field(part, "thoughtSignature"), (proto_field(part, "functionCall") or {}).get("name")
            if sig is None:
                if n == 0 and i > start:
                    return _gemini_invalid(
                        "Function call is missing a thought_signature in functionCall parts. This is required for "
                        "tools to work correctly, and missing thought_signature may lead to degraded model "
                        f"performance. Additional data, function call `default_api:{name}` , position {i + 1}. "
                        "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
            elif sig not in GEMINI_DUMMY_SIGNATURES and not same_bytes(sig, call_signature(str(name))):
                return _gemini_invalid("Corrupted thought signature.")
    return None


def gemini_refusal(model: str, payload: dict[str, Any]) -> Response | None:
    """The first part Gemini would refuse (bad inline bytes, empty file URI), then Gemini 3's signature rule."""
    for i, j, _, part in _gemini_parts(payload):
        refused = _gemini_part(i, j, part)
        if refused is not None:
            return refused
    return _call_signatures(model, payload) if model.startswith("gemini-3") else None


def _gemini_seen(payload: dict[str, Any]) -> tuple[int, int]:
    images = documents = 0
    for _, _, _, part in _gemini_parts(payload):
        inline, file = proto_field(part, "inlineData"), proto_field(part, "fileData")
        media = inline if isinstance(inline, dict) else file if isinstance(file, dict) else None
        if media is not None:
            kind = _media_kind(proto_field(media, "mimeType"), proto_field(media, "fileUri"))
            images += kind == "image"
            documents += kind == "document"
    return images, documents


def seen(family: str, payload: dict[str, Any]) -> tuple[int, int]:
    """How many images and documents the request carries (for `seen_note`)."""
    if family == "anthropic":
        return _anthropic_seen(payload)
    return _gemini_seen(payload) if family == "gemini" else _openai_seen(payload)
