"""The one reader of the environment: every setting of worker, API and CLI.

`KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL` are read as they are; every other
setting is read from `BULKSTREAM_<FIELD>` (for example `BULKSTREAM_PARTITIONS`).
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULKSTREAM_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    redis_url: str = Field(
        default="redis://localhost:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
    )

    # Topics: declared once in streams/topics.py under these names.
    topic_commands: str = "bulk.commands"
    topic_commands_dlq: str = "bulk.commands.dlq"
    topic_command_results: str = "bulk.command-results"
    topic_job_events: str = "bulk.job-events"
    topic_sends: str = "bulk.sends"
    topic_fanout_pages: str = "bulk.fanout-pages"
    topic_fanout_done: str = "bulk.fanout-done"
    topic_progress: str = "bulk.progress"
    topic_control: str = "bulk.control"
    topic_delivery_status: str = "bulk.delivery-status"
    topic_delivery_status_dlq: str = "bulk.delivery-status.dlq"
    topic_message_events: str = "bulk.message-events"
    topic_webhooks: str = "bulk.webhooks"
    topic_webhooks_retry: str = "bulk.webhooks.retry"
    topic_webhooks_dlq: str = "bulk.webhooks.dlq"
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(
        default=1,
        ge=1,
        description=(
            "Replicas of every topic bulkstream creates (its own, and faust's changelog and "
            "assignor topics). 1 for a single dev broker; 3 on a real cluster."
        ),
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description=(
            "`min.insync.replicas` of every topic bulkstream creates: how many replicas "
            "must have a write before an acks=all producer (all of ours) is answered. "
            "Unset: the broker's default. 2 with 3 replicas: one broker can be lost "
            "without losing or refusing a write."
        ),
    )

    # Worker.
    app_id: str = "bulkstream"
    worker_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable name of this worker; its fan-out transactional id derives from it.",
    )
    data_dir: Path = Path(".local/state")
    job_view_interval_ms: int = Field(
        default=50,
        ge=0,
        description="A running job's view (its counters) is written at most this often "
        "while its pages report; a status change is written at once. 0: after every page.",
    )
    fanout_page_size: int = Field(default=500, ge=1)
    fanout_pages_per_transaction: int = Field(
        default=16,
        ge=1,
        description="Pages a fan-out transaction takes at most, of those already fetched. "
        "Each commit costs the broker a marker per partition written and the loop a round "
        "trip; a worker killed redoes its open transaction's pages.",
    )
    fanout_window_pages: int = Field(
        default=128,
        ge=2,
        description="Pages of one job handed to the fan-out and not yet reported, at most. "
        "A pause or cancel waits for these (the fan-out is not told); a larger window "
        "rides out a slower report loop.",
    )
    reports_batch: int = Field(
        default=10_000,
        ge=1,
        description="Delivery reports a worker reads and folds at once, at most. A batch's "
        "end (Kafka's acknowledgement of its events, the state, the views) runs while the "
        "next is folded; larger batches fold more reports per CPU-second.",
    )
    transaction_timeout_ms: int = Field(
        default=30_000,
        ge=1000,
        description=(
            "The fan-out's `transaction.timeout.ms`; librdkafka caps each send's delivery "
            "time at it. Keep it above a broker's failover (10-14 s measured on 3 brokers): "
            "at 10 s, every broker loss timed sends out and aborted the transactions. It "
            "is also how long a worker that died for good (not restarted under its worker "
            "id) holds its open transaction."
        ),
    )
    fanout_session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        description=(
            "`session.timeout.ms` of the fan-out consumer group: how long a worker that "
            "died without leaving keeps its pages' partitions."
        ),
    )
    fanout_assignment: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        default="range",
        description=(
            "`partition.assignment.strategy` of the fan-out consumer group. range "
            "(eager): a change stops the whole group for one round, and the jobs running "
            "meanwhile, small or large, were delayed less than under cooperative-sticky "
            "(KIP-429), which moves only the partitions that change hands but over two "
            "rounds, in three of four runs of the rebalance benchmark (CHANGELOG). The two "
            "protocols do not mix in one group: change it with every fan-out worker stopped."
        ),
    )
    fanout_static_membership: bool = Field(
        default=False,
        description=(
            "Join the fan-out group as a static member (KIP-345, `group.instance.id` = "
            "the worker id): a worker restarted under its id within the session timeout "
            "gets its partitions back without a rebalance, but one that leaves for good "
            "holds them until the session times out (docs/benchmarks.md)."
        ),
    )
    message_events_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4",
        description="The codec message events are compressed with on bulk.message-events "
        "(one a delivery report that raised a message's state: a million for a "
        "million-user job's round of reports). Kafka clients read every codec.",
    )
    state_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd",
        description="The codec of the state's changelog records (faust's producer): "
        "the delivery fold rewrites a block of 64 messages' states (3 to 5 KB of "
        "JSON) a record, which zstd sends and keeps in about a twentieth "
        "(docs/architecture.md). Changes nothing stored: a changelog reads every codec.",
    )
    message_ids: Literal["position", "identity"] = Field(
        default="position",
        description=(
            "How the jobs this worker creates make their message ids (streams/ids.py): "
            "`position` (the id carries the user's position, which the delivery fold "
            "reads without a lookup) or `identity` (a hash of job id and identity, as "
            "every release before 2026-12 made them). While a rolling upgrade from such "
            "a release runs, set `identity`: a worker of that release would look up a "
            "positional id in the job's index and dead-letter its reports, and would drop "
            "the job's choice when it rewrites the record. Once no such worker is left, "
            "go back to `position`; jobs keep the ids they were created with."
        ),
    )
    native: bool = Field(
        default=True,
        description=(
            "Use the native module `bulkstream_native` (native/, Rust) when it is "
            "installed: to expand fan-out pages (decode, routing check, the sends' JSON), "
            "to keep each ingesting job's users in a Bloom filter that spares the "
            "dedupe check a RocksDB read for a new user, to fold delivery reports, and to "
            "read the reports' and progress reports' feeds from Kafka by column. False: "
            "always in Python (the feeds through confluent-kafka), reading RocksDB for "
            "every user. Both give the same results (streams/fanout/expand.py, "
            "streams/aggregate/dedupe.py, streams/kafka/native_reader.py)."
        ),
    )
    worker_niceness: int = Field(
        default=0,
        ge=0,
        le=19,
        description=(
            "Added to the worker's CPU niceness at start. Workers are batch work: on a "
            "host they share with the API (or the broker), a positive value keeps the "
            "API's latency low during a fan-out."
        ),
    )
    command_checkpoint_seconds: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How often the worker records in its state which commands it applied. A "
            "crashed worker's partitions replay (harmlessly) what came after the record."
        ),
    )
    max_command_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        le=16 * 1024 * 1024,  # what bulk.commands takes (streams.kafka.topics.MAX_MESSAGE_BYTES)
        description=(
            "The largest command a worker applies. A larger one goes to the DLQ as "
            "`oversized` without being decoded, and the API answers 413 rather than "
            "send it. Keep it above BULKSTREAM_API_MAX_BODY_BYTES: a request's command "
            "is its body re-encoded, about as large."
        ),
    )
    retention_days: float = Field(default=30, gt=0)
    retention_sweep_seconds: float = Field(default=60, gt=0)
    result_ttl_seconds: int = Field(default=2 * 86_400, ge=86_400)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one JSON object per log line (for log shippers)."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description="The worker's /metrics, /healthz and /readyz; 0 picks a free port.",
    )

    # Redis views: every key starts with this prefix (see streams/keys.py).
    redis_prefix: str = "bulkstream"

    # HTTP API (`bulkstream api`).
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_keys: str = Field(
        default="",
        description="Comma-separated `tenant:key` pairs (keys are hashed when read).",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File of `tenant sha256:<hex of the key>` lines; only hashes on disk.",
    )
    api_access_log: bool = Field(
        default=False,
        description="uvicorn's log line per request; off, the API's Prometheus metrics "
        "count every request by route, method and code either way.",
    )
    api_max_users: int = Field(default=1000, ge=1)
    api_max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024)
    api_result_timeout: float = Field(default=10.0, gt=0)
    api_settle_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a cancel or pause waits for the job to be held before a 503 "
        "(retry with the same Idempotency-Key).",
    )
    api_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="The whole request body must arrive within this (408)."
    )
    api_max_json_depth: int = Field(
        default=100,
        ge=8,
        le=190,  # the worker's JSON parser stops at 200; later stages add two levels
        description="How deeply a request body may nest objects and arrays (400 beyond).",
    )
    idempotency_ttl_seconds: int = Field(default=25 * 3600, ge=86_400)

    # Webhooks (streams/webhooks/).
    webhooks_allow_private: bool = Field(
        default=False,
        description="Accept webhook URLs on private, loopback or link-local addresses "
        "(off: the server cannot be aimed at its own network).",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="One webhook request's whole time, connect included."
    )
    webhook_retry_horizon_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="How long a webhook event is retried before it goes to the DLQ topic.",
    )
    webhook_retry_first_seconds: float = Field(
        default=5.0, gt=0, description="The first retry's delay; each next one doubles (jitter)."
    )
    webhook_concurrency: int = Field(
        default=4, ge=1, le=64, description="Requests in flight to one endpoint, at most."
    )
    webhook_queue_size: int = Field(
        default=100,
        ge=1,
        description="Events waiting in memory for one endpoint, at most; more are parked "
        "on the retry topic (a slow endpoint never holds the dispatcher up).",
    )
    webhook_max_in_flight: int = Field(
        default=10_000,
        ge=1,
        description="Webhook messages in memory in one dispatcher (queued, being sent, being "
        "parked), at most: above it the dispatcher stops reading events until some settle.",
    )
    webhooks_per_tenant: int = Field(
        default=100, ge=1, description="Endpoints one tenant may have (POST /webhooks: 400)."
    )

    @model_validator(mode="after")
    def _replicas_can_be_in_sync(self) -> Settings:
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) is more than "
                f"replication_factor ({self.replication_factor}): no write could be accepted"
            )
        return self

    def topic_config(self) -> dict[str, str]:
        """Configuration every topic bulkstream creates carries, whoever creates it."""
        if self.min_insync_replicas is None:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    def env(self, **overrides: Any) -> dict[str, str]:
        """The environment variables that give another process these settings."""
        values = self.model_dump(mode="json") | overrides
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": str(values.pop("kafka_bootstrap_servers")),
            "REDIS_URL": str(values.pop("redis_url")),
        }
        for name, value in values.items():
            if value is not None:
                env[f"BULKSTREAM_{name.upper()}"] = str(value)
        return env

    @property
    def retention_seconds(self) -> int:
        return int(self.retention_days * 86_400)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
