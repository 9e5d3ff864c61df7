"""Logging that cannot leak a secret: every record is scrubbed of tokens before any handler sees it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# NemoVideo user tokens, claim tokens (a browser link to a project), Telegram bot tokens (also inside
# Bot API URLs) and bearer headers.
PATTERNS = (
    re.compile(r"nmv_[A-Za-z0-9_\-]+"),
    re.compile(r"clm_[A-Za-z0-9_\-]+"),
    re.compile(r"(?<!\d)\d{5,}(?::|%3A)[A-Za-z0-9_\-]{20,}", re.IGNORECASE),  # also URL-encoded
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
)
MASK = "[secret]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites the final message (and any traceback) of each record with secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info), self._secrets)
            record.exc_info = None
        return True


class LibraryAbortFilter(logging.Filter):
    """Drops PTB's report (with a library traceback) of a retry loop it gave up on: the error reaches
    `python -m bot`, which says in one line what the operator should do."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Retry Loop" in message and "Abort" in message)


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("telegram.ext").addFilter(LibraryAbortFilter())
    # httpx logs every request URL at INFO, and Bot API URLs hold the bot token: keep it quiet
    # unless debugging (and then the filter above masks the token anyway). SAQ logs every job
    # (each render poll) at INFO.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler", "saq"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
