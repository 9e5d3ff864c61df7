"""What a replica counts, for `/metrics` (Prometheus text): one place for every metric's name.

Counters and histograms are updated where the thing happens; gauges of queue depths are read from
Redis when Prometheus scrapes (see `bot.web`). Names follow Prometheus conventions: `_total` for
counters, base units (seconds) for durations.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets from a snappy reply to a long upload.
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

UPDATES = Counter(
    "nvb_updates_total",
    "Telegram updates, by what became of them",
    ["outcome"],  # recorded | duplicate | handled | failed | taken_over
    registry=REGISTRY,
)
UPDATE_SECONDS = Histogram(
    "nvb_update_seconds", "Time to handle one update", buckets=SECONDS, registry=REGISTRY
)
TURNS = Counter(
    "nvb_turns_total",
    "Chat turns with the agent, by how they ended",
    ["outcome"],  # answered | silent | timed_out | dropped | cancelled | failed | busy | cut
    registry=REGISTRY,
)
TURN_FIRST_REPLY_SECONDS = Histogram(
    "nvb_turn_first_reply_seconds",
    "From a message to the agent's first words in the chat",
    buckets=SECONDS,
    registry=REGISTRY,
)
UPLOADS = Counter(
    "nvb_uploads_total",
    "Files forwarded to the backend, by outcome",
    ["outcome"],  # added | refused | failed
    registry=REGISTRY,
)
RENDERS = Counter(
    "nvb_renders_total",
    "Renders, by outcome",
    ["outcome"],  # started | completed | failed | timed_out
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "nvb_deliveries_total",
    "Finished videos delivered to chats, by how",
    ["outcome"],  # video | link | failed | resent (again, by file id)
    registry=REGISTRY,
)
TELEGRAM_429 = Counter(
    "nvb_telegram_429_total", "429 Too Many Requests answers from Telegram", registry=REGISTRY
)
TELEGRAM_RETRIES = Counter(
    "nvb_telegram_retries_total",
    "Bot API requests sent again",
    ["reason"],  # flood | network
    registry=REGISTRY,
)
TELEGRAM_THINNED = Counter(
    "nvb_telegram_thinned_total",
    "Cosmetic Bot API requests (typing, progress) dropped to keep the budget for answers",
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "nvb_backend_errors_total",
    "NemoVideo API failures, by kind",
    ["kind"],  # the error class: TokenExpired, RateLimited, BackendUnavailable, ...
    registry=REGISTRY,
)
BACKEND_SECONDS = Histogram(
    "nvb_backend_request_seconds",
    "NemoVideo API calls (streams excluded), by operation",
    ["operation"],
    buckets=SECONDS,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "nvb_queue_depth",
    "Work waiting or in hand, read from Redis at scrape time",
    ["queue"],  # updates_pending | renders_active | turns_running | uploads_pending
    registry=REGISTRY,
)
REPLICAS = Gauge("nvb_replicas_alive", "Replicas whose heartbeat is fresh", registry=REGISTRY)


def exposition() -> bytes:
    """Every metric in the Prometheus text format."""
    return generate_latest(REGISTRY)
