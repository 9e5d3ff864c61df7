"""Intent routing for plain-text messages, in English and Chinese: pure functions.

Only short, command-like messages are routed to a fixed action; anything longer, or negated
("don't export yet"), is a chat turn for the agent, which understands nuance far better than a
keyword table. This keeps "make a video about how to download apps" away from the export flow.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from urllib.parse import urlsplit


class Intent(StrEnum):
    EXPORT = "export"
    RESEND = "resend"  # the last video again ("send it again"), by its Telegram file id
    CREDITS = "credits"
    STATUS = "status"
    UPLOAD = "upload"
    LINKS = "links"
    CHAT = "chat"


MAX_WORDS = 8
MAX_CJK_CHARS = 12
URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
HOST = re.compile(r"[\w-]+(\.[\w-]+)+|localhost|\[[0-9a-f:]+\]", re.IGNORECASE)
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
EDGE_PUNCTUATION = " \t\n.,!?;:~…。！？，、；：～\"'“”‘’()（）[]【】*_`-—"
NEGATION = re.compile(r"^(don'?t|do not|never|not yet|no|stop)\b|^(别|不要|先不|不用|暂时不)")

# Whole-message patterns: a word like "export" or "credits" inside a longer request ("export without
# music", "roll the credits at the end") is a request for the agent, not a button press.
POLITE = r"((ok|okay|now|please|pls|then|go|let'?s|can you|could you|hey) )*"
SUFFIX = r"(( (it|this|that|the|my|a|video|mp4|movie|clip|file|1080p|hd|full|final|high|quality|now|please|pls|in|as))*)"
EXPORT_START = re.compile(rf"^{POLITE}(export|download|render){SUFFIX}$")
EXPORT_PHRASE = re.compile(
    rf"^{POLITE}(send|give|get) (me )?(the |my )?(final )?(video|mp4|movie|clip|file|result)( please| now)?$"
)
RESEND_WORDS = re.compile(
    rf"^{POLITE}(re-?send|send|give|share)( me)?( (it|this|that|the|my|video|mp4|movie|clip|file|last|one))*"
    r" (again|once more|one more time)( please| pls)?$"
    rf"|^{POLITE}re-?send( (it|this|that|the|my|video|mp4|movie|clip|file|last|one))*( please| pls)?$"
)
CREDITS_WORDS = re.compile(
    r"^((show|check|see|get|view)( me)? |what'?s |what is |how many )?((my|the) )?(credits?|balance)"
    r"( (left|remaining|please|do i have|do i have left|have i got))?$"
)
STATUS_WORDS = re.compile(
    r"^((show|see|view|check|get|what'?s|what is)( me)? )?((the|my|current) )*(status|tracks|timeline|progress)\b"
)
EDIT_VERBS = re.compile(
    r"^(add|make|put|create|remove|delete|change|insert|generate|use|set|replace|cut|trim|move|turn)\b"
)
UPLOAD_WORDS = re.compile(r"^(upload|how (do|can) i upload|upload (a |my )?(file|files|photo|video|media))$")

CJK_RULES: tuple[tuple[Intent, tuple[str, ...]], ...] = (
    (Intent.RESEND, ("再发一次", "再发一遍", "把视频再发给我", "重新发送", "重发")),
    (Intent.EXPORT, ("导出", "下载", "把视频发给我", "发给我视频")),
    (Intent.CREDITS, ("积分", "余额")),
    (Intent.STATUS, ("状态", "时间线", "轨道")),
    (Intent.UPLOAD, ("上传",)),
)


def normalize(text: str) -> str:
    """Lower-cased NFKC text with collapsed spaces and no punctuation at either end."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return " ".join(text.lower().split()).strip(EDGE_PUNCTUATION)


def links_in(text: str) -> list[str]:
    """The URLs of a message that is nothing but links (optionally after "upload" / "上传")."""
    urls = URL.findall(text)
    rest = normalize(URL.sub(" ", text))
    urls = [url.rstrip(".,;)!?]}") for url in urls]
    if urls and rest in ("", "upload", "上传", "upload these", "upload this") and all(map(_has_host, urls)):
        return urls
    return []


def _has_host(url: str) -> bool:
    """A link to somewhere: `http://.` or `https://` alone is not one."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # e.g. "https://[" (an unclosed IPv6 literal)
        return False
    return bool(HOST.fullmatch(host))


def route(text: str) -> Intent:
    """The action a text message asks for."""
    if links_in(text):
        return Intent.LINKS
    norm = normalize(text)
    if not norm or NEGATION.search(norm) or len(norm.split()) > MAX_WORDS:
        return Intent.CHAT
    if CJK.search(norm):
        return _route_cjk(norm)
    if EDIT_VERBS.search(norm):
        return Intent.CHAT
    if RESEND_WORDS.search(norm):
        return Intent.RESEND
    if EXPORT_START.search(norm) or EXPORT_PHRASE.search(norm):
        return Intent.EXPORT
    if CREDITS_WORDS.search(norm):
        return Intent.CREDITS
    if STATUS_WORDS.search(norm):
        return Intent.STATUS
    if UPLOAD_WORDS.search(norm):
        return Intent.UPLOAD
    return Intent.CHAT


def _route_cjk(norm: str) -> Intent:
    if len(norm.replace(" ", "")) > MAX_CJK_CHARS:
        return Intent.CHAT
    for intent, words in CJK_RULES:
        if any(word in norm for word in words):
            return intent
    return Intent.CHAT
