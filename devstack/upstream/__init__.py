"""A local fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats on one port.

Used by tests, ``make run`` and benchmarks (thousands of slow concurrent streams), so it is raw
asyncio + h11 (HTTP/1.1 with keep-alive; streamed bodies use chunked transfer encoding).

Endpoints (``base_url`` = ``http://127.0.0.1:PORT``):
- OpenAI    ``POST /v1/chat/completions`` (stream or not), ``POST /v1/responses`` (the Responses API, stream or
            not: see `responses_api`), ``POST /v1/embeddings`` (see `embeddings`), ``GET /v1/models`` (Bearer auth)
- Mistral   the same under ``/mistral/v1`` (``mistral_base``), validated as strictly as Mistral does: a body
            field Mistral does not know (``stream_options`` above all) gets its 422 ``extra_forbidden``
            answer, and streams carry ``usage`` on the finishing chunk unasked, as Mistral's do
- Anthropic ``POST /v1/messages`` (stream or not), ``GET /v1/models`` (``x-api-key`` or Bearer auth)
- Gemini    ``POST /v1beta/models/{m}:streamGenerateContent?alt=sse`` (without ``alt=sse``: one JSON array, as
            Gemini sends), ``POST /v1beta/models/{m}:generateContent``, ``:embedContent``, ``:batchEmbedContents``,
            ``GET /v1beta/models`` (``x-goog-api-key`` auth; a ``key=`` query parameter is refused with 400,
            because the proxy must never put a key in a URL). Body fields are read in lowerCamel or snake_case,
            as Google's proto JSON parser accepts both (google-genai sends ``thinking_config.include_thoughts``).
``GET /v1/models`` is answered in Anthropic's shape when the request carries ``x-api-key`` or
``anthropic-version``. Anthropic also accepts ``Authorization: Bearer`` (recent official SDKs send it).

Auth: ``UpstreamConfig.keys[family]`` lists accepted keys; an empty set (or a family absent from the
dict) accepts any non-empty key. A missing or wrong key gets the provider's own answer: 401 with its error
JSON for OpenAI and Anthropic; for Gemini, as Google does, 400 ``INVALID_ARGUMENT`` "API key not valid" with
an ``ErrorInfo`` detail of reason ``API_KEY_INVALID`` for a wrong key, and 403 ``PERMISSION_DENIED`` for none.
Each ``RecordedRequest`` says which header carried the key (``key_header``), whether the key (or a ``key=``
parameter) was in the URL (``key_in_url``), and the status answered, so tests can check where keys travel
even though recorded header values are redacted.

The model name steers the response (so the proxy needs no special channel):
- any ordinary name: ``frames`` text deltas, ``WORDS[i % len(WORDS)]`` each with a leading space
  after the first (see ``generated_text``), paced by ``frame_delay``, then the finish reason and usage
  (input tokens = total characters of the request's messages // 4 + 1, output tokens = frames). When
  the request's max tokens is below ``frames``, only that many frames are sent and the finish is the
  provider's "length" reason.
- ``replay:<family>/<case>`` serves ``<replay_dir>/<family>/<case>.sse`` byte-exactly (streaming only).
- ``fault:429`` (with ``retry-after: 7``), ``fault:500``, ``fault:stall`` (headers + one frame, then
  nothing until the client goes), ``fault:reset`` (headers + one frame, then the socket is aborted),
  ``fault:malformed`` (a frame of broken JSON, then a normal end), ``fault:truncate`` (the first half of
  the frames, then a clean end of the body: no finish reason, no ``[DONE]`` / ``message_stop``),
  ``fault:echo-key`` (a 400 whose error message repeats the key received, as some providers do) and
  ``fault:echo-key-stream`` (one frame, then the provider's in-stream error event repeating the key): leak
  canaries for what the proxy does with provider text.
- a ``?k=v&k=v`` suffix overrides per request: ``frames=N``, ``delay=SECONDS``, ``chunk=N``
  (0 = one piece per frame, -1 = random pieces), ``tool=1`` (after the text, call the request's first
  tool with arguments ``{"n":1}`` sent as two fragments, finishing with the provider's tool-call
  reason), ``thoughts=N`` (thinking frames, default 3), ``cached=N`` (input tokens reported as read from the
  prompt cache, on top of the uncached input), ``cache_write=N`` (Anthropic's cache_creation_input_tokens),
  ``cite=1`` (the answer carries citations in the provider's form: OpenAI ``annotations`` of url_citation on the
  message and as a delta of their own, and on the Responses API's output_text; Anthropic a ``citations_delta``
  opening the text block, a char_location / page_location into the request's first document, else a
  web_search_result_location; Gemini ``groundingMetadata`` on the last candidate chunk: see `citations`),
  ``fallback=<model>`` (Anthropic: after half the text, a ``fallback`` content block from the requested model to
  <model>, a bare start/stop pair, then the text goes on in a new block; usage ``iterations`` end with a
  ``fallback_message`` entry and a whole answer is labelled with <model>), ``modelversion=<v>`` (Gemini: the chunks
  from the middle of the text on report ``modelVersion`` <v>). E.g. ``gpt-4o?frames=64&delay=0.02``.

Beyond ``tool=1``, the answer calls a tool when the request forces one: ``tool_choice`` ``"required"`` or a named
function (OpenAI), ``{"type": "any"}`` / ``{"type": "tool", "name": …}`` (Anthropic), ``functionCallingConfig``
mode ``ANY`` with ``allowedFunctionNames`` (Gemini); the Responses API calls the first function tool whenever the
request has tools (see `responses_api`). Usage carries the providers' detail fields: OpenAI
``prompt_tokens_details.cached_tokens`` / ``completion_tokens_details.reasoning_tokens`` (not on Mistral's route),
Anthropic ``cache_read_input_tokens`` / ``cache_creation_input_tokens``, Gemini ``cachedContentTokenCount`` /
``thoughtsTokenCount``.

Tool choice "none" (OpenAI), ``{"type": "none"}`` (Anthropic) and Gemini's mode ``NONE`` call no tool, even with
``tool=1``.

Requests are checked as the providers check them before answering (`checks`, `media`), each refusal in the
provider's own error shape: content parts (OpenAI ``image_url`` / ``file`` / ``input_audio`` parts, tool and system
messages text-only; Mistral's chunk union; Anthropic ``image`` / ``document`` blocks and ``tool_result`` arrays;
Gemini ``inlineData`` base64 and ``fileData``), thinking handed back (an Anthropic ``thinking`` block's
``signature`` must be the one the stand-in gave that text; ``redacted_thinking`` passes), Gemini 3's function-call
thought signatures (in the current turn, a model step's first ``functionCall`` must carry the signature the
stand-in gave it, `call_signature`, which Gemini 3 answers put on every call they make), structured outputs
(OpenAI's strict-schema rules), Anthropic's strict body ("<field>: Extra inputs are not permitted": ``seed`` and
the penalties are not Anthropic fields) and its thinking/sampling rules, Gemini's unknown generationConfig fields
and thinkingLevel rules. A generated answer to a request with images or documents starts with `seen_note`
("[saw 2 images, 1 document]") before the words, so a test can tell the parts arrived; a structured request
(OpenAI ``response_format`` json_schema / json_object and the Responses API's ``text.format``, Anthropic
``output_config.format`` or the beta ``output_format``, Gemini ``responseMimeType: application/json`` with
``responseSchema`` / ``responseJsonSchema``) gets a JSON document valid against the schema instead
(`structured.instance`), cut into ``frames`` fragments that stream like text.

Thinking (`generated_thinking`, signed with `signature`): Anthropic's ``thinking: {type: enabled, budget_tokens}``
(checked as Anthropic does: 1024 <= budget < max_tokens, no forced tool, else its 400; ``adaptive`` thinks too, and
with ``display: omitted`` the block has no text, only its signature) streams a ``thinking`` block
(``thinking_delta`` events, then a ``signature_delta``) before the text, and a whole answer starts with a
``thinking`` block carrying its ``signature``; Gemini's ``thinkingConfig.includeThoughts`` sends ``"thought": true``
parts before the text, the last with a ``thoughtSignature`` (a ``thinkingBudget`` of 0 thinks not); OpenAI's
``reasoning_effort`` / ``reasoning.effort`` only counts reasoning tokens (and adds a ``reasoning`` item to a
Responses API answer). Thinking counts as output.
  Gemini model names are URL path segments, so send them percent-encoded (the proxy's adapter does).

Bodies are written in ``chunk_size``-byte pieces when set (``-1`` = random 1..64 byte pieces), else
one piece per frame. Client disconnects are noticed while streaming (the socket is watched, not just
written to) and recorded in ``closed_early`` with the ``time.monotonic()`` of the notice.

Run alone: ``python -m devstack.upstream --port 0 --print-port`` (serves until SIGINT/SIGTERM).

Modules: `server` (the HTTP server, routing, steering), `frames` (what streams), `responses_api` (the Responses
API's answers), `embeddings`, `checks` (request validation), `media` (content parts: checks and counts),
`structured` (schemas and their instances), `citations` (citations and the fallback block), `wire` (signatures,
proto JSON names), `answers` (provider-shaped responses and errors).
"""

from __future__ import annotations

from devstack.upstream.answers import Response
from devstack.upstream.embeddings import embedding
from devstack.upstream.frames import WORDS, generated_text, generated_thinking
from devstack.upstream.media import seen_note
from devstack.upstream.server import DEFAULT_REPLAY_DIR, FakeUpstream, RecordedRequest, UpstreamConfig, main
from devstack.upstream.wire import call_signature, signature

__all__ = ["DEFAULT_REPLAY_DIR", "WORDS", "FakeUpstream", "RecordedRequest", "Response", "UpstreamConfig",
           "call_signature", "embedding", "generated_text", "generated_thinking", "seen_note", "signature", "main"]
