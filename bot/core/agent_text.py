"""Turning the agent's text into chat messages: GUI talk into chat terms, escaping, splitting.

The agent was built for a web editor and says "click Export" or "drag the clip"; here those become
what the user can do in a chat, plus inline buttons that do it. Pure functions only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.actions import QUICK_ACTIONS, Action
from bot.core.texts import Lang, say

TELEGRAM_LIMIT = 4096


Replacement = Callable[[re.Match[str], Lang], str]


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    replace: Replacement
    button: str | None


def _fixed(key: str) -> Replacement:
    return lambda _match, lang: say(lang, key)


RULES: tuple[Rule, ...] = (
    Rule(
        re.compile(
            r"(?:click|tap|press|hit|use|select)(?: on)? (?:the )?[\"'“]?export[\"'”]?(?: button| option)?"
            r"|(?:the )?[\"'“]?export[\"'”]? button",
            re.IGNORECASE,
        ),
        _fixed("gui_export"),
        Action.EXPORT,
    ),
    Rule(
        re.compile(r"(?:点击|点)\s*[“\"]?导出[”\"]?(?:按钮)?|导出按钮"), _fixed("gui_export"), Action.EXPORT
    ),
    Rule(
        re.compile(
            r"preview (?:it |the video |your video )?(?:in|on) the timeline"
            r"|(?:open|check|look at|go to) (?:the )?(?:[\w-]+ )?(?:panel|tab|sidebar|inspector|timeline view)",
            re.IGNORECASE,
        ),
        _fixed("gui_timeline"),
        Action.TIMELINE,
    ),
    Rule(
        re.compile(r"在时间线(?:中|上)?预览|打开\S{0,8}?(?:面板|窗口|标签页)"),
        _fixed("gui_timeline"),
        Action.TIMELINE,
    ),
    Rule(
        re.compile(r"\bdrag(?:ging)?(?:\s*(?:and|&|/|-and-)\s*drop(?:ping)?)?\b", re.IGNORECASE),
        _fixed("gui_drag"),
        None,
    ),
    Rule(re.compile(r"拖拽|拖动"), _fixed("gui_drag"), None),
    Rule(
        re.compile(
            r"(?:click|tap|press)(?: on)? (?:the )?[\"'“]([\w ]{1,30})[\"'”](?: button)?", re.IGNORECASE
        ),
        lambda match, lang: say(lang, "gui_action", action=match.group(1).strip().lower()),
        None,
    ),
)


@dataclass(frozen=True)
class ChatText:
    html: str  # escaped, ready for parse_mode=HTML
    buttons: tuple[str, ...]  # Action.EXPORT / Action.TIMELINE actions to offer below the message


def to_chat(text: str, lang: Lang) -> ChatText:
    """Escape the agent's text and rephrase GUI instructions, collecting the buttons they imply."""
    buttons: list[str] = []
    pieces: list[tuple[int, int, str]] = []  # (start, end, replacement html) over the raw text
    for rule in RULES:
        for match in rule.pattern.finditer(text):
            if any(start < match.end() and match.start() < end for start, end, _ in pieces):
                continue
            pieces.append((match.start(), match.end(), rule.replace(match, lang)))
            if rule.button and rule.button not in buttons:
                buttons.append(rule.button)
    out, cursor = [], 0
    for start, end, replacement in sorted(pieces):
        out.append(html.escape(text[cursor:start]))
        out.append(replacement)
        cursor = end
    out.append(html.escape(text[cursor:]))
    return ChatText("".join(out), tuple(buttons))


TEMPORARY_ISSUE = re.compile(
    r"\s*(i(?:'ve| have)? encountered an? temporary issue|我遇到了(?:一个)?临时问题)", re.IGNORECASE
)


def temporary_issue(text: str) -> bool:
    """Whether a reply is the agent's "I encountered a temporary issue…" (pure), which the skill
    says to ignore when it trails normal replies."""
    return TEMPORARY_ISSUE.match(text) is not None


def reply_actions(buttons: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The buttons under a turn's last reply: those its words called for (Export, Timeline), then
    the quick actions, each once."""
    return tuple(dict.fromkeys((*QUICK_ACTIONS[:3], *buttons, *QUICK_ACTIONS[3:])))


def split_html(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split a message's HTML (escaped text, and tags such as `<b>` or `<a href>`) into messages of
    at most `limit` characters.

    Each cut is at the last paragraph break in the second half of the allowance, else the last line
    break there, else the last space, else at the limit; then moved back if it would fall inside an
    `&entity;` or a tag.
    """
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = next(
            (at for at in (window.rfind(mark) for mark in ("\n\n", "\n", " ")) if at >= limit // 2), limit
        )
        for opener, closer in (("&", ";"), ("<", ">")):  # never inside an entity or a tag
            start = window.rfind(opener, 0, cut)
            if start > 0 and closer not in window[start:cut]:
                cut = start
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks
