"""A person's own NemoVideo account: /login, /logout, and tokens pasted where they should not be.

A token is taken only in the person's private chat with the bot. The message that holds it is
deleted first, before anything else happens; the token is checked with a credits call, then kept
encrypted (`bot.core.accounts.Vault`) and never shown again, not even in part. A token posted in a group
or channel is deleted where the bot may (the sender is asked to, where it may not), never used,
and its owner is told to revoke it.
"""

from __future__ import annotations

import logging

from bot.chat.kit import ChatContext, Kit, login_link, username_of
from bot.core.accounts import Vault, person_of
from bot.core.texts import amount, say
from bot.nemo.client import NemoClient
from bot.nemo.errors import NemoError, TokenExpired
from bot.state.store import Store
from bot.telegram.output import ChatGone

log = logging.getLogger(__name__)


class Logins:
    def __init__(
        self,
        kit: Kit,
        client: NemoClient,
        store: Store,
        vault: Vault | None,
        *,
        per_user_groups: bool,
        site: str,
    ):
        self.kit = kit
        self.client = client
        self.store = store
        self.vault = vault  # None: the operator has not turned personal accounts on
        self.per_user_groups = per_user_groups
        self.site = site  # the website, where tokens are made and revoked

    async def help(self, ctx: ChatContext) -> None:
        """/login without a token: where to make one, and how to send it (in private only)."""
        if self.vault is None:
            await ctx.out.say("login_disabled")
        elif ctx.shared:
            await ctx.out.say("login_private_only", link=self._private_chat(ctx))
        else:
            await ctx.out.say("login_help", site=self.site)

    async def login(self, ctx: ChatContext, token: str, message_id: int | None) -> None:
        """A token sent in the person's private chat: deleted at once, checked, kept encrypted."""
        deleted = await self._delete(ctx, message_id)
        if self.vault is None or ctx.user_id is None:
            await ctx.out.say("token_not_taken")
            return
        notice = await ctx.out.say("login_checking")
        notice_id = notice.message_id if notice else None
        try:
            balance = await self.client.credits(token)
        except TokenExpired:
            await ctx.out.edit_or_send(notice_id, say(ctx.lang, "login_refused"))
            return
        except NemoError as err:
            log.info("chat %s: a token could not be checked: %s", ctx.chat.key, err.describe())
            await ctx.out.edit_or_send(notice_id, say(ctx.lang, "login_unchecked"))
            return
        await self.store.save_link(ctx.user_id, self.vault.seal(person_of(ctx.user_id), token))
        log.info("user %s linked their own account", ctx.user_id)
        lines = [say(ctx.lang, "login_done", available=amount(balance.available))]
        if self.per_user_groups:
            lines.append(say(ctx.lang, "login_done_groups"))
        lines.append(say(ctx.lang, "login_done_tail"))
        if not deleted:
            lines.append(say(ctx.lang, "login_not_deleted"))
        await ctx.out.edit_or_send(notice_id, "\n".join(lines))

    async def logout(self, ctx: ChatContext) -> None:
        """/logout: forget the person's token (revoking it is theirs to do, on the website)."""
        if self.vault is None:
            await ctx.out.say("login_disabled")
        elif ctx.user_id is not None and await self.store.drop_link(ctx.user_id):
            log.info("user %s unlinked their own account", ctx.user_id)
            await ctx.out.say("logout_done", site=self.site)
        else:
            await ctx.out.say("logout_none")

    async def leaked(self, ctx: ChatContext, message_id: int | None, sender: str) -> None:
        """A token in a group or channel message meant for the bot: deleted where the bot may,
        never used; the sender is told to revoke it and to log in in private."""
        deleted = await self._delete(ctx, message_id)
        log.warning(
            "chat %s: a message holding a token was %s", ctx.chat.key, "deleted" if deleted else "left"
        )
        key = "token_leaked_deleted" if deleted else "token_leaked_kept"
        await ctx.out.say(key, name=sender, site=self.site, link=self._private_chat(ctx))

    async def _delete(self, ctx: ChatContext, message_id: int | None) -> bool:
        if message_id is None:
            return False
        try:
            return await ctx.out.delete(message_id)
        except ChatGone:  # no right to delete others' messages here
            return False

    @staticmethod
    def _private_chat(ctx: ChatContext) -> str:
        return login_link(username_of(ctx.out.bot))
