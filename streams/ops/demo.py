"""`bulkstream demo`: the product's main job, end to end, on the running services.

Starts the workers and the API as real processes (the testing harness's,
`streams.testing.processes`; logs in `<data dir>/../demo`), creates a job of
generated users through the HTTP API, ingests them in 1,000-user requests
from a few concurrent clients, runs it, shows the live progress until
COMPLETED, then prints a summary and three of the send events a delivery
worker would consume.

Past ENQUEUED: `bulkstream deliver` (the reference delivery worker) posts each
send to a local stand-in for a provider that refuses about one message in 50;
its SENT and FAILED reports are folded back into the job's `delivery`
counts, and a webhook endpoint registered for `job.completed` and
`message.failed` receives them, signed. The demo ends once every message is
reported. The processes are stopped at the end; Kafka and Redis stay up.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console

from schemas.views import JobStatus, JobView
from streams.kafka.topics import ensure_topics
from streams.ops.watch import watch
from streams.settings import Settings
from streams.testing.hooks import WebhookReceiver
from streams.testing.processes import (
    ApiProcess,
    BulkstreamProcess,
    DeliverProcess,
    NotReady,
    start_workers,
    stop_all,
    wait_ready,
)
from streams.testing.receiver import Receiver, Rules
from streams.testing.users import BATCH
from streams.testing.users import generated_users as numbered_users

TENANT = "demo"
CLIENTS = 4
FAIL_EVERY = 50  # the stand-in provider refuses about one message in 50


class DemoFailed(Exception):
    """The demo could not reach COMPLETED; the message says where it stopped."""


class Stack:
    """The worker and API processes of the demo (`streams.testing.processes`)."""

    def __init__(self, settings: Settings, workers: int, key: str, log_dir: Path) -> None:
        # The provider and the webhook endpoint are on this host: allowed for the demo.
        self.settings = settings.model_copy(update={"webhooks_allow_private": True})
        self.log_dir = log_dir
        self.key = key
        self.workers = workers
        self.api = ApiProcess(self.settings, log_dir, keys={TENANT: key})
        self.api_url = self.api.url
        self.provider = Receiver(Rules(fail_every=FAIL_EVERY))
        self.hooks = WebhookReceiver()
        self.procs: list[BulkstreamProcess] = []

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.provider.start()
        self.hooks.start()
        workers = self.settings.model_copy(update={"metrics_port": 0})
        self.procs += start_workers(workers, self.workers, self.log_dir, "demo", ready=False)
        self.procs.append(self.api)
        self.api.start()
        deliver = DeliverProcess(
            workers, self.provider.url, self.log_dir, args=["--attempts", "2", "--backoff", "0.1"]
        )
        self.procs.append(deliver.start())

    def stop(self) -> None:
        stop_all(self.procs)
        self.provider.stop()
        self.hooks.stop()

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise DemoFailed(f"{proc.name} exited with {proc.returncode}; see {proc.log_path}")

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the API and every worker answer /readyz (workers have joined their groups)."""
        wait_ready(self.procs, timeout)


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    try:
        stack.start()
        yield stack
    except NotReady as exc:
        raise DemoFailed(str(exc)) from None
    finally:
        stack.stop()


def generated_users(start: int, count: int) -> list[dict[str, Any]]:
    return numbered_users(start, count, prefix="demo-user", data=_profile)


def _profile(i: int) -> dict[str, Any]:
    return {"name": f"User {i}", "plan": ("free", "pro", "team")[i % 3]}


async def post(http: httpx.AsyncClient, url: str, body: dict[str, Any] | None = None) -> Any:
    """POST as a careful client does: with an Idempotency-Key, retried on 503 after
    Retry-After (the API says 503 while a busy worker has not applied the command yet)."""
    headers = {"Idempotency-Key": secrets.token_hex(16)}
    deadline = time.monotonic() + 300
    while True:
        answer = await http.post(url, json=body, headers=headers)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))


async def _ingest(http: httpx.AsyncClient, job_id: str, users: int, console: Console) -> None:
    batches = asyncio.Queue[int]()
    for start in range(0, users, BATCH):
        batches.put_nowait(start)
    done = 0
    started = time.monotonic()

    async def client() -> None:
        nonlocal done
        while not batches.empty():
            start = batches.get_nowait()
            count = min(BATCH, users - start)
            answer = await post(http, f"/bulk/{job_id}", {"users": generated_users(start, count)})
            if answer.status_code != 200 or answer.json().get("total") != count:
                raise DemoFailed(f"ingest of users {start}..: {answer.status_code} {answer.text}")
            done += count
            if done % (BATCH * 10) == 0 or done == users:
                rate = done / max(time.monotonic() - started, 1e-6)
                console.print(f"ingested {done:,}/{users:,} users ({rate:,.0f}/s)", highlight=False)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def _end_offsets(settings: Settings) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": "-"})
    try:
        topic = settings.topic_sends
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in partitions
        ]
    finally:
        consumer.close()


def sample_sends(
    settings: Settings, job_id: str, since: list[TopicPartition], n: int = 3
) -> list[dict[str, Any]]:
    """The first `n` committed sends of this job after the given offsets."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bulkstream-demo-{secrets.token_hex(4)}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    found: list[dict[str, Any]] = []
    try:
        consumer.assign(since)
        deadline = time.monotonic() + 30
        while len(found) < n and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value = message.value()
            if value is not None:
                send = json.loads(value)
                if send.get("jobId") == job_id:
                    found.append(send)
    finally:
        consumer.close()
    return found


async def drive(
    settings: Settings, stack: Stack, users: int, console: Console, rate: int | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {stack.key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http:
        created = await post(
            http,
            "/bulk",
            {
                "message": {
                    "event": "demo-welcome",
                    "routing": {"method": "single", "channels": ["email"]},
                    "data": {"campaign": "bulkstream demo"},
                }
            },
        )
        if created.status_code != 200:
            raise DemoFailed(f"create: {created.status_code} {created.text}")
        job_id = created.json()["jobId"]
        hook = await post(
            http,
            "/webhooks",
            {"url": stack.hooks.url, "events": ["job.completed", "message.failed"]},
        )
        if hook.status_code != 201:
            raise DemoFailed(f"webhook: {hook.status_code} {hook.text}")
        stack.hooks.secret = hook.json()["secret"]
        console.print(f"job {job_id} created; ingesting {users:,} users", highlight=False)
        t0 = time.monotonic()
        await _ingest(http, job_id, users, console)
        t1 = time.monotonic()
        since = await asyncio.to_thread(_end_offsets, settings)
        ran = await post(http, f"/bulk/{job_id}/run", {"sendsPerSecond": rate} if rate else None)
        if ran.status_code != 202:
            raise DemoFailed(f"run: {ran.status_code} {ran.text}")
        pace = f", at most {rate:,} a second" if rate else ""
        console.print(
            f"running: one send event per user, through every worker{pace}", highlight=False
        )

        async def fetch() -> JobView | None:
            stack.check_alive()
            answer = await http.get(f"/bulk/{job_id}")
            return (
                JobView.model_validate(answer.json()["job"]) if answer.status_code == 200 else None
            )

        patience = max(600, users / 100, 2 * users / rate if rate else 0)
        job = await watch(fetch, console=console, give_up_after=patience)
        t2 = time.monotonic()
        if job is None or job.status is not JobStatus.COMPLETED:
            raise DemoFailed(f"job {job_id} ended as {job.status.value if job else 'unknown'}")
        console.print("delivering: every send posted to the provider, its outcome reported")
        deadline = time.monotonic() + patience
        while sum((job.delivery or {}).values()) < job.enqueued:
            if time.monotonic() > deadline:
                raise DemoFailed(f"only {sum((job.delivery or {}).values()):,} sends reported")
            await asyncio.sleep(0.5)
            job = await fetch() or job
        t3 = time.monotonic()
        hooks = stack.hooks.received()
        for _ in range(100):  # the job.completed webhook may still be on its way
            if any(h.type == "job.completed" for h in hooks):
                break
            await asyncio.sleep(0.1)
            hooks = stack.hooks.received()
    return {
        "job_id": job_id,
        "job": job,
        "ingest_seconds": t1 - t0,
        "fanout_seconds": t2 - t1,
        "deliver_seconds": t3 - t2,
        "hooks": hooks,
        "sends": await asyncio.to_thread(sample_sends, settings, job_id, since),
    }


def run_demo(
    settings: Settings,
    users: int,
    workers: int,
    console: Console | None = None,
    rate: int | None = None,
) -> int:
    console = console or Console()
    ensure_topics(settings)
    stack = Stack(settings, workers, secrets.token_urlsafe(24), settings.data_dir.parent / "demo")
    console.print(
        f"starting {workers} worker(s) and the API (logs in {stack.log_dir})", highlight=False
    )
    try:
        with running(stack):
            stack.wait_ready()
            outcome = asyncio.run(drive(settings, stack, users, console, rate))
    except DemoFailed as exc:
        console.print(f"demo failed: {exc}", style="red", highlight=False)
        return 1
    job = outcome["job"]
    console.print(
        f"\nCOMPLETED job {outcome['job_id']}\n"
        f"  users received {job.received:,}, sends enqueued {job.enqueued:,}, "
        f"failures {job.failures:,}\n"
        f"  ingest {outcome['ingest_seconds']:.1f} s "
        f"({job.received / outcome['ingest_seconds']:,.0f} users/s), "
        f"fan-out {outcome['fanout_seconds']:.1f} s "
        f"({job.enqueued / outcome['fanout_seconds']:,.0f} sends/s)\n"
        f"\nthree send events from {settings.topic_sends}:",
        highlight=False,
    )
    for send in outcome["sends"]:
        console.print_json(json.dumps(send), indent=None)
    hooks = outcome["hooks"]
    signed = sum(1 for hook in hooks if hook.signed)
    kinds = ", ".join(
        f"{sum(1 for h in hooks if h.type == kind):,} {kind}"
        for kind in sorted({h.type for h in hooks})
    )
    console.print(
        f"\ndelivered in {outcome['deliver_seconds']:.1f} s after COMPLETED: "
        f"{json.dumps(job.delivery)}\n"
        f"webhooks received: {kinds or 'none'}; {signed:,} of {len(hooks):,} signed validly",
        highlight=False,
        soft_wrap=True,
    )
    return 0
