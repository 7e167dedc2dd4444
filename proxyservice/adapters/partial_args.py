"""Vertex AI's streamed function-call arguments, put back together into the ``args`` object.

With ``streamFunctionCallArguments`` a Gemini model on Vertex AI streams one call over several parts: a
``functionCall`` part with the ``name`` (and ``willContinue: true``) opens it, parts whose ``functionCall`` holds
``partialArgs`` write values into the arguments, and a ``functionCall`` part without ``willContinue`` closes it.
Each partial argument names where its value goes with a JSONPath (``$.recipe.steps[0]``) and carries one of
``stringValue`` (fragments of one string: consecutive ones for the same path are concatenated), ``numberValue``,
``boolValue`` or ``nullValue``. The unified schema carries arguments as JSON text, so the decoder assembles the
object here and sends its compact JSON when the call closes.

A path this module cannot read, or one that contradicts what is already there (an index into an object), is
skipped rather than fatal: a provider's odd fragment must not end the stream.
"""

from __future__ import annotations

import re
from typing import Any

# One step of a JSONPath: .name, [3] or ['name'] / ["name"].
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[(?:'([^']*)'|\"([^\"]*)\")\]")

Key = str | int


def parse_path(json_path: str) -> list[Key] | None:
    """The steps of ``json_path`` below the root, or None when it is not a path this module reads."""
    if not json_path.startswith("$"):
        return None
    steps: list[Key] = []
    pos = 1
    while pos < len(json_path):
        m = _STEP.match(json_path, pos)
        if m is None:
            return None
        name, number, single, double = m.groups()
        steps.append(int(number) if number is not None else next(s for s in (name, single, double) if s is not None))
        pos = m.end()
    return steps or None


def _child(node: Any, key: Key) -> Any:
    if isinstance(node, dict) and isinstance(key, str):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _put(node: Any, key: Key, value: Any) -> bool:
    if isinstance(node, dict) and isinstance(key, str):
        node[key] = value
        return True
    if isinstance(node, list) and isinstance(key, int):
        node.extend([None] * (key + 1 - len(node)))
        node[key] = value
        return True
    return False


def _value(arg: dict[str, Any]) -> tuple[bool, Any]:
    """(found, value) of one partial argument; strings are fragments, the other kinds whole values."""
    if isinstance(arg.get("stringValue"), str):
        return True, arg["stringValue"]
    for key in ("numberValue", "boolValue"):
        if key in arg:
            return True, arg[key]
    if "nullValue" in arg:
        return True, None
    return False, None


def write(args: dict[str, Any], arg: Any) -> None:
    """Apply one ``partialArgs`` entry to ``args`` in place."""
    if not isinstance(arg, dict) or not isinstance(arg.get("jsonPath"), str):
        return
    steps = parse_path(arg["jsonPath"])
    found, value = _value(arg)
    if steps is None or not found:
        return
    node: Any = args
    for key, following in zip(steps, steps[1:], strict=False):
        child = _child(node, key)
        if not isinstance(child, dict | list):
            child = [] if isinstance(following, int) else {}
            if not _put(node, key, child):
                return
        node = child
    last = steps[-1]
    previous = _child(node, last)
    if isinstance(value, str) and isinstance(previous, str):
        value = previous + value
    _put(node, last, value)


class OpenCall:
    """A call whose arguments are still streaming: its tool-call index and the arguments so far."""

    __slots__ = ("index", "args")

    def __init__(self, index: int) -> None:
        self.index = index
        self.args: dict[str, Any] = {}

    def apply(self, function_call: dict[str, Any]) -> None:
        """Take one functionCall part's ``args`` (merged) and ``partialArgs`` (written in order)."""
        if isinstance(function_call.get("args"), dict):
            self.args.update(function_call["args"])
        for arg in function_call.get("partialArgs") or ():
            write(self.args, arg)
