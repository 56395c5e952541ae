"""The dispatcher against real Kafka, Redis, API and HTTP receivers: every request
signed (checked by the official verifier), retried under one webhook-id until a
2xx, 410 disabling the endpoint, the horizon ending in the DLQ, a hanging
endpoint holding up no one else, the URL policy again at delivery time, and
pending retries surviving a killed dispatcher."""

from __future__ import annotations

import itertools
import re
import threading
import time

import httpx
import orjson
import redis
from confluent_kafka import Consumer
from confluent_kafka.cimpl import TopicPartition

from schemas.delivery import DeliveryStatus
from schemas.views import JobStatus
from streams.settings import Settings
from streams.testing.processes import ApiProcess, WorkerProcess, cli, wait_for
from streams.testing.topics import read_topic
from streams.webhooks.skip import SKIP_SECONDS
from tests.streams.webhooks.conftest import Events, Hit, Receiver, Stack


def _subscribe(api: ApiProcess, tenant: str, url: str, events: list[str]) -> dict[str, str]:
    with api.client(tenant) as client:
        answer = client.post("/webhooks", json={"url": url, "events": events})
        assert answer.status_code == 201, answer.text
        hook: dict[str, str] = answer.json()
        return hook


def _metric(worker: WorkerProcess, name: str, labels: str = "") -> float:
    text = httpx.get(f"{worker.metrics_url()}/metrics", timeout=5).text
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _events_committed(settings: Settings) -> int:
    """Job events the webhooks group has committed, over every partition."""
    group = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.app_id}-webhooks",
        }
    )
    try:
        wanted = [TopicPartition(settings.topic_job_events, p) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in group.committed(wanted, timeout=10))
    finally:
        group.close()


def _ids(hits: list[Hit]) -> set[str]:
    return {hit.headers["webhook-id"] for hit in hits}


def test_a_failing_endpoint_gets_the_same_message_until_it_answers_2xx(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    receiver.scripts["/flaky"] = lambda n: (500 if n <= 5 else 200, 0.0)
    worker = stack.worker(webhook_retry_first_seconds=0.1)
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/flaky"), ["job.*"])

    events.message("acme", "job-1", DeliveryStatus.DELIVERED)  # not a type it takes
    events.job("acme", "job-1", JobStatus.CREATED, previous=JobStatus.CREATED)  # no change
    event = events.job("acme", "job-1", JobStatus.PROCESSING)
    wait_for(lambda: len(receiver.to("/flaky")) >= 6, 30, "six attempts")
    time.sleep(1.0)  # nothing comes after the 2xx

    hits = receiver.to("/flaky")
    assert len(hits) == 6
    assert len(_ids(hits)) == 1  # every attempt: the same webhook-id
    bodies = [hit.verified(hook["secret"]) for hit in hits]  # and a valid signature
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["type"] == "job.processing"
    assert bodies[0]["data"] == event.to_wire()
    assert bodies[0]["timestamp"].endswith("Z")
    assert all(re.fullmatch(r"[0-9]+", hit.headers["webhook-timestamp"]) for hit in hits)
    assert hits[0].headers["content-type"] == "application/json"
    # Exponential back-off: each wait at least about twice the one before.
    waits = [b.at - a.at for a, b in itertools.pairwise(hits)]
    for n, wait in enumerate(waits):
        assert wait >= 0.1 * 2**n * 0.9, waits

    assert _metric(worker, "bulkstream_webhook_attempts_total", '{outcome="failed"}') == 5
    assert _metric(worker, "bulkstream_webhook_attempts_total", '{outcome="delivered"}') == 1
    assert _metric(worker, "bulkstream_webhook_deliveries_total") == 1
    assert _metric(worker, "bulkstream_webhook_parked_total", '{why="retry"}') == 5


def test_an_event_published_again_comes_under_the_same_webhook_id(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    """A fold or a command applied again after a crash publishes the same event at a new
    offset: a receiver deduplicating on `webhook-id` must see it once."""
    stack.worker()
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/all"), ["*"])

    failed = events.message("acme", "job-1", DeliveryStatus.FAILED)
    events.again(failed)
    paused = events.job("acme", "job-1", JobStatus.PAUSED, JobStatus.PROCESSING, version=4)
    events.again(paused)
    # Paused again later: another change (another version), another message.
    events.job("acme", "job-1", JobStatus.PAUSED, JobStatus.PROCESSING, version=6)
    # Written before job events carried a version: each record is its own message.
    legacy = events.job("acme", "job-1", JobStatus.COMPLETED, JobStatus.PROCESSING)
    events.again(legacy)
    wait_for(lambda: len(receiver.to("/all")) >= 7, 30, "seven requests")
    time.sleep(1.0)  # nothing more comes

    hits = receiver.to("/all")
    assert len(hits) == 7
    by_id: dict[str, list[str]] = {}
    for hit in hits:
        body = hit.verified(hook["secret"])
        by_id.setdefault(hit.headers["webhook-id"], []).append(body["type"])
    assert sorted(by_id.values()) == [
        ["job.completed"],
        ["job.completed"],
        ["job.paused"],
        ["job.paused", "job.paused"],
        ["message.failed", "message.failed"],
    ]


def test_message_events_no_endpoint_takes_are_passed_over_unread(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    """With endpoints for job events only, the message-events partitions are paused and
    moved to their end: their records are passed over, not read. An endpoint for
    message events, once acknowledged, meets the events written after it; once it is
    deleted, they are passed over again."""
    worker = stack.worker()
    api = stack.api()
    _subscribe(api, "acme", receiver.url("/jobs"), ["job.*"])

    def skipped() -> float:
        return _metric(worker, "bulkstream_webhook_events_skipped_total")

    def until_passed_over() -> float:
        """Events until some are passed over: the partition is paused from then on. The
        count once it settles: a move on whose end was asked before the last events
        were written counts them at the next one (a second later)."""
        before = skipped()
        deadline = time.monotonic() + 30
        while skipped() == before:
            assert time.monotonic() < deadline, "no message event passed over"
            events.messages("acme", "job-1", DeliveryStatus.SENT, 20)
            time.sleep(0.5)
        counted, still_since = skipped(), time.monotonic()
        while time.monotonic() - still_since < 3 * SKIP_SECONDS:
            assert time.monotonic() < deadline + 30, "the count of events passed over settles"
            time.sleep(0.2)
            if (now := skipped()) != counted:
                counted, still_since = now, time.monotonic()
        return counted

    before = until_passed_over()
    events.messages("acme", "job-1", DeliveryStatus.FAILED, 300)
    # Every one of them passed over: none was read (a record read is not counted).
    wait_for(lambda: skipped() == before + 300, 30, "300 message events passed over")
    events.job("acme", "job-1", JobStatus.COMPLETED, JobStatus.PROCESSING)
    wait_for(lambda: len(receiver.to("/jobs")) == 1, 30, "the job event")

    # An endpoint for failures, then at once a failure: it meets it, and only it.
    hook = _subscribe(api, "acme", receiver.url("/failed"), ["message.failed"])
    failed = events.message("acme", "job-2", DeliveryStatus.FAILED)
    wait_for(lambda: len(receiver.to("/failed")) >= 1, 30, "the failure after the endpoint")
    time.sleep(1.5)  # nothing more comes
    [hit] = receiver.to("/failed")
    body = hit.verified(hook["secret"])
    assert body["type"] == "message.failed"
    assert body["data"]["messageId"] == failed.message_id

    with api.client("acme") as client:
        assert client.delete(f"/webhooks/{hook['id']}").status_code == 204
    before = until_passed_over()
    events.messages("acme", "job-3", DeliveryStatus.FAILED, 100)
    wait_for(lambda: skipped() == before + 100, 30, "100 message events passed over")
    assert len(receiver.to("/failed")) == 1


def test_a_hanging_endpoint_holds_up_no_other_endpoint_or_tenant(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    receiver.scripts["/hang"] = lambda n: (200, 30.0)
    # Each endpoint: 2 requests at a time, 6 more queued in memory.
    worker = stack.worker(webhook_timeout_seconds=3.0, webhook_concurrency=2, webhook_queue_size=6)
    api = stack.api()
    _subscribe(api, "acme", receiver.url("/hang"), ["*"])
    fast = _subscribe(api, "acme", receiver.url("/fast"), ["job.*"])
    other = _subscribe(api, "globex", receiver.url("/other"), ["*"])

    started = time.monotonic()
    for n in range(6):
        events.job("acme", f"acme-{n}")
        events.message("acme", f"acme-{n}", DeliveryStatus.SENT)
        events.job("globex", f"globex-{n}")
    events.message("globex", "globex-0", DeliveryStatus.SENT)
    wait_for(
        lambda: len(receiver.to("/fast")) == 6 and len(receiver.to("/other")) == 7,
        10,
        "the other endpoints' messages",
    )
    # All there well before the hanging endpoint's first requests even timed out (3 s).
    assert time.monotonic() - started < 2.0
    # The hanging endpoint holds its own 2 requests at a time, no more.
    assert len(receiver.to("/hang")) == 2
    # Each tenant's endpoints get that tenant's events only.
    assert {h.verified(fast["secret"])["data"]["tenant"] for h in receiver.to("/fast")} == {"acme"}
    assert {h.verified(other["secret"])["data"]["tenant"] for h in receiver.to("/other")} == {
        "globex"
    }
    # Of its 12 messages, 2 are being sent and 6 wait in its queue: 4 were parked on the
    # retry topic at once (the consumer never waited for it).
    assert _metric(worker, "bulkstream_webhook_parked_total", '{why="overflow"}') >= 4
    wait_for(
        lambda: _metric(worker, "bulkstream_webhook_attempts_total", '{outcome="timeout"}') >= 2,
        10,
        "the hanging requests to time out",
    )


def test_410_gone_disables_the_endpoint(stack: Stack, receiver: Receiver, events: Events) -> None:
    receiver.scripts["/gone"] = lambda n: (410, 0.0)
    worker = stack.worker()
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/gone"), ["*"])
    events.job("acme", "job-1")
    wait_for(lambda: receiver.to("/gone"), 10, "the first request")

    def listed() -> list[dict[str, object]]:
        with api.client("acme") as client:
            items: list[dict[str, object]] = client.get("/webhooks").json()["items"]
            return items

    wait_for(lambda: listed()[0]["disabled"] is True, 10, "GET /webhooks to show it disabled")
    assert listed() == [{**hook, "disabled": True}]
    for n in range(3):
        events.job("acme", f"job-{n + 2}")
        events.message("acme", "job-1", DeliveryStatus.SENT)
    time.sleep(1.5)
    assert len(receiver.to("/gone")) == 1  # nothing more was sent to it
    records = read_topic(stack.settings, stack.settings.topic_webhooks)
    assert [value["disabled"] for _, value, _ in records] == [False, True]
    assert _metric(worker, "bulkstream_webhook_disabled_total") == 1


def test_past_the_horizon_the_message_goes_to_the_dlq(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    receiver.scripts["/down"] = lambda n: (503, 0.0)
    worker = stack.worker(webhook_retry_horizon_seconds=1.5)
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/down"), ["job.completed"])
    event = events.job("acme", "job-1", JobStatus.COMPLETED, previous=JobStatus.PROCESSING)

    dead = read_topic(
        stack.settings, stack.settings.topic_webhooks_dlq, expected=1, idle=0.5, timeout=30
    )
    assert len(dead) == 1
    key, letter, _ = dead[0]
    hits = receiver.to("/down")
    assert _ids(hits) == {letter["webhookId"]}
    assert key == letter["webhookId"].encode()
    assert letter["failures"] == len(hits) >= 3  # 0, 0.2, 0.6 (1.4) s: then past 1.5 s
    assert letter["subscriptionId"] == hook["id"]
    assert letter["tenant"] == "acme"
    assert letter["url"] == hook["url"]
    assert letter["type"] == "job.completed"
    assert "HTTP 503" in letter["reason"]
    assert hits[0].verified(hook["secret"])["data"] == event.to_wire()
    time.sleep(1.0)
    assert len(receiver.to("/down")) == len(hits)  # and nothing more
    assert _metric(worker, "bulkstream_webhook_dead_letters_total") == 1


def test_a_dead_letter_replayed_is_sent_again_under_its_webhook_id(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    """`bulkstream dlq replay webhooks` once the endpoint is mended: the message is sent
    once more, under the webhook id its attempts had, signed anew."""
    mended = threading.Event()
    receiver.scripts["/mended"] = lambda n: (200 if mended.is_set() else 503, 0.0)
    stack.worker(webhook_retry_horizon_seconds=1.5)
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/mended"), ["job.completed"])
    event = events.job("acme", "job-1", JobStatus.COMPLETED, previous=JobStatus.PROCESSING)
    dead = read_topic(
        stack.settings, stack.settings.topic_webhooks_dlq, expected=1, idle=0.5, timeout=30
    )
    tried = len(receiver.to("/mended"))
    listed = cli(stack.settings, "dlq", "list", "webhooks")
    assert listed.returncode == 0, listed.stderr
    [letter] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert letter["webhookId"] == dead[0][1]["webhookId"]
    assert (letter["url"], letter["type"]) == (hook["url"], "job.completed")
    assert letter["failures"] == tried
    assert "HTTP 503" in letter["reason"]

    mended.set()
    replayed = cli(stack.settings, "dlq", "replay", "webhooks")
    assert replayed.returncode == 0, replayed.stderr
    assert orjson.loads(replayed.stdout)["replayed"] == 1
    wait_for(lambda: len(receiver.to("/mended")) > tried, 30, "the replayed message")
    again = receiver.to("/mended")[tried:]
    assert _ids(again) == {letter["webhookId"]}
    assert again[0].verified(hook["secret"])["data"] == event.to_wire()
    time.sleep(1.0)
    assert len(receiver.to("/mended")) == tried + 1, "delivered once: nothing more"


def test_a_private_address_is_refused_at_delivery_time_too(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    # Created while private addresses were allowed (or while its name resolved to a
    # public one): the dispatcher checks again, and never connects.
    stack.worker(webhooks_allow_private=False, webhook_retry_horizon_seconds=1.0)
    api = stack.api()
    _subscribe(api, "acme", receiver.url("/inside"), ["*"])
    events.job("acme", "job-1")
    dead = read_topic(
        stack.settings, stack.settings.topic_webhooks_dlq, expected=1, idle=0.5, timeout=30
    )
    assert "private address" in dead[0][1]["reason"]
    assert receiver.to("/inside") == []


def test_a_retry_waiting_on_kafka_survives_a_killed_dispatcher(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    receiver.scripts["/later"] = lambda n: (500 if n == 1 else 200, 0.0)
    first = stack.worker("w1", webhook_retry_first_seconds=2.0)
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/later"), ["job.*"])
    events.job("acme", "job-1")
    # The failed attempt's retry is on the retry topic, due in 2 s, and the event's offset
    # is committed (the event itself will not be read again): kill the dispatcher.
    parked = read_topic(
        stack.settings, stack.settings.topic_webhooks_retry, expected=1, idle=0.1, timeout=30
    )
    wait_for(lambda: _events_committed(stack.settings) == 1, 10, "the event's offset committed")
    first.kill()
    assert parked[0][1]["failures"] == 1
    stack.worker("w2", webhook_retry_first_seconds=2.0)
    wait_for(lambda: len(receiver.to("/later")) >= 2, 60, "the retry after the restart")
    time.sleep(1.0)
    hits = receiver.to("/later")
    assert len(hits) == 2
    assert _ids(hits) == {parked[0][1]["webhookId"]}
    assert all(hit.verified(hook["secret"])["type"] == "job.processing" for hit in hits)


def test_a_retry_held_through_a_rebalance_is_still_sent(
    stack: Stack, receiver: Receiver, events: Events
) -> None:
    """A retry tier is paused while its head is not due. A rebalance that gives it back
    to the same dispatcher leaves it paused in librdkafka: the dispatcher must resume
    it, or the retry (and every later one of its tier) is never sent."""
    receiver.scripts["/later"] = lambda n: (500 if n == 1 else 200, 0.0)
    stack.worker("w1", webhook_retry_first_seconds=10.0)
    api = stack.api()
    hook = _subscribe(api, "acme", receiver.url("/later"), ["job.*"])
    events.job("acme", "job-1")
    read_topic(
        stack.settings, stack.settings.topic_webhooks_retry, expected=1, idle=0.1, timeout=30
    )
    time.sleep(1.5)  # the dispatcher has read the retry back, and holds its tier (10 s)
    # A member joins for the job events only: every partition goes back to w1, the
    # held retry tier among them (an eager rebalance revokes them all first).
    joiner = Consumer(
        {
            "bootstrap.servers": stack.settings.kafka_bootstrap_servers,
            "group.id": f"{stack.settings.app_id}-webhooks",
            "enable.auto.commit": False,
        }
    )
    assigned: list[int] = []
    joiner.subscribe(
        [stack.settings.topic_job_events],
        on_assign=lambda _, partitions: assigned.extend(tp.partition for tp in partitions),
    )

    def joined() -> list[int]:
        joiner.poll(0.1)  # the joiner's rebalance callbacks run in its poll
        return assigned

    try:
        wait_for(joined, 30, "the joiner's partitions")
        wait_for(lambda: len(receiver.to("/later")) >= 2, 30, "the retry after the rebalance")
    finally:
        joiner.close()
    hits = receiver.to("/later")
    assert len(_ids(hits)) == 1
    assert all(hit.verified(hook["secret"])["type"] == "job.processing" for hit in hits)


def test_the_view_is_rebuilt_from_the_topic(
    stack: Stack, receiver: Receiver, redis_client: redis.Redis
) -> None:
    api = stack.api()
    kept = _subscribe(api, "acme", receiver.url("/kept"), ["*"])
    gone = _subscribe(api, "acme", receiver.url("/gone"), ["*"])
    theirs = _subscribe(api, "globex", receiver.url("/theirs"), ["job.*"])
    with api.client("acme") as acme:
        assert acme.delete(f"/webhooks/{gone['id']}").status_code == 204
    # Redis loses the view (this test's keys only); a dispatcher writes it again from
    # bulk.webhooks when it starts (and whenever its marker is gone).
    lost = list(redis_client.scan_iter(match=f"{stack.settings.redis_prefix}:*webhooks*"))
    assert lost
    redis_client.delete(*lost)
    with api.client("acme") as acme, api.client("globex") as globex:
        assert acme.get("/webhooks").json() == {"items": []}
        stack.worker()
        wait_for(lambda: acme.get("/webhooks").json()["items"], 10, "the view rebuilt")
        assert acme.get("/webhooks").json() == {"items": [kept]}
        assert globex.get("/webhooks").json() == {"items": [theirs]}
