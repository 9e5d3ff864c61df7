"""Accounts as people meet them, through the real handlers: the backend's trial cap, people's own
accounts (/login, /logout), tokens pasted in groups, the operator's shared account running dry,
the project in the browser, and the skill's render and turn rules."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from bot.chat.projects import ChatRef, Projects
from bot.core.accounts import Vault, tokens_in
from bot.nemo.client import NemoClient
from bot.state.inbox import Inbox
from bot.state.store import Store
from loopback.emulator import NemoEmulator, Turn, sample_draft
from loopback.fake_telegram import FakeTelegram, User
from loopback.servers import MEDIA
from tests.conftest import MakeHarness
from tests.harness import Harness, connect, turn_over

KEY = "correct horse battery staple, 32+ chars"
ADA = User(501, "Ada", "ada", language_code="en")
LI = User(502, "Li", "li", language_code="zh-hans")
GROUP = -100777
BOT = "@nemo_test_bot"


async def says(bot: Harness, chat: int, text: str, user: User, **kw: Any) -> int:
    """A user writes `text`; the bot's message count before, to wait after."""
    mark = bot.fake.message_count(chat)
    await bot.send(bot.fake.send_text(chat, text, user=user, **kw))
    return mark


async def command(bot: Harness, chat: int, text: str, user: User, **kw: Any) -> int:
    mark = bot.fake.message_count(chat)
    await bot.send(bot.fake.send_command(chat, text, user=user, **kw))
    return mark


def person(index: int) -> User:
    return User(600 + index, f"P{index}", f"p{index}", language_code="en")


# -- the trial cap ------------------------------------------------------------------------------


async def test_past_the_trial_cap_new_chats_hear_at_once_how_to_go_on(make_harness: MakeHarness) -> None:
    bot = await make_harness(token_encryption_key=KEY, rate_limit_wait_seconds=30)
    bot.emulator.trial_cap = 3
    people = [person(i) for i in range(5)]
    for someone in people:
        mark = await says(bot, someone.id, "credits", someone)
        await bot.fake.wait_for_message(someone.id, "Credits:" if someone.id < 603 else "trials", after=mark)
    refused = [bot.fake.bot_messages(p.id)[-1].text for p in people[3:]]
    for text in refused:  # told at once (no 30 s wait): the ways forward, in one message
        assert "free trials are used up" in text and "/login" in text and "operator" in text
    assert len(bot.emulator.calls("anonymous_token")) == 4  # the fifth chat did not ask again
    # Asking again does not hammer the endpoint; chats with a token carry on.
    mark = await says(bot, people[4].id, "status", people[4])
    await bot.fake.wait_for_message(people[4].id, "trials", after=mark)
    mark = await says(bot, people[0].id, "status", people[0])
    await bot.fake.wait_for_message(people[0].id, "timeline is empty", after=mark)
    assert len(bot.emulator.calls("anonymous_token")) == 4


async def test_a_refusal_in_the_envelope_counts_the_same(make_harness: MakeHarness) -> None:
    bot = await make_harness()
    bot.emulator.trial_cap, bot.emulator.trial_refusal = 0, "envelope"
    mark = await says(bot, ADA.id, "hello", ADA)
    text = (await bot.fake.wait_for_message(ADA.id, "trials", after=mark)).text
    assert "/login" not in text  # personal accounts are off here: not offered
    assert bot.emulator.calls("run_sse") == []


async def test_the_refusal_is_remembered_only_for_a_while(make_harness: MakeHarness) -> None:
    bot = await make_harness(trial_refusal_memory_seconds=0.3)
    bot.emulator.trial_cap = 0
    mark = await says(bot, ADA.id, "credits", ADA)
    await bot.fake.wait_for_message(ADA.id, "trials", after=mark)
    bot.emulator.trial_cap = None  # a new week
    await asyncio.sleep(1.1)  # Redis keeps the refusal for whole seconds
    mark = await says(bot, ADA.id, "credits", ADA)
    await bot.fake.wait_for_message(ADA.id, "Credits:", after=mark)
    assert len(bot.emulator.calls("anonymous_token")) == 2


# -- a person's own account ---------------------------------------------------------------------


async def linked(bot: Harness, user: User, credits: int = 250) -> str:
    """`user` logs in with a personal token in private; the token."""
    account = bot.emulator.add_personal_account(credits=credits)
    mark = await command(bot, user.id, f"/login {account.token}", user)
    await bot.fake.wait_for_message(user.id, "linked", after=mark)
    return account.token


async def test_login_links_a_persons_own_account_and_never_keeps_the_token_in_the_clear(
    make_harness: MakeHarness,
) -> None:
    bot = await make_harness(token_encryption_key=KEY)
    await connect(bot, ADA.id, ADA)  # a trial first
    mark = await command(bot, ADA.id, "/login", ADA)
    help_text = (await bot.fake.wait_for_message(ADA.id, "API Tokens", after=mark)).text
    assert "Settings" in help_text
    account = bot.emulator.add_personal_account(credits=250)
    mark = await says(bot, ADA.id, f"  {account.token} ", ADA)  # the token as the next message
    done = await bot.fake.wait_for_message(ADA.id, "linked", after=mark)
    token_message = bot.fake.deleted_user_messages[-1]
    assert token_message[0] == ADA.id  # deleted at once
    assert "250" in done.text and account.token not in done.source
    mark = await says(bot, ADA.id, "credits", ADA)
    balance = await bot.fake.wait_for_message(ADA.id, "Credits:", after=mark)
    assert "250" in balance.text and "your own NemoVideo account" in balance.text
    assert "register" not in balance.source
    session = bot.emulator.sessions[(await bot.services.store.load_chat(str(ADA.id))).session_id]
    assert session.user_id == account.user_id  # a fresh project on the person's own account
    # The token is nowhere in Redis in plain text, nor in what the bot said.
    redis = bot.services.store.redis
    for key in [k async for k in redis.scan_iter("*")]:
        assert account.token not in key
        kind = await redis.type(key)
        if kind == "string":
            assert account.token not in str(await redis.get(key))
        elif kind == "hash":
            assert account.token not in str(await redis.hgetall(key))
    assert all(account.token not in m.source for m in bot.fake.bot_messages(ADA.id))
    assert not any(account.token in request.path for request in bot.emulator.requests)

    mark = await command(bot, ADA.id, "/logout", ADA)
    bye = await bot.fake.wait_for_message(ADA.id, "unlinked", after=mark)
    assert "API Tokens" in bye.text
    mark = await says(bot, ADA.id, "credits", ADA)
    back = await bot.fake.wait_for_message(ADA.id, "Credits:", after=mark)
    assert "free trial" in back.text
    mark = await command(bot, ADA.id, "/logout", ADA)
    await bot.fake.wait_for_message(ADA.id, "nothing to unlink", after=mark)


async def test_a_refused_token_is_not_linked(make_harness: MakeHarness) -> None:
    bot = await make_harness(token_encryption_key=KEY)
    account = bot.emulator.add_personal_account()
    bot.emulator.revoke(account.token)
    mark = await command(bot, ADA.id, f"/login {account.token}", ADA)
    await bot.fake.wait_for_message(ADA.id, "didn't accept", after=mark)
    assert await bot.services.store.link(ADA.id) is None


async def test_a_revoked_personal_token_is_never_swapped_for_a_trial(make_harness: MakeHarness) -> None:
    bot = await make_harness(token_encryption_key=KEY)
    token = await linked(bot, ADA)
    mark = await says(bot, ADA.id, "status", ADA)
    await bot.fake.wait_for_message(ADA.id, "timeline is empty", after=mark)
    bot.emulator.revoke(token)
    for text in ("status", "make a video"):
        mark = await says(bot, ADA.id, text, ADA)
        refused = await bot.fake.wait_for_message(ADA.id, "refused your account's token", after=mark)
        assert "/login" in refused.text
    assert bot.emulator.calls("anonymous_token") == []
    assert bot.emulator.calls("run_sse") == []
    await linked(bot, ADA)  # a new token puts it right
    mark = await says(bot, ADA.id, "status", ADA)
    await bot.fake.wait_for_message(ADA.id, "timeline is empty", after=mark)


async def test_login_is_off_without_an_encryption_key(make_harness: MakeHarness) -> None:
    bot = await make_harness()
    mark = await command(bot, ADA.id, "/login", ADA)
    await bot.fake.wait_for_message(ADA.id, "hasn't turned on personal accounts", after=mark)
    account = bot.emulator.add_personal_account()
    mark = await says(bot, ADA.id, account.token, ADA)
    await bot.fake.wait_for_message(ADA.id, "deleted it without using it", after=mark)
    assert bot.fake.deleted_user_messages and bot.emulator.calls("credits") == []


async def test_a_chinese_speaker_logs_in_in_chinese(make_harness: MakeHarness) -> None:
    bot = await make_harness(token_encryption_key=KEY)
    account = bot.emulator.add_personal_account(credits=80)
    mark = await command(bot, LI.id, f"/login {account.token}", LI)
    done = await bot.fake.wait_for_message(LI.id, "已关联", after=mark)
    assert "80" in done.text and "linked" not in done.text


async def test_per_user_group_projects_use_their_members_own_accounts(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup", title="Team")
    bot = await make_harness(token_encryption_key=KEY, group_projects="per_user")
    token = await linked(bot, ADA)
    mark = await says(bot, GROUP, f"{BOT} credits", ADA)
    answer = await bot.fake.wait_for_message(GROUP, "Credits:", after=mark)
    assert "your own NemoVideo account" in answer.text
    own = bot.emulator.accounts[token]
    assert bot.emulator.calls("credits")[-1].headers["authorization"] == f"Bearer {own.token}"
    mark = await says(bot, GROUP, f"{BOT} credits", person(1))  # a member without an account: a trial
    other = await bot.fake.wait_for_message(GROUP, "free trial", after=mark)
    assert other.message_id != answer.message_id


# -- tokens where they must not be --------------------------------------------------------------


async def test_a_token_pasted_in_a_group_is_deleted_and_its_owner_warned(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup", title="Team")
    fake.set_member_status(GROUP, fake.bot_id, "administrator")
    bot = await make_harness(token_encryption_key=KEY)
    token = bot.emulator.add_personal_account().token
    mark = bot.fake.message_count(GROUP)
    update = bot.fake.send_text(GROUP, f"{BOT} here is my key {token} make a promo", user=ADA)
    await bot.send(update)
    warning = await bot.fake.wait_for_message(GROUP, "Revoke that token now", after=mark)
    assert "Ada" in warning.text and "private chat" in warning.text and token not in warning.source
    assert bot.fake.deleted_user_messages == [(GROUP, update["message"]["message_id"])]
    assert [r for r in bot.emulator.requests if r.endpoint != "unknown"] == []  # nothing went anywhere


async def test_where_the_bot_cannot_delete_it_asks_the_sender_to(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup", title="Team")
    bot = await make_harness(token_encryption_key=KEY)
    token = bot.emulator.add_personal_account().token
    mark = await command(bot, GROUP, f"/login {token}", ADA)
    warning = await bot.fake.wait_for_message(GROUP, "Delete that message", after=mark)
    assert "revoke" in warning.text.lower()
    assert bot.fake.deleted_user_messages == [] and bot.emulator.requests == []
    assert await bot.services.store.link(ADA.id) is None  # never taken from a group


async def test_login_in_a_group_points_to_the_private_chat(
    make_harness: MakeHarness, fake: FakeTelegram
) -> None:
    fake.set_chat(GROUP, "supergroup", title="Team")
    bot = await make_harness(token_encryption_key=KEY)
    mark = await command(bot, GROUP, "/login", ADA)
    answer = await bot.fake.wait_for_message(GROUP, "private chat", after=mark)
    assert "t.me/nemo_test_bot?start=login" in answer.source
    mark = await command(bot, ADA.id, "/start login", ADA)
    await bot.fake.wait_for_message(ADA.id, "API Tokens", after=mark)


# -- the operator's shared account --------------------------------------------------------------


BOSS = User(900, "Boss", "boss", language_code="zh-hans")


async def test_the_shared_account_running_dry_tells_users_and_each_admin_once(
    make_harness: MakeHarness, emulator: NemoEmulator
) -> None:
    operator = emulator.add_personal_account(credits=0)
    bot = await make_harness(nemo_token=operator.token, admin_user_ids=str(BOSS.id))
    await command(bot, BOSS.id, "/credits", BOSS)  # an admin who has opened a chat with the bot
    await bot.fake.wait_for_message(BOSS.id, "积分")
    for someone in (person(1), person(2)):
        mark = await says(bot, someone.id, "make me a video", someone)
        told = await bot.fake.wait_for_message(someone.id, "shared credits are used up", after=mark)
        assert "register" not in told.source and "bind" not in told.source
    alerts = [m for m in bot.fake.bot_messages(BOSS.id) if "用完" in m.text]
    assert len(alerts) == 1 and "nemovideo.com" in alerts[0].text  # in the admin's language, once
    assert bot.emulator.calls("anonymous_token") == []


async def test_admins_hear_once_when_the_shared_balance_runs_low(
    make_harness: MakeHarness, emulator: NemoEmulator
) -> None:
    operator = emulator.add_personal_account(credits=120)
    bot = await make_harness(
        nemo_token=operator.token,
        admin_user_ids=str(ADA.id),
        credits_low_warning=500,
        credits_check_seconds=0.1,
    )
    low = await bot.fake.wait_for_message(ADA.id, "running low")
    assert "120" in low.text
    await asyncio.sleep(0.5)  # several checks later: still one message
    assert sum("running low" in m.text for m in bot.fake.bot_messages(ADA.id)) == 1
    mark = await says(bot, ADA.id, "credits", ADA)
    balance = await bot.fake.wait_for_message(ADA.id, "Credits:", after=mark)
    assert "the bot's shared account" in balance.text and "register" not in balance.source


# -- the project in the browser, and the skill's render rules -----------------------------------


def with_draft(bot: Harness, chat: int) -> None:
    session_id = next(s for s in bot.emulator.sessions.values() if s.user_id).session_id
    bot.emulator.set_draft(session_id, sample_draft())
    del chat


async def exported(bot: Harness, chat: int, user: User) -> Any:
    await connect(bot, chat, user)
    with_draft(bot, chat)
    mark = await says(bot, chat, "export", user)
    return await bot.fake.wait_for_message(chat, kind="video", after=mark, timeout=15)


def open_button(message: Any) -> str:
    urls = [b["url"] for b in message.buttons if "url" in b]
    assert len(urls) == 1, message.buttons
    return str(urls[0])


async def test_a_delivered_video_comes_with_its_project_in_the_browser(bot_plain: Harness) -> None:
    bot = bot_plain
    video = await exported(bot, ADA.id, ADA)
    link = open_button(video)
    assert link.startswith(f"{bot.settings.nemo_web_url}/workspace/claim?ct=clm_") and "nmv_" not in link
    claim = link.split("ct=")[1]
    task_id, session_id = bot.emulator.claims[claim]
    assert session_id == (await bot.services.store.load_chat(str(ADA.id))).session_id and task_id
    mark = await command(bot, ADA.id, "/open", ADA)
    opened = await bot.fake.wait_for_message(ADA.id, "opens in the browser", after=mark)
    assert open_button(opened) == link  # the claim is kept, not asked for again
    assert len(bot.emulator.calls("claim_token")) == 1


async def test_a_dead_cdn_link_still_delivers_the_video(bot_plain: Harness) -> None:
    bot = bot_plain
    bot.emulator.cdn_dead = 404
    video = await exported(bot, ADA.id, ADA)
    assert video.file is not None and video.file.data == (MEDIA / "clip.mp4").read_bytes()
    assert "/static/render/" not in video.source  # the dead link is not offered
    assert "/download" not in video.source  # nor the API's, which needs the token
    assert len(bot.emulator.calls("render_download")) == 1


async def test_a_render_that_fails_to_start_is_started_once_more_under_a_new_id(bot_plain: Harness) -> None:
    bot = bot_plain
    bot.emulator.inject("render_start", http_status=503)
    await exported(bot, ADA.id, ADA)
    starts = bot.emulator.calls("render_start")
    assert len(starts) == 2 and starts[0].json["id"] != starts[1].json["id"]
    await asyncio.sleep(0.5)
    assert sum(m.kind == "video" for m in bot.fake.bot_messages(ADA.id)) == 1


async def test_a_start_refused_for_the_plan_is_not_tried_again(bot_plain: Harness) -> None:
    bot = bot_plain
    bot.emulator.inject("render_start", code=402)
    await connect(bot, ADA.id, ADA)
    with_draft(bot, ADA.id)
    mark = await says(bot, ADA.id, "export", ADA)
    await bot.fake.wait_for_message(ADA.id, "unlock export", after=mark)
    assert len(bot.emulator.calls("render_start")) == 1


async def test_a_trailing_temporary_issue_after_normal_replies_is_not_shown(bot_plain: Harness) -> None:
    bot = bot_plain
    bot.emulator.script(
        "music",
        Turn(texts=["Added a Lo-fi track.", "I encountered a temporary issue. Please try again."]),
    )
    bot.emulator.script("broken", Turn(texts=["I encountered a temporary issue. Please try again."]))
    await connect(bot, ADA.id, ADA)
    mark = await says(bot, ADA.id, "add music", ADA)
    reply = await bot.fake.wait_for_message(ADA.id, "Lo-fi", after=mark)
    await turn_over(bot, ADA.id)
    shown = " ".join(text for m in bot.fake.bot_messages(ADA.id)[mark:] for text in m.history)
    assert "temporary issue" not in shown and "Lo-fi" in reply.text
    mark = await says(bot, ADA.id, "this is broken", ADA)  # alone, it is the answer: shown
    await bot.fake.wait_for_message(ADA.id, "temporary issue", after=mark)


@pytest.fixture
async def bot_plain(make_harness: MakeHarness) -> Harness:
    return await make_harness()


async def test_trial_tokens_are_sealed_with_the_key_and_old_clear_ones_still_work(
    client: NemoClient, store: Store, emulator: NemoEmulator
) -> None:
    sealed = Projects(client, store, operator_token=None, rate_limit_wait=0, vault=Vault(KEY))
    connection = await sealed.connect(ChatRef.of(1), "en")
    kept = (await store.load_chat("1")).token
    assert kept and connection.token not in kept and not kept.startswith("nmv_")
    assert (await sealed.connect(ChatRef.of(1), "en")).token == connection.token  # read back
    # A token kept in the clear before the key was set is used as it is, not granted anew.
    old = emulator.add_account()
    await store.save_token("2", old.token, time.time() + 3600)
    assert (await sealed.connect(ChatRef.of(2), "en")).token == old.token
    assert len(emulator.calls("anonymous_token")) == 1


@pytest.mark.parametrize("with_key", [True, False])
async def test_a_webhook_update_holding_a_token_is_never_kept_in_the_clear(
    store: Store, with_key: bool
) -> None:
    vault = Vault(KEY) if with_key else None
    inbox = Inbox(
        store.redis,
        store.keys,
        "replica-1",
        keep_seconds=60,
        lease_seconds=5,
        block_seconds=0.05,
        vault=vault,
    )
    token = "nmv_usr_" + "a1" * 16
    update = {"update_id": 9, "message": {"message_id": 1, "text": f"/login {token}", "chat": {"id": 5}}}
    assert await inbox.record(update)
    entries = await store.redis.xrange(store.keys.inbox())
    assert entries and token not in str(entries)
    handled: list[dict[str, Any]] = []

    async def handle(got: dict[str, Any]) -> None:
        handled.append(got)

    runner = asyncio.create_task(inbox.run(handle, 4))
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.02)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    text = handled[0]["message"]["text"]
    # With the key, the login goes through; without it (no /login then), the guard still sees a token.
    assert text == f"/login {token}" if with_key else (token not in text and tokens_in(text))
