"""A chat's several projects: each kept with its own agent session and task id under an id; the
current one is named in the chat record, whose session and task are the current project's."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bot.state.base import Section, as_text, decode, encode


@dataclass
class ProjectRecord:
    project_id: str
    name: str = ""  # "" until renamed: shown as "Project <n>"
    session_id: str = ""  # the current project's lives in the chat record; this is from its last switch
    task_id: str = ""
    account: str = ""  # the account its session was made on (`accounts.account_label`)
    created_at: float = 0.0
    updated_at: float = 0.0  # when it last changed: kept apart, so a touch never undoes a rename


class ProjectRecords(Section):
    async def projects(self, chat_key: str) -> list[ProjectRecord]:
        """The chat's projects, oldest first, each with when it last changed."""
        raw, times = await self._pipe(
            lambda p: (p.hgetall(self.keys.projects(chat_key)), p.hgetall(self.keys.project_times(chat_key)))
        )
        found = []
        for project_id, value in raw.items():
            project = decode(ProjectRecord, value)
            stamp = times.get(project_id)
            project.updated_at = float(as_text(stamp)) if stamp else project.created_at
            found.append(project)
        return sorted(found, key=lambda p: (p.created_at, p.project_id))

    async def save_project(self, chat_key: str, project: ProjectRecord) -> None:
        """Keep the project (its time of change is set only if it has none: see `touch_project`)."""
        key, times, ttl = self.keys.projects(chat_key), self.keys.project_times(chat_key), self.retention.chat
        data = asdict(project)
        del data["updated_at"]
        await self._pipe(
            lambda p: (
                p.hset(key, project.project_id, encode(data)),
                p.hsetnx(times, project.project_id, repr(project.updated_at or project.created_at)),
                p.expire(key, ttl),
                p.expire(times, ttl),
            )
        )

    async def touch_project(self, chat_key: str, project_id: str, at: float) -> None:
        """Note that the project changed at `at`."""
        await self.redis.hset(self.keys.project_times(chat_key), project_id, repr(at))
