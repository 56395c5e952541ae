"""Prometheus metrics of worker and API, and the worker's own small HTTP endpoint.

Every metric is declared here, once. The worker serves them with `/healthz`
(its event loop answers) and `/readyz` (it has joined its consumer groups) on
`BULKSTREAM_METRICS_HOST:BULKSTREAM_METRICS_PORT`; the API serves them on its
own port at `/metrics`. Counters are per process and count what that process
did, so a replay after a crash can count an event twice: they are for
operating, not accounting (the job's counters in Redis are the exact ones).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

COMMANDS = Counter(
    "bulkstream_commands",
    "Commands the aggregate answered, by kind (create/ingest/run/cancel/pause/resume) and "
    "outcome (ok/error/dlq); a cancel or pause once it settled.",
    ["kind", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "bulkstream_command_duration_seconds",
    "Time the aggregate spent on one command, by kind (create/ingest/run, or dlq).",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
USERS_INGESTED = Counter("bulkstream_users_ingested", "Users accepted into jobs.")
SENDS = Counter("bulkstream_sends", "Send events committed by the fan-out.")
USERS_CANCELED = Counter(
    "bulkstream_users_canceled", "Users of canceled jobs never sent (counted when it settles)."
)
CONTROL_SETTLE_SECONDS = Histogram(
    "bulkstream_job_control_settle_seconds",
    "From a pause or cancel applied to the job held (no page out).",
    ["operation"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PAGES_RELEASED = Counter(
    "bulkstream_pages_released", "Pages handed to the fan-out (again after a takeover too)."
)
DRY_RUN_USERS = Counter(
    "bulkstream_dry_run_users", "Users resolved by dry runs, by outcome.", ["outcome"]
)
SEND_FAILURES = Counter("bulkstream_send_failures", "Users the fan-out could not route.")
FANOUT_PAGES = Counter("bulkstream_fanout_pages", "Pages of users fanned out (committed).")
FANOUT_PAGES_REPORTED_AGAIN = Counter(
    "bulkstream_fanout_pages_reported_again",
    "Pages emitted again after they were fanned out: their progress report sent again, "
    "nothing else (the aggregate had not counted them: after a rebalance, or a lost report).",
)
FANOUT_LOOP_CPU = Counter(
    "bulkstream_fanout_loop_cpu_seconds",
    "CPU time of the fan-out loop's own thread (librdkafka's threads not included).",
)
FANOUT_LOOP_SECONDS = Counter(
    "bulkstream_fanout_loop_seconds",
    "Wall time of the fan-out loop's thread, by what it did: `waiting` for pages (none "
    "fetched), `producing` a transaction's sends, reports and done-markers, `committing` "
    "its offsets and the transaction (which waits until the broker acknowledged every "
    "record of it).",
    ["phase"],
)
CONSUMER_LAG = Gauge(
    "bulkstream_consumer_lag",
    "Records not yet consumed, per partition this process holds.",
    ["group", "topic", "partition"],
)
JOB_DURATION = Histogram(
    "bulkstream_job_duration_seconds",
    "From a job's run command to COMPLETED.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
JOB_TRANSITIONS = Counter(
    "bulkstream_job_transitions", "Job status changes, by the new status.", ["status"]
)
REDIS_WAITS = Counter(
    "bulkstream_redis_waits",
    "Calls to Redis a worker retried, by what stopped them: away or slow (ConnectionError, "
    "TimeoutError), loading its data (BusyLoadingError), full (OutOfMemoryError: over "
    "maxmemory under noeviction).",
    ["error"],
)
JOBS_PURGED = Counter(
    "bulkstream_jobs_purged", "Finished jobs deleted at the end of their retention."
)
PURGED_KEYS = Counter(
    "bulkstream_purged_state_keys",
    "State keys a purge deleted through the changelog (a tombstone each; a job's users' "
    "index goes by range deletions, not counted).",
)
PURGE_SECONDS = Histogram(
    "bulkstream_purge_seconds",
    "A purge's wall time, its turns of the event loop to other agents included.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)
VIEWS_REBUILT_JOBS = Counter(
    "bulkstream_views_rebuilt_jobs", "Jobs whose Redis views were written again from the state."
)
VIEWS_REBUILD_SECONDS = Histogram(
    "bulkstream_views_rebuild_seconds",
    "Rebuilding the views of one partition's jobs (Redis was new or flushed).",
    buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
DELIVERY_REPORTS = Counter(
    "bulkstream_delivery_reports",
    "Delivery reports read, by what came of them: `folded` (a message reached a state), "
    "`unchanged` (seen before, or lower than the message's state), or the reason it went "
    "to the DLQ.",
    ["outcome"],
)
FEED_SECONDS = Counter(
    "bulkstream_feed_seconds",
    "Wall time of the aggregate's feeds (`commands`, `progress`, `reports`), by what each did: "
    "`fetching` (taking what librdkafka fetched, or waiting for the next record), "
    "`applying` (handling a batch, its awaits included), `checkpointing` (the feed's "
    "own time at its periodic checkpoint: the wait for what was sent before the "
    "cursors runs beside the feed, in a task). The rest of the wall time the event "
    "loop spent on other work.",
    ["feed", "phase"],
)
FEED_TAKE_CPU_SECONDS = Counter(
    "bulkstream_feed_take_cpu_seconds",
    "CPU time of the aggregate's feeds' takes, on their fetch thread (librdkafka's poll "
    "and the records handed over), by feed: the part of `bulkstream_feed_seconds` "
    "`fetching` spent taking, not waiting for records or for the event loop.",
    ["feed"],
)
DELIVERY_FOLD_SECONDS = Counter(
    "bulkstream_delivery_fold_seconds",
    "Wall time of the delivery fold's batches, by step: `reading` (decoding and "
    "validating reports), `checking` (finding each message: by the position its id "
    "carries, else in the job's index), "
    "`folding` (the message states, the events and the views' entries), `waiting` "
    "(for the end of the batch before); and the end of a batch, which runs while the "
    "next is read, checked and folded: `acknowledging` (awaiting Kafka's "
    "acknowledgement of the events and dead letters) while `viewing` (the Redis "
    "views' write), then `recording` (the state's writes).",
    ["phase"],
)
MESSAGE_STATES = Counter(
    "bulkstream_message_states",
    "Messages that reached a delivery state (the highest reported), by state.",
    ["status"],
)
HTTP_REQUESTS = Counter(
    "bulkstream_http_requests",
    "HTTP requests answered, by route, method and code.",
    ["route", "method", "code"],
)
JOB_VIEW_ANSWERS = Counter(
    "bulkstream_api_job_view_answers",
    "GET /bulk/{id} answers of known jobs: from the API's kept copy (copy) or read from "
    "Redis (redis).",
    ["source"],
)
HTTP_LATENCY = Histogram(
    "bulkstream_http_request_duration_seconds",
    "Time to answer an HTTP request, by route, method and code.",
    ["route", "method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# The reference delivery worker (`bulkstream deliver`, streams/deliver/).
DELIVER_SENT = Counter(
    "bulkstream_deliver_sent",
    "Sends the delivery worker's provider took (2xx), reported SENT (acknowledged).",
)
DELIVER_FAILED = Counter(
    "bulkstream_deliver_failed",
    "Sends the delivery worker gave up on, reported FAILED (acknowledged): a final 4xx "
    "(`final`) or every attempt failed (`exhausted`).",
    ["why"],
)
DELIVER_WITHHELD = Counter(
    "bulkstream_deliver_withheld",
    "Give-ups the delivery worker did not report: the views already had the message in "
    "a state other than FAILED (a send read again after a crash or a rebalance, whose "
    "first delivery went through; `streams.deliver.known`).",
)
DELIVER_ATTEMPTS = Counter(
    "bulkstream_deliver_attempts",
    "HTTP requests the delivery worker made to its provider, by outcome "
    "(2xx/3xx/4xx/5xx/timeout/error).",
    ["outcome"],
)

# The webhooks stage (streams/webhooks/).
WEBHOOK_ATTEMPTS = Counter(
    "bulkstream_webhook_attempts",
    "Webhook requests made, by outcome: delivered (2xx), failed (another status), gone "
    "(410: the endpoint is disabled), timeout, error (no answer), refused (the host "
    "resolved to an address the URL policy refuses).",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter("bulkstream_webhook_deliveries", "Webhook messages delivered (2xx).")
WEBHOOK_DEAD_LETTERS = Counter(
    "bulkstream_webhook_dead_letters",
    "Webhook messages given up on past the retry horizon (to bulk.webhooks.dlq).",
)
WEBHOOK_DISABLED = Counter(
    "bulkstream_webhook_disabled", "Webhook endpoints disabled because they answered 410 Gone."
)
WEBHOOK_PARKED = Counter(
    "bulkstream_webhook_parked",
    "Webhook messages written to the retry topic, by why: retry (an attempt failed) or "
    "overflow (the endpoint's queue was full).",
    ["why"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "bulkstream_webhook_delivery_seconds",
    "From an event read by the dispatcher to its webhook delivered (retries included).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
WEBHOOK_EVENTS_SKIPPED = Counter(
    "bulkstream_webhook_events_skipped",
    "Message events passed over unread while no enabled endpoint took message events.",
)
WEBHOOK_IN_FLIGHT = Gauge(
    "bulkstream_webhook_in_flight",
    "Webhook messages the dispatcher holds in memory (queued, being sent, being parked).",
)


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus' text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


class LagGauge:
    """Keeps the lag series of one consumer group to the partitions held now."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.series: set[tuple[str, str]] = set()

    def update(self, lags: Iterable[tuple[str, int, int]]) -> None:
        current = set()
        for topic, partition, lag in lags:
            labels = (topic, str(partition))
            CONSUMER_LAG.labels(self.group, *labels).set(max(lag, 0))
            current.add(labels)
        for gone in self.series - current:
            CONSUMER_LAG.remove(self.group, *gone)
        self.series = current


class Health:
    """What `/healthz` and `/readyz` answer: a heartbeat and named readiness flags."""

    def __init__(self, stale_after: float = 30.0) -> None:
        self.stale_after = stale_after
        self.last_beat = time.monotonic()
        self.ready: dict[str, bool] = {}

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.stale_after

    def is_ready(self) -> bool:
        return bool(self.ready) and all(self.ready.values()) and self.alive()


def serve(host: str, port: int, health: Health) -> Callable[[], None]:
    """Serve /metrics, /healthz and /readyz on a daemon thread; return its stopper."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = exposition()
                self._answer(200, body, content_type)
            elif path == "/healthz":
                ok = health.alive()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"event loop stalled\n")
            elif path == "/readyz":
                ok = health.is_ready()
                waiting = ", ".join(name for name, up in health.ready.items() if not up)
                text = "ready\n" if ok else f"not ready: {waiting or 'starting'}\n"
                self._answer(200 if ok else 503, text.encode())
            else:
                self._answer(404, b"not found\n")

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes and probes every few seconds are not worth a log line

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("metrics, health and readiness on http://%s:%d", host, server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
