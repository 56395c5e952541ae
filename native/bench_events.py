"""CPU µs per delivery report of folding a located group and queueing its message
events: the fold answering the events and `BatchProducer.send_all` (confluent-kafka,
one `produce` call an event) queueing them, against the fold queueing them itself on
the native producer (`events_to`, the delivery fold's way when the module is built).

    .venv/bin/python native/bench_events.py [--reports 300000] [--rounds 3]

Against the broker of `KAFKA_BOOTSTRAP_SERVERS`: each way's events go to a topic of
one partition made for the run and removed after it, batches of 10,000 SENT
reports of one job (bench/outcomes.py's shape), each batch acknowledged before the
next. `thread` is the calling thread's CPU for the fold and the queueing (what the
delivery fold's threads pay; the acknowledgement's wait is not counted), `process`
the whole process's from the first batch to the last acknowledgement, librdkafka's
threads and the flushing thread included.
The two ways alternate, round after round; the table gives each round's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable

import orjson
from confluent_kafka.admin import AdminClient, NewTopic

from streams.aggregate.fold_codec import batch_reader, fold_group
from streams.ids import message_id_prefix, positional_message_id
from streams.kafka.config import producer_config
from streams.kafka.native_producer import NativeBatchProducer
from streams.kafka.producer import BatchProducer
from streams.settings import Settings

JOB, TENANT, CREATED = "1-69248100-735a1efde685854f21970d8e", "acme", 1.76e9
BATCH = 10_000


def report_values(n: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "messageId": positional_message_id(CREATED, JOB, i),
                "jobId": JOB,
                "status": "SENT",
                "at": 1_760_000_000_000 + i,
            }
        )
        for i in range(n)
    ]


def measure(
    settings: Settings, topic: str, values: list[bytes], native: bool
) -> tuple[float, float, float]:
    """(thread, of which `send_all`, process) CPU µs a report: fold each batch, queue
    its events, then await their acknowledgement."""
    ReportBatch = batch_reader()
    assert ReportBatch is not None, "bulkstream_native is not built (make native)"
    make: Callable[[dict[str, object]], BatchProducer] = (
        NativeBatchProducer if native else BatchProducer
    )
    producer = make(producer_config(settings))
    prefix = message_id_prefix(CREATED)
    thread = queueing = 0.0

    async def run() -> None:
        nonlocal thread, queueing
        for start in range(0, len(values), BATCH):
            chunk = values[start : start + BATCH]
            read = ReportBatch(
                chunk, [JOB.encode()] * len(chunk), [0] * len(chunk), list(range(len(chunk)))
            )
            # Positions beyond the job's own would not be located: the job holds them all.
            read.locate([(prefix, len(values), TENANT, [])])
            blocks: dict[int, bytes | None] = dict.fromkeys(read.block_numbers(0))
            failed = producer.failed()
            began = time.thread_time()
            if isinstance(producer, NativeBatchProducer):
                fold_group(read, 0, None, blocks, TENANT, producer.events_to(topic))
                acknowledged = producer.acknowledgement(failed)
            else:
                encoded = fold_group(read, 0, None, blocks, TENANT)
                folded = time.thread_time()
                acknowledged = await producer.send_all(topic, JOB.encode(), encoded.events)
                queueing += time.thread_time() - folded
            thread += time.thread_time() - began
            await acknowledged

    try:
        began_process = time.process_time()
        asyncio.run(run())
        process = time.process_time() - began_process
    finally:
        producer.close(30)
    return tuple(cpu / len(values) * 1e6 for cpu in (thread, queueing, process))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    topics = [f"bench-events-{uuid.uuid4().hex[:8]}" for _ in range(2 * args.rounds)]
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result()
    values = report_values(args.reports)
    rows = []
    try:
        for round_ in range(args.rounds):
            python = measure(settings, topics[2 * round_], values, native=False)
            native = measure(settings, topics[2 * round_ + 1], values, native=True)
            rows.append((python, native))
    finally:
        for future in admin.delete_topics(topics).values():
            future.result()
    print(
        f"| per report ({args.reports:,}, batches of {BATCH:,}) "
        "| thread CPU | of which `send_all` | process CPU |"
    )
    print("|---|---|---|---|")
    for n, (python, native) in enumerate(rows, 1):
        for way, (thread, queueing, process) in (
            ("events answered, `send_all`", python),
            ("events queued by the fold", native),
        ):
            print(f"| round {n}: {way} | {thread:.2f} µs | {queueing:.2f} µs | {process:.2f} µs |")


if __name__ == "__main__":
    main()
