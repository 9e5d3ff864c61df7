"""Which NemoVideo account a project runs on, decided in one place, and the personal tokens' vault.

Three ways to pay, in this order of precedence for a project:
- *personal*: the person who owns the project (their private chat, or their own project in a
  `GROUP_PROJECTS=per_user` group) linked their own account with `/login`;
- *operator*: the bot's shared account, `NEMO_TOKEN`;
- *trial*: an anonymous token per chat, while the backend grants them (about 10 per IP a week).

Tokens are kept encrypted (AES-GCM, key derived with HKDF from `TOKEN_ENCRYPTION_KEY`): personal
ones always (without the key there is no /login), trials' when the key is set. Each is bound to what
it belongs to (`person_of`, `chat_of`), so a value copied to another person's or chat's key does not
decrypt.
"""

from __future__ import annotations

import base64
import enum
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.settings import MIN_KEY_CHARS

# Anything shaped like a NemoVideo token: it never goes to the agent, a group, a log or a URL.
TOKEN_SHAPE = re.compile(r"nmv_usr_[A-Za-z0-9_\-]+")
WITHHELD = "nmv_usr_withheld"  # a token taken out of a kept message: still shaped as one, for the guard
NONCE_BYTES = 12  # AES-GCM's standard nonce, random per encryption


class AccountKind(enum.StrEnum):
    TRIAL = "trial"
    OPERATOR = "operator"
    PERSONAL = "personal"


def tokens_in(text: str | None) -> list[str]:
    """The token-shaped strings in a text (pure)."""
    return TOKEN_SHAPE.findall(text or "")


def project_owner(key: str) -> int | None:
    """The Telegram user whose own account a project may use (pure): the person of a private chat
    (`123`, or a topic of it, `123:7`) or the member of a per-user group project (`-100…:u123`);
    None for a group's or a channel's shared project."""
    parts = key.split(":")
    if parts[-1].startswith("u") and parts[-1][1:].isdigit():
        return int(parts[-1][1:])
    head = parts[0]
    return int(head) if head.isdigit() else None  # private chats have positive ids, groups negative


def choose(*, linked: bool, operator: bool) -> AccountKind:
    """The account a project runs on (pure): the owner's own when linked, else the bot's shared
    one when the operator set it, else a trial."""
    if linked:
        return AccountKind.PERSONAL
    return AccountKind.OPERATOR if operator else AccountKind.TRIAL


def account_label(kind: AccountKind, owner: int | None) -> str:
    """What a chat record notes as the account its session was made on (pure): a personal
    account is its owner's, so another person's login never reuses it."""
    return f"{kind}:{owner}" if kind is AccountKind.PERSONAL else str(kind)


def session_fits(recorded: str, label: str) -> bool:
    """Whether a session made on the `recorded` account serves `label` (pure). Records from
    before accounts were noted ("") hold a trial's or the operator's session: they go on as they
    were, except for a personal account, whose sessions are its own."""
    if not recorded:
        return not label.startswith(AccountKind.PERSONAL)
    return recorded == label


def person_of(owner: int) -> str:
    """What a personal token is bound to."""
    return f"person:{owner}"


def chat_of(chat_key: str) -> str:
    """What a chat's trial token is bound to."""
    return f"chat:{chat_key}"


class Vault:
    """Encrypts tokens for Redis; each ciphertext is bound to what it belongs to (`person_of`,
    `chat_of`)."""

    def __init__(self, secret: str):
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"the key must be at least {MIN_KEY_CHARS} characters")
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"nemo-video-bot personal tokens"
        ).derive(secret.encode())
        self._aead = AESGCM(key)

    def seal(self, bound: str, token: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, token.encode(), bound.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, bound: str, sealed: str) -> str | None:
        """The token, or None when the value was not sealed for `bound` with this key."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound.encode()).decode()
        except (InvalidTag, ValueError):
            return None


@dataclass(frozen=True)
class Link:
    """A person's linked account as the store keeps it."""

    sealed: str  # the token, encrypted by `Vault`
    refused: bool = False  # the backend refused it (revoked or expired): log in again
