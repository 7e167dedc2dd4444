"""The v2 corpus (`../shared/conformance-v2`, its README's "What reproduce means"): every recorded stream of the
three families this proxy speaks, cut at random byte offsets, decodes to the required fields of its
`expected.json` that the unified schema carries: model, the five usage counts ("not reported" kept apart from
0), and per choice text, refusal, reasoning, reasoning signatures, redacted reasoning, tool calls (id, name,
arguments, Gemini's thought signature) and the provider's finish reason.

Where the schema deliberately differs from the corpus's oracle, the comparison says so beside it:
- Gemini tool-call `id` null (the functionCall had none): the proxy names the call `call_<n>` (callers and the
  next turn's tool results need an id), so only a non-null expected id is compared.
- `input_tokens`/`output_tokens` expected null: the schema's two v1 counts cannot say "absent", so 0 stands for
  it (the README tolerates that); the three newer counts are optional and must be unset.
Informational fields (`extra_items`, `citations`, the SDK's parsed `input`, Gemini's `args` object and
`assembled_from_partial_args` flag) are not compared here: `input` and `args` are checked against the arguments
text where it is complete JSON, the others are outside what the schema carries yet.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate_v2, to_chat_response, usage_v2
from proxyservice.adapters import AdapterError, normalise_finish
from tests.unit.test_conformance import decode

ROOT = Path(__file__).resolve().parents[3] / "shared" / "conformance-v2"
FAMILIES = ("openai", "anthropic", "gemini")  # openai-responses and bedrock are other wire families
CASES = sorted(p for family in FAMILIES for p in (ROOT / family).glob("*.sse")) if ROOT.is_dir() else []
USAGE_KEYS = ("input_tokens", "output_tokens", "reasoning_tokens", "cached_input_tokens", "cache_write_input_tokens")
V1_COUNTS = ("input_tokens", "output_tokens")  # plain int64: 0 is how they say "not reported"

pytestmark = pytest.mark.skipif(not CASES, reason=f"the v2 conformance corpus is not at {ROOT}")


def expected(sse: Path) -> dict[str, Any]:
    return dict(json.loads(sse.with_name(sse.stem + ".expected.json").read_text()))


def splits(body: bytes, seed: str) -> list[list[int]]:
    """Cut points: none; inside every CRLF pair and every multi-byte UTF-8 character (the hard places, capped);
    one cut every len/1500 bytes; and four seeded random sets (a failure reproduces)."""
    rng = random.Random(seed)
    hard = [i for i in range(1, len(body)) if body[i - 1:i + 1] == b"\r\n" or 0x80 <= body[i] < 0xC0]
    out: list[list[int]] = [[], hard[:3000], list(range(0, len(body), max(1, len(body) // 1500)))]
    out += [[rng.randrange(len(body) + 1) for _ in range(rng.randint(1, 80))] for _ in range(4)]
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:160] + "…"


def _usage_mismatches(got: dict[str, Any] | None, exp: dict[str, Any] | None, family: str) -> list[str]:
    if exp is None or got is None:
        return [] if exp is got else [f"usage: got {got}, expected {exp}"]
    want = dict(exp)
    out = []
    for key in USAGE_KEYS:
        value = want[key]
        if value is None and key in V1_COUNTS:
            value = 0
        if got[key] != value:
            out.append(f"usage.{key}: got {got[key]!r}, expected {want[key]!r}")
    return out


def _arguments_match(got: str, exp: dict[str, Any], family: str) -> bool:
    if family != "gemini":
        return got == exp["arguments"]  # exactly as sent
    return bool(json.loads(got) == json.loads(exp["arguments"]))  # Gemini sends an object: compared as one


def _call_mismatches(i: int, got: dict[str, Any], exp: dict[str, Any], family: str) -> list[str]:
    out = []
    if exp["id"] is not None and got["id"] != exp["id"]:
        out.append(f"tool_calls[{i}].id: got {got['id']!r}, expected {exp['id']!r}")
    if got["name"] != exp["name"]:
        out.append(f"tool_calls[{i}].name: got {got['name']!r}, expected {exp['name']!r}")
    if not _arguments_match(got["arguments"], exp, family):
        out.append(f"tool_calls[{i}].arguments: got {_short(got['arguments'])}, expected {_short(exp['arguments'])}")
    if family == "gemini" and got["signature"] != exp["thought_signature"]:
        out.append(f"tool_calls[{i}].thought_signature: got {_short(got['signature'])}, "
                   f"expected {_short(exp['thought_signature'])}")
    return out


CHOICE_FIELDS = ("text", "refusal", "reasoning", "reasoning_signatures", "redacted_reasoning", "finish_reason")


def _choice_mismatches(got: dict[str, Any], exp: dict[str, Any], family: str) -> list[str]:
    out = [f"choices[{exp['index']}].{key}: got {_short(got[key])}, expected {_short(exp[key])}"
           for key in CHOICE_FIELDS if got[key] != exp[key]]
    if len(got["tool_calls"]) != len(exp["tool_calls"]):
        return [*out, f"tool_calls: got {_short(got['tool_calls'])}, expected {_short(exp['tool_calls'])}"]
    for i, (g, e) in enumerate(zip(got["tool_calls"], exp["tool_calls"], strict=True)):
        out += _call_mismatches(i, g, e, family)
    return out


def mismatches(got: dict[str, Any], exp: dict[str, Any], family: str) -> list[str]:
    """Every required field of `exp` that `got` does not reproduce, described (empty: reproduced)."""
    out = [] if got["model"] == (exp["model"] or "") else [f"model: got {got['model']!r}, expected {exp['model']!r}"]
    out += _usage_mismatches(got["usage"], exp["usage"], family)
    got_choices = {c["index"]: c for c in got["choices"]}
    exp_choices = {c["index"]: c for c in exp["choices"]}
    if sorted(got_choices) != sorted(exp_choices):
        return [*out, f"choice indexes: got {sorted(got_choices)}, expected {sorted(exp_choices)}"]
    for index, exp_choice in exp_choices.items():
        out += _choice_mismatches(got_choices[index], exp_choice, family)
    return out


def check_informational(exp: dict[str, Any]) -> None:
    """The oracle's parsed objects agree with its arguments text where that text is complete JSON."""
    for choice in exp["choices"]:
        for call in choice["tool_calls"]:
            parsed = call.get("input", call.get("args"))
            if parsed is None or not call["arguments"]:
                continue
            try:
                assert json.loads(call["arguments"]) == parsed
            except json.JSONDecodeError:
                pass  # truncated by max_tokens: only the SDK's partial parse exists


@pytest.mark.parametrize("sse", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case(sse: Path) -> None:
    family = sse.parent.name
    body = sse.read_bytes()
    exp = expected(sse)
    check_informational(exp)
    if exp["error"] is not None:
        with pytest.raises(AdapterError):
            decode(family, body, [])
        return
    for cuts in splits(body, sse.stem):
        responses = decode(family, body, cuts)
        assert mismatches(accumulate_v2(responses, family), exp, family) == [], cuts
        for r in responses:  # nothing empty is sent; a normalised reason rides beside the provider's own
            assert r.choices or r.model or r.HasField("usage")
            for c in r.choices:
                if c.provider_finish_reason and family != "gemini":  # Gemini: STOP with calls is TOOL_CALLS
                    assert c.finish_reason == normalise_finish(c.provider_finish_reason)


@pytest.mark.parametrize("sse", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_unary_fold_carries_the_same_fields(sse: Path) -> None:
    """A stream folded into the unary ChatResponse keeps reasoning, signatures and usage as the stream had them."""
    family = sse.parent.name
    exp = expected(sse)
    if exp["error"] is not None:
        pytest.skip("an error case has no whole answer")
    responses = decode(family, sse.read_bytes(), [])
    whole = to_chat_response(responses, family)
    folded = accumulate_v2(responses, family)
    assert whole.model == folded["model"]
    assert usage_v2(whole.usage if whole.HasField("usage") else None) == folded["usage"]
    for choice, want in zip(whole.choices, folded["choices"], strict=True):
        assert (choice.text, choice.reasoning) == (want["text"], want["reasoning"])
        assert list(choice.reasoning_signatures) == want["reasoning_signatures"]
        assert list(choice.redacted_reasoning) == want["redacted_reasoning"]
        assert [(c.id, c.name, c.arguments, c.signature or None) for c in choice.tool_calls] == [
            (c["id"], c["name"], c["arguments"], c["signature"]) for c in want["tool_calls"]]


def test_corpus_has_the_three_families() -> None:
    assert {p.parent.name for p in CASES} == set(FAMILIES)
    for p in CASES:
        assert p.with_name(p.stem + ".expected.json").is_file()


def test_byte_at_a_time_for_one_case_per_family() -> None:
    for family, name in (("openai", "mistral-issue-13703-thinking"), ("anthropic", "anthropic-clear-thinking.1"),
                         ("gemini", "vertex-stream-no-args-tool-call")):
        sse = ROOT / family / f"{name}.sse"
        body = sse.read_bytes()
        got = accumulate_v2(decode(family, body, list(range(len(body)))), family)
        assert mismatches(got, expected(sse), family) == []


def test_a_signature_keeps_its_own_delta() -> None:
    """Gemini: each thoughtSignature arrives in a ChoiceDelta with (only) the part that carried it."""
    sse = ROOT / "gemini" / "gemini-issue-10781.1.sse"
    deltas: list[pb.ChoiceDelta] = [c for r in decode("gemini", sse.read_bytes(), []) for c in r.choices]
    signed = [c for c in deltas if c.reasoning_signature]
    assert len(signed) == 1 and signed[0].tool_calls[0].signature == signed[0].reasoning_signature
    assert signed[0].tool_calls[0].name == "get_weather" and not signed[0].text
