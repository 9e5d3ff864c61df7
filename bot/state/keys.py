"""Every Redis key the bot uses, under a namespace of the bot's own id (two bots can share a Redis)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    namespace: str

    def chat(self, chat_key: str) -> str:
        return f"{self.namespace}:chat:{chat_key}"

    def token(self, chat_key: str) -> str:
        return f"{self.namespace}:token:{chat_key}"

    def turn(self, chat_key: str) -> str:
        return f"{self.namespace}:turn:{chat_key}"

    def render(self, render_id: str) -> str:
        return f"{self.namespace}:render:{render_id}"

    def active_renders(self) -> str:
        return f"{self.namespace}:renders:active"

    def chat_render(self, chat_key: str) -> str:
        return f"{self.namespace}:chat-render:{chat_key}"

    def chat_video(self, chat_key: str) -> str:
        return f"{self.namespace}:chat-video:{chat_key}"

    def update_seen(self, update_id: int) -> str:
        return f"{self.namespace}:update:{update_id}"

    def inbox(self) -> str:
        return f"{self.namespace}:inbox"

    def inbox_recorded(self, update_id: int) -> str:
        return f"{self.namespace}:inbox-recorded:{update_id}"

    def replica(self, replica_id: str) -> str:
        return f"{self.namespace}:replica:{replica_id}"

    def pending_uploads(self) -> str:
        return f"{self.namespace}:pending-uploads"

    def albums_due(self) -> str:
        return f"{self.namespace}:albums-due"

    def pending_owners(self) -> str:
        return f"{self.namespace}:pending-owners"

    def counter(self, name: str) -> str:
        return f"{self.namespace}:limit:{name}"

    def refused(self, who: str) -> str:
        return f"{self.namespace}:refused:{who}"

    def person(self, user_id: int) -> str:
        return f"{self.namespace}:person:{user_id}"

    def trials_refused(self) -> str:
        return f"{self.namespace}:trials-refused"

    def claim(self, session_id: str) -> str:
        return f"{self.namespace}:claim:{session_id}"

    def alerted(self, kind: str) -> str:
        return f"{self.namespace}:alerted:{kind}"

    def admin_languages(self) -> str:
        return f"{self.namespace}:admin-languages"

    def projects(self, chat_key: str) -> str:
        return f"{self.namespace}:projects:{chat_key}"

    def project_times(self, chat_key: str) -> str:
        return f"{self.namespace}:project-times:{chat_key}"

    def stats(self, day: str) -> str:
        return f"{self.namespace}:stats:{day}"

    def active_chats(self, day: str) -> str:
        return f"{self.namespace}:active:{day}"
