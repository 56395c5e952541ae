"""CPU µs per delivery report of the reports feed's read from librdkafka: through
confluent-kafka, its `consume` (a `Message` object a record) and `record_columns`
(the batch by column, as `ReportBatch` takes it); through the native reader
(`streams.kafka.native_reader`, the feed's way when the module is built), its
`take`, by column already, and the `ReportBatch` that then reads the take (what
the delivery fold's `read_natively` does). This is what the feed pays before
`native/bench_fold.py`'s fold begins.

    .venv/bin/python native/bench_consume.py [--reports 300000]

Against the broker of `KAFKA_BOOTSTRAP_SERVERS`: the reports (bench/outcomes.py's
shape, one job's key) go to a topic of one partition made for the run and removed
after it. librdkafka is given time to fetch ahead before each take, so the figure
is the Python side's alone; batches of 10,000, as the feed takes them.
"""

from __future__ import annotations

import argparse
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.aggregate.command_feed import consumer_config, record_columns
from streams.aggregate.fold_codec import batch_reader
from streams.kafka.native_reader import NativeReader
from streams.settings import Settings

JOB = "1-69248100-735a1efde685854f21970d8e"
BATCH = 10_000


def produce(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20})
    for i in range(n):
        value = orjson.dumps(
            {
                "messageId": f"1-69248100-{i:024x}",
                "jobId": JOB,
                "status": "SENT",
                "at": 1_764_000_000_000 + i,
            }
        )
        while True:
            try:
                producer.produce(topic, value, JOB.encode())
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        raise SystemExit("the broker did not take every report in 60 s")


def measure(settings: Settings, topic: str, n: int) -> tuple[float, float]:
    """CPU µs a record of `consume` and of `record_columns`."""
    # The feed's own consumer (`streams.aggregate.command_feed.consumer_config`).
    consumer = Consumer(consumer_config(settings, f"{topic}-reader", BATCH))
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = len(consumer.consume(1, 10))
        consuming = columns = 0.0
        while got < n:
            time.sleep(0.05)  # librdkafka fetches ahead meanwhile
            started = time.thread_time()
            records = consumer.consume(BATCH, 0)
            taken = time.thread_time()
            record_columns(topic, records, frozenset({0}), {})
            consuming += taken - started
            columns += time.thread_time() - taken
            got += len(records)
        return consuming / got * 1e6, columns / got * 1e6
    finally:
        consumer.close()


def measure_native(settings: Settings, topic: str, n: int) -> tuple[float, float]:
    """CPU µs a record of the native reader's `take`, and of the `ReportBatch` that
    then reads the take's values (as the delivery fold does)."""
    report_batch = batch_reader()
    if report_batch is None:
        raise SystemExit("bulkstream_native is not installed: make native")
    reader = NativeReader(consumer_config(settings, f"{topic}-native", BATCH), topic)
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        got = len(reader.take(1, 10).offsets)
        taking = reading = 0.0
        while got < n:
            time.sleep(0.05)  # librdkafka fetches ahead meanwhile
            started = time.thread_time()
            fetched = reader.take(BATCH, 0)
            taken = time.thread_time()
            report_batch(fetched.values, fetched.keys, fetched.partitions, fetched.offsets)
            reading += time.thread_time() - taken
            taking += taken - started
            got += len(fetched.offsets)
        return taking / got * 1e6, reading / got * 1e6
    finally:
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=300_000)
    args = parser.parse_args()
    settings = Settings()
    bootstrap = settings.kafka_bootstrap_servers
    topic = f"bench-consume-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    try:
        produce(bootstrap, topic, args.reports)
        consuming, columns = measure(settings, topic, args.reports)
        taking, reading = measure_native(settings, topic, args.reports)
    finally:
        admin.delete_topics([topic])[topic].result()
    print(f"| per report ({args.reports:,}, batches of {BATCH:,}) | CPU |")
    print("|---|---|")
    print(f"| `Consumer.consume` | {consuming:.2f} µs |")
    print(f"| `record_columns` | {columns:.2f} µs |")
    print(f"| both | {consuming + columns:.2f} µs |")
    print(f"| the native reader's `take` | {taking:.2f} µs |")
    print(f"| `ReportBatch` of the take | {reading:.2f} µs |")
    print(f"| both | {taking + reading:.2f} µs |")


if __name__ == "__main__":
    main()
