"""Every topic bulkstream uses, declared once: name (from Settings), key, configuration.

`ensure_topics` creates missing ones with the admin client (idempotent), so
producers can write before any worker started, and raises the size limit of
existing ones that a newer release needs larger; `declare` gives the faust
app its topic objects.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from confluent_kafka.cimpl import KafkaError, KafkaException, NewTopic

from streams.settings import Settings

log = logging.getLogger(__name__)

# Commands carry up to 1,000 users (a 6 MB HTTP body); pages up to a page of users.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A dead letter is a command plus headers saying why: the DLQ takes more than
# bulk.commands does, so that the largest poison can be dead-lettered too.
MAX_DEAD_LETTER_BYTES = MAX_MESSAGE_BYTES + 1024 * 1024
DAY_MS = 86_400_000
# The webhooks' retry delays, each twice the one before (streams/webhooks/backoff.py).
WEBHOOK_RETRY_TIERS = 16


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    config: dict[str, str]
    partitions: int


def specs(settings: Settings) -> dict[str, TopicSpec]:
    """Role -> topic. Command-side topics are co-partitioned (same count, key = job id)."""
    n = settings.partitions
    retention = str(int(settings.retention_days * DAY_MS) + DAY_MS)
    big = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    # Every topic also carries the settings' min.insync.replicas, when one is set.
    kept = {"retention.ms": retention, **settings.topic_config()}
    return {
        "commands": TopicSpec(settings.topic_commands, "job id", {**big, **kept}, n),
        "commands_dlq": TopicSpec(
            settings.topic_commands_dlq,
            "job id",
            {"max.message.bytes": str(MAX_DEAD_LETTER_BYTES), **kept},
            n,
        ),
        "command_results": TopicSpec(settings.topic_command_results, "job id", kept, n),
        "job_events": TopicSpec(settings.topic_job_events, "job id", kept, n),
        "progress": TopicSpec(settings.topic_progress, "job id", kept, n),
        "control": TopicSpec(settings.topic_control, "job id", kept, n),
        "fanout_pages": TopicSpec(settings.topic_fanout_pages, "job id:page", {**big, **kept}, n),
        "fanout_done": TopicSpec(
            settings.topic_fanout_done,
            "job id:page",
            {"cleanup.policy": "compact,delete", **kept},
            n,
        ),
        "sends": TopicSpec(settings.topic_sends, "message id", kept, n),
        # Delivery outcomes: reports co-partitioned with the commands (they meet their
        # job's state), what could not be folded, and the message events they make.
        "delivery_status": TopicSpec(settings.topic_delivery_status, "job id", kept, n),
        "delivery_status_dlq": TopicSpec(
            settings.topic_delivery_status_dlq,
            "as received",
            {"max.message.bytes": str(MAX_DEAD_LETTER_BYTES), **kept},
            n,
        ),
        "message_events": TopicSpec(settings.topic_message_events, "job id", kept, n),
        # Webhooks: the tenants' endpoints (compacted: the latest of each), retries, DLQ.
        "webhooks": TopicSpec(
            settings.topic_webhooks,
            "tenant and webhook id",
            {"cleanup.policy": "compact", **settings.topic_config()},
            1,
        ),
        # One partition per delay tier (streams/webhooks/retries.py): each is in due order.
        "webhooks_retry": TopicSpec(
            settings.topic_webhooks_retry, "webhook id", kept, WEBHOOK_RETRY_TIERS
        ),
        "webhooks_dlq": TopicSpec(settings.topic_webhooks_dlq, "webhook id", kept, n),
        # faust's own: the state table's changelog and its assignor's leader topic, made
        # here before faust starts. Left to faust, a topic made as the group formed could
        # miss the first assignment's metadata: the changelog's partitions were then
        # assigned to no worker, and no command was applied.
        "state_changelog": TopicSpec(
            state_changelog(settings),
            "state key",
            {"cleanup.policy": "compact", **big, **settings.topic_config()},
            n,
        ),
        "assignor_leader": TopicSpec(
            f"{settings.app_id}-__assignor-__leader", "none", settings.topic_config(), 1
        ),
    }


def state_changelog(settings: Settings) -> str:
    """The changelog of the aggregate's state table (faust names it `<app>-<table>-changelog`)."""
    return f"{settings.app_id}-state-changelog"


SIZE_LIMIT = "max.message.bytes"


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create every topic that does not exist yet, and raise the size limit of
    existing ones to what this release needs. Nothing else of an existing topic
    is touched: its retention or partitions may have been chosen on purpose."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    listed = admin.list_topics(timeout=timeout).topics
    existing = set(listed)
    all_specs = specs(settings).values()
    for spec in all_specs:
        if spec.name in listed:
            warn_if_fewer_replicas(spec.name, listed[spec.name], settings.replication_factor)
    wanted = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=settings.replication_factor,
            config=spec.config,
        )
        for spec in all_specs
        if spec.name not in existing
    ]
    created = admin.create_topics(wanted, operation_timeout=timeout) if wanted else {}
    for name, future in created.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
            existing.add(name)  # made by someone else meanwhile, or not yet in the metadata
    sized = [spec for spec in all_specs if spec.name in existing and SIZE_LIMIT in spec.config]
    if sized:
        raise_size_limits(admin, sized, timeout)
    await_leaders(admin, [spec.name for spec in all_specs], timeout)


def warn_if_fewer_replicas(name: str, metadata: Any, wanted: int) -> None:
    """An existing topic keeps its replicas (changing them is a reassignment, an
    operator's job): say so when it has fewer than the settings ask for."""
    replicas = min((len(p.replicas) for p in metadata.partitions.values()), default=wanted)
    if replicas < wanted:
        log.warning(
            "topic %s has %d replica(s) per partition, BULKSTREAM_REPLICATION_FACTOR is %d: "
            "existing topics are not changed (reassign their partitions to add replicas)",
            name,
            replicas,
            wanted,
        )


def await_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until every partition of these topics has a leader.

    A topic made a moment ago can be listed before its partitions have
    leaders; aiokafka then leaves it out of the metadata, and faust starts
    without it ("Ignoring missing topic") and never consumes it: a worker
    that is ready and does nothing. Seen in CI after a test made and
    dropped hundreds of partitions."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        waiting = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or not topics[name].partitions
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without a leader after {timeout:.0f} s: {waiting}")
        time.sleep(0.1)


def raise_size_limits(admin: AdminClient, sized: list[TopicSpec], timeout: float) -> None:
    """An existing topic made by an older release may take smaller records than
    this one writes (the DLQ took 16 MB; its largest dead letter needs 17): the
    producer's record would be refused, and the worker would stop on it."""
    current = size_limits(admin, [spec.name for spec in sized], timeout)
    low = []
    for spec in sized:
        needed = int(spec.config[SIZE_LIMIT])
        if current[spec.name] < needed:
            log.warning(
                "topic %s takes records of up to %d bytes, needs %d: raising %s",
                spec.name,
                current[spec.name],
                needed,
                SIZE_LIMIT,
            )
            entry = ConfigEntry(
                SIZE_LIMIT, str(needed), incremental_operation=AlterConfigOpType.SET
            )
            low.append(ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[entry]))
    if not low:
        return
    for resource, future in admin.incremental_alter_configs(low, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise RuntimeError(f"could not raise {SIZE_LIMIT} of {resource.name}: {exc}") from exc


def size_limits(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """Each topic's `max.message.bytes`, waiting for a topic the broker does not know yet.

    A topic another process made a moment ago is known to the controller (our
    create said it exists) before the broker answering us has it: the broker
    answers "unknown topic". It is not safe to take that topic as made with this
    release's configuration: in a rolling deploy, the other process may be an
    older release."""
    deadline = time.monotonic() + timeout
    limits: dict[str, int] = {}
    pending = list(names)
    while pending:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in pending]
        described = admin.describe_configs(resources, request_timeout=timeout)
        unknown = []
        for name, resource in zip(pending, resources, strict=True):
            try:
                config = described[resource].result(timeout=timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
                unknown.append(name)
                continue
            limits[name] = int(config[SIZE_LIMIT].value)
        if unknown and time.monotonic() > deadline:
            raise RuntimeError(f"topics unknown to the broker after {timeout:.0f} s: {unknown}")
        pending = unknown
        if pending:
            time.sleep(0.1)
    return limits
