"""The operator's admins hear about the bot's shared account (NEMO_TOKEN): once when it runs out,
once when it falls below CREDITS_LOW_WARNING, and once when the backend refuses its exports.

"Once" holds across replicas and restarts (a flag in Redis), until the balance is seen above the
line again. The balance is read every CREDITS_CHECK_SECONDS by a job step, and whenever a person
asks for /credits on the shared account.
"""

from __future__ import annotations

import enum
import logging

from redis.exceptions import RedisError
from telegram.error import TelegramError

from bot.core.texts import Lang, amount, language_of, say
from bot.nemo.client import Credits, NemoClient
from bot.nemo.errors import NemoError
from bot.state.store import Store
from bot.telegram.output import ChatGone, Telegram

log = logging.getLogger(__name__)
EXPORT_ALERT_SECONDS = 24 * 3600  # a plan that cannot export is said again a day later, if still so


class Alert(enum.StrEnum):
    EMPTY = "credits_empty"
    LOW = "credits_low"
    EXPORT = "export_blocked"


def alerts_for(available: float, low_warning: int) -> tuple[Alert | None, tuple[Alert, ...]]:
    """Which balance alert is due (pure), and which are over and may be said again later."""
    if available <= 0:
        return Alert.EMPTY, ()
    if low_warning and available < low_warning:
        return Alert.LOW, (Alert.EMPTY,)
    return None, (Alert.EMPTY, Alert.LOW)


class OperatorAlerts:
    def __init__(
        self,
        store: Store,
        telegram: Telegram,
        client: NemoClient,
        *,
        operator_token: str | None,
        admins: frozenset[int],
        low_warning: int,
        check_seconds: float,
    ):
        self.store = store
        self.telegram = telegram
        self.client = client
        self._token = operator_token
        self._admins = admins
        self._low_warning = low_warning
        self._check_seconds = check_seconds

    @property
    def enabled(self) -> bool:
        return self._token is not None and bool(self._admins)

    async def note_admin(self, user_id: int | None, lang: Lang) -> None:
        """Remember an admin's language, so alerts reach them in it."""
        if user_id is not None and user_id in self._admins:
            await self.store.note_admin_language(user_id, lang)

    async def seen(self, balance: Credits) -> None:
        """A balance of the shared account was read: alert if it is due, forget alerts that are over."""
        if not self.enabled:
            return
        due, over = alerts_for(balance.available, self._low_warning)
        if over:
            await self.store.clear_alert(*over)
        if due is not None:
            await self._once(due, available=amount(balance.available), threshold=self._low_warning)

    async def ran_out(self) -> None:
        """The backend said the shared account has no credits (2001)."""
        if self.enabled:
            await self._once(Alert.EMPTY, available=await self._available())

    async def export_blocked(self) -> None:
        """The backend refused an export on the shared account (402)."""
        if self.enabled:
            await self._once(Alert.EXPORT, ttl=EXPORT_ALERT_SECONDS)

    async def check(self) -> float | None:
        """The job step: read the shared account's balance now and then."""
        if not self.enabled:
            return None
        assert self._token is not None
        try:
            await self.seen(await self.client.credits(self._token))
        except NemoError as err:
            log.info("the shared account's balance is unreadable: %s", err.describe())
        return self._check_seconds

    async def _available(self) -> str:
        assert self._token is not None
        try:
            return amount((await self.client.credits(self._token)).available)
        except NemoError:
            return "0"

    async def _once(self, alert: Alert, *, ttl: int | None = None, **values: object) -> None:
        try:
            if not await self.store.first_alert(alert, ttl=ttl):
                return
            languages = await self.store.admin_languages()
        except RedisError as err:
            log.warning("admin alert %s not sent, Redis unavailable: %s", alert, type(err).__name__)
            return
        log.warning("telling the admins: %s", alert)
        for admin in sorted(self._admins):
            lang = language_of(languages.get(admin))
            try:
                await self.telegram.to(admin, lang).send(say(lang, f"admin_{alert}", **values))
            except (ChatGone, TelegramError) as err:  # an admin who never opened a chat with the bot
                log.info("admin %s not told of %s: %s", admin, alert, type(err).__name__)
