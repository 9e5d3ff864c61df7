"""Who is calling the studio: Telegram's signed `initData`, checked as Telegram documents it.

Every call of the studio carries the Mini App's raw `initData` (`Authorization: tma <initData>`).
`init-data-py`, a maintained validator, checks its HMAC-SHA256 with the key derived from
"WebAppData" and the bot token (compared in constant time) and refuses it once `auth_date` is older
than `MINI_APP_AUTH_SECONDS`. Only then is the user it names trusted; nothing else in it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from init_data_py import validate_by_hash
from init_data_py.errors import InvalidInitDataError

SCHEME = "tma "


@dataclass(frozen=True)
class Caller:
    """The Telegram user a verified `initData` names."""

    user_id: int
    language_code: str | None


def caller_of(authorization: str | None, bot_token: str, max_age_seconds: float) -> Caller | None:
    """The caller named by an `Authorization: tma <initData>` header, or None when the header is
    missing, forged, stale or names no user."""
    if not authorization or not authorization.startswith(SCHEME):
        return None
    try:
        data = validate_by_hash(authorization[len(SCHEME) :], bot_token, expires_in=max_age_seconds)
    except (InvalidInitDataError, ValueError, RecursionError):  # forged, stale, or not even JSON inside
        return None
    if data.user is None:
        return None
    return Caller(data.user.id, data.user.language_code)
