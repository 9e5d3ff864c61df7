"""A chat's several projects: listed (/projects), switched to, renamed (/rename), started anew (/new).

Each project keeps its own agent session and task id. The current project's live in the chat
record, as before projects existed, so every other flow is unchanged; a switch puts the current
one's away and brings the chosen one's in. A switch waits for the running turn (the turn writes
into the current project), and a render goes on, and is delivered, into the project and topic that
started it: its record carries its own session and chat.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from telegram.error import TelegramError

from bot.chat.kit import ChatContext, Kit
from bot.chat.projects import ChatRef
from bot.core.actions import PROJECT, Action
from bot.core.texts import Lang, say, words
from bot.state.chats import ChatRecord
from bot.state.projects import ProjectRecord
from bot.state.renders import UNFINISHED
from bot.state.turns import TurnRecord

FIRST = "1"  # the id of a chat's project from before projects existed, or its first
log = logging.getLogger(__name__)
SWAP_SECONDS = 60  # the turn slot a swap holds expires after this, should the process stop mid-swap
NAME_MAX = 40  # characters in a project's name


@dataclass(frozen=True)
class ProjectView:
    """A project as a list shows it."""

    project_id: str
    name: str  # its own, or "Project <n>"
    updated_at: float
    rendering: bool
    current: bool


def clean_name(text: str) -> str:
    """A project name as given by a person: one line, trimmed, at most NAME_MAX characters (pure)."""
    return re.sub(r"\s+", " ", text).strip()[:NAME_MAX].strip()


def display_name(project: ProjectRecord, number: int, lang: Lang) -> str:
    return project.name or words(lang, "project_default", number=number)


def ago(seconds: float, lang: Lang) -> str:
    """How long ago, as people say it: "just now", "5 min ago", "3 h ago", "2 days ago" (pure)."""
    if seconds < 60:
        return say(lang, "ago_now")
    if seconds < 3600:
        return say(lang, "ago_minutes", n=int(seconds // 60))
    if seconds < 86400:
        return say(lang, "ago_hours", n=int(seconds // 3600))
    return say(lang, "ago_days", n=int(seconds // 86400))


def next_id(projects: list[ProjectRecord]) -> str:
    """A new project's id: one past the highest numeric id (pure)."""
    numbers = [int(p.project_id) for p in projects if p.project_id.isdigit()]
    return str(max(numbers, default=0) + 1)


class Switcher:
    def __init__(
        self,
        kit: Kit,
        *,
        owner: str = "",
        most: int = 20,
        topics: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        self.kit = kit
        self.owner = owner  # this replica: a swap holds the turn slot in its name
        self.most = most  # MAX_PROJECTS: a chat keeps at most this many
        self.topics = topics  # PROJECT_TOPICS: in private chats with topics, a new project is a topic
        self.store = kit.store
        self.projects = kit.projects
        self._clock = clock

    async def listing(self, chat: ChatRef, lang: Lang) -> list[ProjectView]:
        """The chat's projects, oldest first (the current one kept as a record from now on)."""
        record = await self.store.load_chat(chat.key)
        kept, current = await self._kept(chat, record)
        render = await self.store.chat_render(chat.key)
        rendering_session = render.session_id if render is not None and render.status in UNFINISHED else None
        views = []
        used = float(record.changed_at or 0)
        for number, project in enumerate(kept, start=1):
            is_current = project.project_id == current
            session = record.session_id if is_current else project.session_id
            changed = max(project.updated_at, used) if is_current else project.updated_at
            views.append(
                ProjectView(
                    project.project_id,
                    display_name(project, number, lang),
                    changed,
                    bool(session) and session == rendering_session,
                    is_current,
                )
            )
        return views

    async def show(self, ctx: ChatContext) -> None:
        """/projects: each project a line and a button that makes it current."""
        views = await self.listing(ctx.chat, ctx.lang)
        now = self._clock()
        lines = [say(ctx.lang, "projects_header")]
        for view in views:
            key = "project_line_current" if view.current else "project_line"
            lines.append(say(ctx.lang, key, name=view.name, changed=ago(now - view.updated_at, ctx.lang)))
            if view.rendering:
                lines[-1] += say(ctx.lang, "project_rendering")
        labels = {f"{PROJECT}{v.project_id}": ("✅ " if v.current else "") + v.name for v in views}
        await ctx.out.send("\n".join(lines), buttons=[*labels, Action.NEW_PROJECT], labels=labels)

    @asynccontextmanager
    async def _holding(self, ctx: ChatContext) -> AsyncIterator[bool]:
        """The chat's turn slot, held while projects are swapped, so that no turn (nor another swap)
        writes into the chat record meanwhile; False (after saying so) while a turn runs."""
        hold = TurnRecord(
            self._clock(),
            words(ctx.lang, "switching_projects"),
            chat_id=ctx.chat.chat_id,
            thread_id=ctx.chat.thread_id,
            language=ctx.lang,
            session_language=ctx.session_lang,
            owner=self.owner,
        )
        if not await self.store.start_turn(ctx.chat.key, hold, SWAP_SECONDS):
            await ctx.out.say("busy")
            yield False
            return
        try:
            yield True
        finally:
            await self.store.end_turn(ctx.chat.key, hold.started_at)

    async def switch(self, ctx: ChatContext, project_id: str) -> bool:
        """Make `project_id` the chat's current project; False (after saying why) if it cannot be."""
        async with self._holding(ctx) as held:
            return held and await self._switch(ctx, project_id)

    async def _switch(self, ctx: ChatContext, project_id: str) -> bool:
        record = await self.store.load_chat(ctx.chat.key)
        kept, current = await self._kept(ctx.chat, record)
        chosen = next((p for p in kept if p.project_id == project_id), None)
        if chosen is None:
            await ctx.out.say("project_unknown")
            return False
        number = kept.index(chosen) + 1
        if project_id != current:
            await self._put_away(ctx.chat, record, kept, current)
            await self.store.forget_session(ctx.chat.key)
            values = {"project": project_id, "changed_at": repr(chosen.updated_at)}
            if chosen.session_id:
                values |= {
                    "session_id": chosen.session_id,
                    "task_id": chosen.task_id,
                    "account": chosen.account,
                }
            await self.store.save_chat(ctx.chat.key, **values)
        await ctx.out.say("project_switched", name=display_name(chosen, number, ctx.lang))
        return True

    async def start_new(self, ctx: ChatContext) -> bool:
        """/new: a fresh project beside the others (they stay in /projects); with PROJECT_TOPICS, in
        a private chat where the bot has topics, a topic of its own (each topic is its own project)."""
        topics = (
            self.topics and ctx.chat.chat_id > 0 and getattr(ctx.out.bot.bot, "has_topics_enabled", False)
        )
        if topics and await self._new_topic(ctx):
            return True
        async with self._holding(ctx) as held:
            return held and await self._start_new(ctx)

    async def _start_new(self, ctx: ChatContext) -> bool:
        record = await self.store.load_chat(ctx.chat.key)
        kept, current = await self._kept(ctx.chat, record)
        if len(kept) >= self.most:
            await ctx.out.say("projects_full", count=self.most)
            return False
        await self._put_away(ctx.chat, record, kept, current)
        now = self._clock()
        fresh = ProjectRecord(next_id(kept), created_at=now, updated_at=now)
        await self.store.save_project(ctx.chat.key, fresh)
        await self.store.save_chat(ctx.chat.key, project=fresh.project_id, changed_at=repr(now))
        try:
            await self.projects.new_project(ctx.chat, ctx.session_lang)
        except Exception as err:
            await self.kit.explain(ctx, err)
            return False
        await ctx.out.say("new_project", name=display_name(fresh, len(kept) + 1, ctx.lang))
        return True

    async def _new_topic(self, ctx: ChatContext) -> bool:
        """A new topic in the private chat, named "Project <n>": its first message there sets it up.
        False when Telegram refuses the topic (the project is then made in place)."""
        chat_key = str(ctx.chat.chat_id)
        number = int((await self.store.load_chat(chat_key)).topics or "1") + 1
        name = words(ctx.lang, "project_default", number=number)
        try:
            topic = await ctx.out.bot.create_forum_topic(ctx.chat.chat_id, name)
        except TelegramError as err:  # topics turned off by the user, or by the bot's owner
            log.info("chat %s: no topic for a new project (%s); one in place instead", chat_key, err)
            return False
        await self.store.save_chat(chat_key, topics=str(number))
        await ctx.out.in_topic(topic.message_thread_id).say("project_topic", name=name)
        return True

    async def rename(self, ctx: ChatContext, text: str) -> None:
        """/rename <name>: the current project's name."""
        name = clean_name(text)
        if not name:
            await ctx.out.say("rename_help")
            return
        record = await self.store.load_chat(ctx.chat.key)
        kept, current = await self._kept(ctx.chat, record)
        project = next(p for p in kept if p.project_id == current)
        project.name = name
        await self.store.save_project(ctx.chat.key, project)
        await ctx.out.say("project_renamed", name=name)

    async def _kept(self, chat: ChatRef, record: ChatRecord) -> tuple[list[ProjectRecord], str]:
        """The chat's projects and the current id; a chat from before projects gets its first record."""
        kept = await self.store.projects(chat.key)
        current = record.project or FIRST
        if not any(p.project_id == current for p in kept):
            now = self._clock()
            first = ProjectRecord(current, created_at=now, updated_at=now)
            await self.store.save_project(chat.key, first)
            kept.append(first)
            if not record.project:
                await self.store.save_chat(chat.key, project=current)
        return kept, current

    async def _put_away(
        self, chat: ChatRef, record: ChatRecord, kept: list[ProjectRecord], current: str
    ) -> None:
        """Keep the current project's session with its record before another becomes current."""
        project = next(p for p in kept if p.project_id == current)
        project.session_id, project.task_id = record.session_id, record.task_id
        project.account = record.account
        await self.store.save_project(chat.key, project)
        if record.changed_at:
            await self.store.touch_project(chat.key, current, float(record.changed_at))
