"""The delivery worker against the real broker and the local receiver: one report
per send with the right outcome, keyed by job id; commits only over finished
sends; at a stop, sends still in hand abandoned uncommitted and read again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from prometheus_client import REGISTRY

from chaos.cluster import key_partition
from schemas.delivery import DeliveryReport, DeliveryStatus
from streams.deliver.known import KnownOutcomes
from streams.deliver.worker import DeliverOptions
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import free_port, wait_for
from streams.testing.receiver import Receiver, Rules
from streams.views.connection import redis_from_url
from streams.views.delivery import DeliveryViews, MessageOutcome
from tests.streams.deliver.conftest import (
    TENANT,
    Sends,
    committed_offsets,
    delivering,
    produce_sends,
    read_reports,
    send_events,
)


def fast(url: str, **overrides: Any) -> DeliverOptions:
    """Quick retries: three attempts a few milliseconds apart."""
    quick = DeliverOptions(url, attempts=3, backoff=0.005, backoff_max=0.02, session_timeout=6.0)
    return replace(quick, **overrides)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _kind(data: dict[str, Any]) -> str:
    if data.get("fail") is True:
        return "always-500"
    if data.get("fail") == 400:
        return "400"
    if "failTimes" in data:
        return "flaky"
    return "ok"


def test_every_send_is_reported_once_with_its_outcome_keyed_by_job(
    settings: Settings, sends: Sends
) -> None:
    ensure_topics(settings)
    # Two jobs; of each: sends that go through, that fail twice then go through,
    # that always get 500, and that get 400.
    for job_id in ("1-aaaaaaaa-job-one", "1-bbbbbbbb-job-two"):
        data: list[dict[str, Any]] = []
        for i in range(150):
            data.append(
                {"fail": True}
                if i % 10 == 1
                else {"fail": 400}
                if i % 10 == 2
                else {"failTimes": 2}
                if i % 10 == 3
                else {"n": i}
            )
        produce_sends(settings, send_events(job_id, data), into=sends)
    # A record that is no send event is passed over (and committed past).
    produce_sends(settings, [b"not a send event"], into=sends)
    # An aborted transaction's sends are never read (read_committed).
    aborted = send_events("1-cccccccc-aborted", [{}] * 20)
    produce_sends(settings, aborted, commit=False)
    by_id = sends.by_id()
    before = {
        "sent": _sample("bulkstream_deliver_sent_total"),
        "final": _sample("bulkstream_deliver_failed_total", why="final"),
        "exhausted": _sample("bulkstream_deliver_failed_total", why="exhausted"),
        "5xx": _sample("bulkstream_deliver_attempts_total", outcome="5xx"),
    }
    with Receiver() as receiver:
        with delivering(settings, fast(receiver.url, concurrency=8, max_in_flight=16)) as worker:
            records = read_reports(settings, expected=len(by_id))
            wait_for(
                lambda: committed_offsets(settings, worker.group) == _ends(settings, sends),
                20,
                "the commits to reach every send",
            )
        tally = receiver.tally()

    reports = [DeliveryReport.model_validate(value) for _, value, _ in records]
    assert Counter(r.message_id for r in reports) == Counter(list(by_id)), "one report per send"
    for (key, _, partition), report in zip(records, reports, strict=True):
        send = by_id[report.message_id]
        assert key == send["jobId"].encode() == report.job_id.encode()
        assert partition == key_partition(key, settings.partitions)  # Java's murmur2
        assert (report.tenant, report.provider) == (TENANT, "http")
        assert abs(report.at - time.time() * 1000) < 120_000
        kind = _kind(send["data"])
        attempts = tally.attempts[report.message_id]
        if kind in ("ok", "flaky"):
            assert (report.status, report.reason) == ("SENT", None)
            assert attempts == (3 if kind == "flaky" else 1)
        elif kind == "always-500":
            assert report.status == "FAILED"
            assert report.reason == 'HTTP 500: {"error":"refused"}, after 3 attempt(s)'
            assert attempts == 3
        else:
            assert report.status == "FAILED"
            assert report.reason == 'HTTP 400: {"error":"refused"}'
            assert attempts == 1, "a 400 is final"
    assert not tally.bad, tally.bad  # content type and idempotency key as they should be
    assert not set(tally.attempts) - set(by_id), "a send of an aborted transaction was posted"
    assert worker.most_in_flight <= 16, worker.most_in_flight
    assert (worker.sent, worker.failed, worker.skipped) == (len(by_id) - 60, 60, 1)
    kinds = Counter(_kind(e["data"]) for e in sends.events)
    assert _sample("bulkstream_deliver_sent_total") - before["sent"] == kinds["ok"] + kinds["flaky"]
    assert _sample("bulkstream_deliver_failed_total", why="final") - before["final"] == kinds["400"]
    exhausted = _sample("bulkstream_deliver_failed_total", why="exhausted") - before["exhausted"]
    assert exhausted == kinds["always-500"]
    fives = _sample("bulkstream_deliver_attempts_total", outcome="5xx") - before["5xx"]
    assert fives == 3 * kinds["always-500"] + 2 * kinds["flaky"]


def _ends(settings: Settings, sends: Sends) -> dict[int, int]:
    """The committed offsets a group that finished every send has (-1001: no send there)."""
    return {p: sends.ends.get(p, -1001) for p in range(settings.partitions)}


def test_a_full_worker_pauses_a_stop_abandons_its_sends_and_the_next_one_resumes(
    settings: Settings, sends: Sends
) -> None:
    ensure_topics(settings)
    produce_sends(settings, send_events("1-dddddddd-stopped", [{}] * 40), into=sends)
    # A provider that answers 503 for now: every send sits in its retries.
    down = Rules(flaky=1_000_000)
    slow = {"attempts": 1000, "backoff": 0.1, "backoff_max": 0.2, "max_in_flight": 10}
    with Receiver(down) as receiver:
        with delivering(settings, fast(receiver.url, drain_seconds=0.5, **slow)) as worker:
            wait_for(lambda: worker.paused, 30, "the full worker to pause its partitions")
            time.sleep(0.5)
            assert len(receiver.tally().attempts) == 10, "no more taken than the bound"
        assert worker.sent == worker.failed == 0
        assert read_reports(settings, expected=0, idle=1.0) == []
        assert set(committed_offsets(settings, worker.group).values()) == {-1001}, "committed"

        # The next worker of the group reads the abandoned sends again; once the
        # provider is back, it resumes and reports every send.
        with delivering(settings, fast(receiver.url, **slow)) as again:
            wait_for(lambda: again.paused, 30, "the next worker to pause too")
            receiver.rules = Rules()
            records = read_reports(settings, expected=40, idle=1.0)
            wait_for(
                lambda: committed_offsets(settings, again.group) == _ends(settings, sends),
                20,
                "the commits to reach every send",
            )
        assert not again.paused
        assert set(receiver.tally().accepted) == set(sends.by_id())
    assert sorted(v["messageId"] for _, v, _ in records) == sorted(sends.by_id())
    assert {v["status"] for _, v, _ in records} == {"SENT"}


def _have_reported(settings: Settings, job_id: str, states: dict[str, list[str]]) -> None:
    """The delivery views hold each message of `states` (message id -> the states its
    reports reached, the last the highest), as the aggregate writes them after a fold."""
    outcomes = [
        MessageOutcome(
            n,
            message_id,
            DeliveryStatus(reached[-1]),
            1_000 + n,
            None,
            "http",
            {DeliveryStatus(state): 1_000 + n for state in reached},
        )
        for n, (message_id, reached) in enumerate(states.items())
    ]

    async def write() -> None:
        redis = redis_from_url(settings.redis_url)
        try:
            views = DeliveryViews(redis, settings.redis_prefix, settings.retention_seconds)
            await views.write(TENANT, job_id, outcomes)
        finally:
            await redis.aclose()

    asyncio.run(write())


def test_a_give_up_is_not_reported_for_a_message_that_went_out_before(
    settings: Settings, sends: Sends, redis_client: Any
) -> None:
    """A send read again (its worker died after the provider took it) whose second
    delivery fails: the views have it as sent, so its give-up is not reported, and the
    message does not end FAILED. Give-ups of messages not known to have gone out are."""
    ensure_topics(settings)
    job_id = "1-eeeeeeee-read-again"
    events = send_events(job_id, [{"fail": True}] * 5)  # the provider refuses them all
    produce_sends(settings, events, into=sends)
    ids = [e["messageId"] for e in events]
    _have_reported(
        settings,
        job_id,
        {ids[0]: ["SENT"], ids[1]: ["SENT", "DELIVERED"], ids[2]: ["FAILED"]},
    )
    before = _sample("bulkstream_deliver_withheld_total")
    with Receiver() as receiver:
        with delivering(settings, fast(receiver.url)) as worker:
            records = read_reports(settings, expected=3)
            wait_for(
                lambda: committed_offsets(settings, worker.group) == _ends(settings, sends),
                20,
                "the commits to pass every send, the withheld ones included",
            )
        tally = receiver.tally()
    assert all(tally.attempts[i] == 3 for i in ids), "every send was posted again"
    reported = {v["messageId"]: v["status"] for _, v, _ in records}
    assert len(records) == 3
    assert reported == {ids[2]: "FAILED", ids[3]: "FAILED", ids[4]: "FAILED"}
    assert (worker.sent, worker.failed, worker.withheld) == (0, 3, 2)
    assert _sample("bulkstream_deliver_withheld_total") - before == 2


def test_a_give_up_is_reported_when_the_views_cannot_be_read(
    settings: Settings, sends: Sends, redis_client: Any
) -> None:
    """Redis out of reach: no way to know the message went out, so the give-up is
    reported (a report of what happened rather than none)."""
    ensure_topics(settings)
    job_id = "1-ffffffff-no-views"
    events = send_events(job_id, [{"fail": True}] * 2)
    produce_sends(settings, events, into=sends)
    _have_reported(settings, job_id, {events[0]["messageId"]: ["SENT"]})
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with Receiver() as receiver, delivering(unreachable, fast(receiver.url)) as worker:
        records = read_reports(settings, expected=2)
    assert sorted(v["messageId"] for _, v, _ in records) == sorted(e["messageId"] for e in events)
    assert {v["status"] for _, v, _ in records} == {"FAILED"}
    assert worker.withheld == 0


def test_after_a_failed_read_the_views_are_left_alone_for_a_while(
    settings: Settings, caplog: Any
) -> None:
    """Redis out of reach: one read fails and warns; the give-ups of the next seconds
    are answered without asking (no time-out each, no warning each), and counted in
    the next warning, once the views are asked again."""
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})

    async def scenario() -> list[bool]:
        known = KnownOutcomes(unreachable, retry_seconds=0.5)
        try:
            answers = [await known.went_out("acme", f"1-00000000-{i:024x}") for i in range(6)]
            await asyncio.sleep(0.6)
            answers.append(await known.went_out("acme", "1-00000000-" + "f" * 24))
            return answers
        finally:
            await known.close()

    with caplog.at_level("WARNING", logger="streams.deliver.known"):
        answers = asyncio.run(scenario())
    assert answers == [False] * 7
    warnings = [r.getMessage() for r in caplog.records if r.name == "streams.deliver.known"]
    assert len(warnings) == 2, warnings
    assert "(0 were since" in warnings[0]
    assert "(5 were since" in warnings[1]
