"""Reading the agent's `/run_sse` events: pure functions, no I/O.

Both framings are accepted: Google ADK `Event` JSON (what NemoVideo runs) and NemoVideo's older
`{"type": ...}` events. Keep-alives in every known form count as activity and nothing more.

With token streaming, ADK sends a reply as `"partial": true` deltas and then once more whole with
`"partial": false`: the deltas are "partial" events (shown live, never kept), the whole one is the
"text" that counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.texts import sendable

EventKind = Literal["text", "partial", "tool", "keepalive", "error", "state"]


@dataclass(frozen=True)
class AgentEvent:
    kind: EventKind
    text: str = ""


KEEPALIVE = AgentEvent("keepalive")
TOOL = AgentEvent("tool")


def parse_event(data: str) -> AgentEvent | None:
    """One SSE `data:` payload as an AgentEvent; None for lines that carry nothing usable."""
    data = data.strip()
    if not data:
        return KEEPALIVE
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder's stack
        return None  # older servers send unescaped error lines: skipped, not fatal
    if not isinstance(body, dict):
        return None
    if "type" in body and not isinstance(body.get("content"), dict):
        return _legacy(body)
    if body.get("errorCode") or body.get("errorMessage"):
        return AgentEvent("error", _error_text(body.get("errorMessage"), body.get("errorCode")))
    if "error" in body:
        return AgentEvent("error", _error_text(body.get("error"), None))
    return _adk(body)


def _legacy(body: dict[str, Any]) -> AgentEvent | None:
    kind = body.get("type")
    if kind == "text":
        content = body.get("content")
        return AgentEvent("text", _clean(content)) if isinstance(content, str) and content.strip() else None
    if kind in ("tool_call", "tool_result"):
        return TOOL
    if kind in ("heartbeat", "ping", "keepalive"):
        return KEEPALIVE
    if kind == "error":
        return AgentEvent("error", _error_text(body.get("message") or body.get("content"), None))
    return None


def _adk(body: dict[str, Any]) -> AgentEvent | None:
    content = body.get("content")
    content = content if isinstance(content, dict) else {}
    parts = content.get("parts")
    if not isinstance(parts, list):
        actions = body.get("actions")
        has_delta = isinstance(actions, dict) and bool(actions.get("stateDelta"))
        return AgentEvent("state") if has_delta else None
    if any(isinstance(p, dict) and ("functionCall" in p or "functionResponse" in p) for p in parts):
        return TOOL
    if content.get("role") != "model":
        return None
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and p.get("thought") is not True
    ]
    text = "".join(texts)
    if body.get("partial") is True:  # a streamed delta: its spaces and line breaks count
        return AgentEvent("partial", _clean(text)) if text else None
    return AgentEvent("text", _clean(text)) if text.strip() else None


def _error_text(message: object, code: object) -> str:
    text = message if isinstance(message, str) and message else ""
    if not text and isinstance(code, str):
        text = code
    return _clean(text[:500]) or "unknown error"


def _clean(text: str) -> str:
    return sendable(text)
