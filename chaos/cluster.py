"""The local three-node cluster under fault (`make cluster-up`), and where its roles live.

Which broker to kill is found the way Kafka itself places the roles:

* a job's command partition: the Java client's murmur2 partitioner on the job
  id (every bulkstream producer uses librdkafka's `murmur2_random`, the same
  function), then that partition's leader from the metadata;
* a transactional id's coordinator: the leader of partition
  `abs(javaHashCode(id)) % partitions` of `__transaction_state`
  (`TransactionStateManager.partitionFor`), checked against Kafka's own
  `kafka-transactions describe` (org.apache.kafka.tools.TransactionsCommand);
* a consumer group's coordinator: the admin client's group description.

`SendsTail` watches the sends topic as a `read_committed` consumer does, to
time how long after a fault the sends resumed.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "local" / "cluster.sh"
STATE = Path(os.environ.get("BULKSTREAM_LOCAL_DIR", ROOT / ".local")) / "cluster"
NODES = (1, 2, 3)
TRANSACTION_STATE = "__transaction_state"
OFFSETS = "__consumer_offsets"


# -- where Kafka puts a key, a transactional id, a group ----------------------
def _int32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def murmur2(data: bytes) -> int:
    """`org.apache.kafka.common.utils.Utils.murmur2`: the Java client's key hash (signed)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[full:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return _int32(h)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: `toPositive(murmur2(key)) % partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def java_hash_code(text: str) -> int:
    """`String.hashCode()`: over UTF-16 code units, in 32-bit arithmetic."""
    units = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return _int32(h)


def coordinator_partition(coordinator_key: str, partitions: int) -> int:
    """The partition of `__transaction_state` (a transactional id) or of
    `__consumer_offsets` (a group id) whose leader coordinates it:
    `Utils.abs(key.hashCode()) % partitions`, where `Utils.abs(MIN_VALUE)` is 0."""
    h = java_hash_code(coordinator_key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


# -- the cluster ------------------------------------------------------------
def bootstrap() -> str:
    return subprocess.run(
        [str(SCRIPT), "bootstrap"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _java_tool(main: str, *args: str) -> str:
    """Run a Kafka command-line tool from the cluster's jars; its standard output."""
    return subprocess.run(
        [
            "java",
            "-Xmx128m",
            "-Dlog4j2.configurationFile=" + str(ROOT / "deploy" / "local" / "log4j2.properties"),
            "-cp",
            str(STATE / "libs" / "*"),
            main,
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


class LocalCluster:
    """The three nodes `deploy/local/cluster.sh` started (by their pid files)."""

    def __init__(self, servers: str) -> None:
        self.servers = servers
        self.admin = AdminClient({"bootstrap.servers": servers, "log_level": 0})

    # -- processes
    def pid(self, node: int) -> int | None:
        path = STATE / f"node{node}" / "kafka.pid"
        if not path.exists():
            return None
        pid = int(path.read_text().strip())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill(self, node: int) -> float:
        """SIGKILL a node; the wall-clock time (`time.time()`) of the signal."""
        pid = self.pid(node)
        if pid is None:
            raise RuntimeError(f"node {node} is not running")
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        (STATE / f"node{node}" / "kafka.pid").unlink(missing_ok=True)
        return at

    def start(self, node: int) -> float:
        """Start a node and wait until it is a registered broker again; seconds it took."""
        began = time.monotonic()
        subprocess.run(
            [str(SCRIPT), "start", str(node)], check=True, stdout=subprocess.DEVNULL, timeout=300
        )
        return time.monotonic() - began

    # -- roles
    def metadata(self, topic: str | None = None) -> Any:
        return self.admin.list_topics(topic, timeout=30)

    def leader(self, topic: str, partition: int) -> int:
        leader: int = self.metadata(topic).topics[topic].partitions[partition].leader
        return leader

    def leaders(self) -> dict[int, int]:
        """Broker -> partitions it leads, over every topic."""
        count = dict.fromkeys(NODES, 0)
        for topic in self.metadata().topics.values():
            for partition in topic.partitions.values():
                if partition.leader in count:
                    count[partition.leader] += 1
        return count

    def transaction_coordinator(self, transactional_id: str) -> tuple[int, int]:
        """(broker, partition of __transaction_state) coordinating a transactional id."""
        partitions = len(self.metadata(TRANSACTION_STATE).topics[TRANSACTION_STATE].partitions)
        partition = coordinator_partition(transactional_id, partitions)
        return self.leader(TRANSACTION_STATE, partition), partition

    def described_transaction_coordinator(self, transactional_id: str) -> int | None:
        """The coordinator as Kafka's own `kafka-transactions describe` names it."""
        out = _java_tool(
            "org.apache.kafka.tools.TransactionsCommand",
            "--bootstrap-server",
            self.servers,
            "describe",
            "--transactional-id",
            transactional_id,
        )
        lines = [line.split() for line in out.splitlines() if line.strip()]
        for header, row in itertools.pairwise(lines):
            if header and header[0] == "CoordinatorId" and row and row[0].isdigit():
                return int(row[0])
        return None

    def group_coordinator(self, group: str) -> int:
        description = self.admin.describe_consumer_groups([group])[group].result(timeout=30)
        coordinator: int = description.coordinator.id
        return coordinator

    def quorum_leader(self) -> int | None:
        """The active KRaft controller (`kafka-metadata-quorum describe --status`)."""
        out = _java_tool(
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server",
            self.servers,
            "describe",
            "--status",
        )
        found = re.search(r"^LeaderId:\s+(\d+)", out, re.MULTILINE)
        return int(found.group(1)) if found else None

    def roles(
        self, node: int, transactional_ids: list[str], group: str, controller: int | None
    ) -> str:
        """What a node holds at this moment, for the report (`controller`: the active
        controller, found beforehand: asking takes a JVM's start)."""
        held = [f"leads {self.leaders()[node]} partitions"]
        for tid in transactional_ids:
            if self.transaction_coordinator(tid)[0] == node:
                held.append(f"coordinates {tid.rsplit('-', 1)[-1]}'s transactions")
        try:
            if self.group_coordinator(group) == node:
                held.append("coordinates the fan-out group")
        except Exception:  # not formed yet
            pass
        if controller == node:
            held.append("is the active controller")
        return ", ".join(held)

    def under_replicated(self) -> list[str]:
        """Partitions with fewer in-sync replicas than replicas, or no leader."""
        out = []
        for name, topic in self.metadata().topics.items():
            for number, partition in topic.partitions.items():
                if partition.leader < 0 or len(partition.isrs) < len(partition.replicas):
                    out.append(f"{name}/{number}")
        return out

    def await_whole(self, timeout: float = 600) -> float:
        """Every node running and registered, every partition fully in sync; seconds waited."""
        began = time.monotonic()
        for node in NODES:
            if self.pid(node) is None:
                self.start(node)
        while True:
            try:
                brokers = set(self.metadata().brokers)
                lagging = self.under_replicated()
            except Exception as exc:  # a metadata request that timed out: ask again
                brokers, lagging = set(), [str(exc)]
            if brokers >= set(NODES) and not lagging:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise RuntimeError(
                    f"cluster not whole after {timeout:.0f} s: brokers {sorted(brokers)}, "
                    f"{len(lagging)} partitions under-replicated ({lagging[:5]})"
                )
            time.sleep(1)


# -- the sends, as a read_committed consumer sees them ------------------------
@dataclass
class SendsTail:
    """Reads a sends topic read_committed from its start, on a thread, noting for
    every send its record timestamp and when this reader got it."""

    servers: str
    topic: str
    seen: list[tuple[float, float]] = field(default_factory=list)  # (record ts, seen at), s
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SendsTail:
        consumer = Consumer(
            {
                "bootstrap.servers": self.servers,
                "group.id": f"sends-tail-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "log_level": 0,
            }
        )
        partitions = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="sends-tail", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                batch = consumer.consume(10_000, timeout=0.2)
                now = time.time()
                for message in batch:
                    # Errors (a broker down, an end of partition) are librdkafka's to retry.
                    if message.error() is None:
                        self.seen.append((message.timestamp()[1] / 1000, now))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def after(self, at: float) -> dict[str, float | None]:
        """Seconds from `at` to: the first send produced after it that was committed
        (its record timestamp), the first send this reader got after it, and the
        longest pause in what this reader got, from `at` to the end of the fan-out."""
        produced = [ts for ts, _ in self.seen if ts > at]
        got = sorted(seen for _, seen in self.seen if seen > at)
        pause = None
        if got:
            moments = [at, *got]
            pause = max(b - a for a, b in itertools.pairwise(moments))
        return {
            "produced": min(produced) - at if produced else None,
            "seen": got[0] - at if got else None,
            "pause": pause,
        }
