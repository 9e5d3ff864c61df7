"""The webhook's inbox: updates recorded durably in a Redis Stream before Telegram hears 200, then
handled by exactly one replica through a consumer group.

- `record` keeps an update once (by update id: Telegram posts it again when an answer is lost).
- `run` reads new entries for this replica and hands each to the handlers, at most
  `CONCURRENT_UPDATES` at once; an entry is acknowledged (and deleted) once handled.
- While an entry is being handled its owner touches it a few times a lease, so it never looks idle;
  entries idle for a lease belong to a replica that died, and the next replica to look claims them.
  An update a dead replica had already begun is not run again (the handlers' own de-duplication
  skips it): what it started is recovered from its own records (turns, uploads, renders).
- An update that holds a NemoVideo token (someone logging in) is kept sealed with the tokens' key,
  or, without one, with the token withheld: it is never used then (`bot.core.accounts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot.core import metrics
from bot.core.accounts import TOKEN_SHAPE, WITHHELD, Vault, tokens_in
from bot.state.keys import Keys

log = logging.getLogger(__name__)
GROUP = "replicas"
CLAIM_BATCH = 100  # entries taken over per look, from a replica that died

# KEYS: the "recorded" marker, the stream; ARGV: retention seconds, the update's JSON.
RECORD = """
    if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
        redis.call('XADD', KEYS[2], '*', 'update', ARGV[2])
        return 1
    end
    return 0
"""


SEALED = "sealed:"  # an entry sealed by the vault (a JSON update starts with "{")
BOUND = "inbox"  # what a sealed entry is bound to


def kept(update_json: str, vault: Vault | None) -> str:
    """An update as the stream keeps it (pure but for the nonce): a token in it is never there in
    the clear."""
    if not tokens_in(update_json):
        return update_json
    if vault is not None:
        return SEALED + vault.seal(BOUND, update_json)
    return TOKEN_SHAPE.sub(WITHHELD, update_json)


def unkept(entry: str, vault: Vault | None) -> dict[str, Any] | None:
    """The update an entry holds; None when it was sealed with a key this replica does not have."""
    if entry.startswith(SEALED):
        opened = vault.open(BOUND, entry.removeprefix(SEALED)) if vault is not None else None
        return json.loads(opened) if opened is not None else None
    update: dict[str, Any] = json.loads(entry)
    return update


class Inbox:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        replica_id: str,
        *,
        keep_seconds: int,
        lease_seconds: float,
        block_seconds: float,
        vault: Vault | None = None,
    ):
        self.redis = redis
        self.keys = keys
        self.keep = keep_seconds  # how long an update's id is remembered, so a repeated post is dropped
        self.vault = vault
        self.me = replica_id
        self.stream = keys.inbox()
        self.lease = lease_seconds
        self.block = block_seconds
        self._record = self.redis.register_script(RECORD)
        self._in_hand: set[str] = set()

    async def record(self, update: dict[str, Any]) -> bool:
        """Keep an update for the replicas; False when it was kept before (a repeated post)."""
        update_id = int(update["update_id"])
        fresh = await self._record(
            keys=[self.keys.inbox_recorded(update_id), self.stream],
            args=[self.keep, kept(json.dumps(update, separators=(",", ":")), self.vault)],
        )
        metrics.UPDATES.labels("recorded" if fresh else "duplicate").inc()
        return bool(fresh)

    async def pending(self) -> int:
        """Entries recorded and not yet handled (waiting or in hand), for /metrics."""
        try:
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError:  # no stream yet
            return 0
        return sum(int(group.get("lag") or 0) + int(group.get("pending") or 0) for group in groups)

    async def run(self, handle: Callable[[dict[str, Any]], Awaitable[None]], concurrency: int) -> None:
        """Hand this replica's share of updates to `handle` until cancelled."""
        await self._ensure_group()
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        toucher = asyncio.create_task(self._touch_in_hand(), name="inbox touch")
        claimed_at = 0.0
        try:
            while True:
                try:
                    entries: list[tuple[str, dict[str, Any]]] = []
                    if time.monotonic() - claimed_at > self.lease / 2:
                        claimed_at = time.monotonic()
                        entries = await self._claim_abandoned()
                    free = max(1, concurrency - len(tasks))
                    entries += await self._read_new(free)
                except RedisError as err:
                    log.warning("inbox unavailable: %s", type(err).__name__)
                    await asyncio.sleep(self.block)
                    continue
                for entry_id, fields in entries:
                    await slots.acquire()
                    self._in_hand.add(entry_id)
                    task = asyncio.create_task(self._handle(entry_id, fields, handle, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            toucher.cancel()
            if tasks:  # let updates in hand finish; the unfinished stay pending for another replica
                await asyncio.wait(tasks)

    async def _handle(
        self,
        entry_id: str,
        fields: dict[str, Any],
        handle: Callable[[dict[str, Any]], Awaitable[None]],
        slots: asyncio.Semaphore,
    ) -> None:
        started = time.monotonic()
        try:
            update = unkept(fields["update"], self.vault)
            if update is None:
                log.warning("update %s was sealed with another key: skipped", entry_id)
            else:
                await handle(update)
            metrics.UPDATES.labels("handled").inc()
        except Exception as err:  # the handlers' error handler has told the user already
            metrics.UPDATES.labels("failed").inc()
            log.warning("update %s failed: %s", entry_id, type(err).__name__)
        finally:
            metrics.UPDATE_SECONDS.observe(time.monotonic() - started)
            slots.release()
            self._in_hand.discard(entry_id)
        with contextlib.suppress(RedisError):  # unacknowledged, it would be handled again: the
            async with self.redis.pipeline(transaction=True) as pipe:  # dedupe stops that
                pipe.xack(self.stream, GROUP, entry_id)
                pipe.xdel(self.stream, entry_id)
                await pipe.execute()

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    async def _read_new(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        answer: Any = await self.redis.xreadgroup(
            GROUP, self.me, {self.stream: ">"}, count=count, block=int(self.block * 1000)
        )
        return [(entry_id, fields) for _, entries in answer or [] for entry_id, fields in entries]

    async def _claim_abandoned(self) -> list[tuple[str, dict[str, Any]]]:
        """Entries a dead replica held (idle for a lease): now this replica's."""
        _, entries, _ = await self.redis.xautoclaim(
            self.stream, GROUP, self.me, min_idle_time=int(self.lease * 1000), count=CLAIM_BATCH
        )
        taken = [(entry_id, fields) for entry_id, fields in entries if fields]
        if taken:
            metrics.UPDATES.labels("taken_over").inc(len(taken))
            log.info("took over %d update(s) from a replica that stopped", len(taken))
        return taken

    async def _touch_in_hand(self) -> None:
        """Keep the entries being handled from looking abandoned (their idle time restarts)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            if self._in_hand:
                with contextlib.suppress(RedisError):
                    await self.redis.xclaim(
                        self.stream,
                        GROUP,
                        self.me,
                        min_idle_time=0,
                        message_ids=list(self._in_hand),
                        justid=True,
                    )
