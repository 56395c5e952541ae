"""Where a benchmark run happens: base settings, a namespace per scenario, clean-up, the machine.

Each scenario gets `fresh_settings(base, tag)` (topics, app id, Redis prefix
and state folder of its own, the tag naming this run and scenario), so it
never touches anybody else's topics, groups or keys; `cleanup` deletes
exactly what carries its tag.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
import redis
from confluent_kafka.admin import AdminClient
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from streams.settings import Settings
from streams.testing.topics import fresh_settings

REPO = Path(__file__).resolve().parent.parent
TENANT = "bench"


def redis_client(url: str) -> redis.Redis:
    """A client that rides out a Redis restart (others share this Redis) for up to a minute."""
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 60),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def stack_identity(settings: Settings) -> dict[str, str]:
    """What changes when Redis or Kafka restart: Redis' run id; Kafka's cluster id and, for
    the local stack, the broker's pid (from `make up`'s pid file, read only)."""
    out = {"Redis": "?", "Kafka": "?"}
    client = redis_client(settings.redis_url)
    try:
        out["Redis"] = str(client.info("server")["run_id"])
    except redis.RedisError:
        pass
    finally:
        client.close()
    try:
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        cluster = admin.describe_cluster(request_timeout=30).result(60)
        pid_file = REPO / ".local" / "kafka" / "kafka.pid"
        pid = pid_file.read_text().strip() if pid_file.exists() else ""
        out["Kafka"] = f"{cluster.cluster_id} {pid}"
    except Exception:
        pass
    return out


def restarted(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [name for name, value in before.items() if after.get(name) != value]


def plant_sentinel(settings: Settings, key: str) -> str:
    """A fresh value under `key` in Redis; `sentinel_intact` tells if a flush took it."""
    value = uuid.uuid4().hex
    client = redis_client(settings.redis_url)
    try:
        client.set(key, value, ex=86_400)
    finally:
        client.close()
    return value


def sentinel_intact(settings: Settings, key: str, value: str) -> bool:
    client = redis_client(settings.redis_url)
    try:
        found = client.get(key)
        client.delete(key)
        return isinstance(found, bytes) and found.decode() == value
    except redis.RedisError:
        return False
    finally:
        client.close()


@dataclass
class Run:
    """One `python -m bench` invocation: its id, base settings and folders."""

    run_id: str
    base: Settings
    log_dir: Path
    state_dir: Path
    keep: bool = False
    tags: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, keep: bool = False) -> Run:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        state_dir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
        log_dir = REPO / ".local" / "bench" / run_id
        log_dir.mkdir(parents=True, exist_ok=True)
        # Settings() reads KAFKA_BOOTSTRAP_SERVERS / REDIS_URL from the environment.
        base = Settings(metrics_port=0, data_dir=state_dir)
        return cls(run_id=run_id, base=base, log_dir=log_dir, state_dir=state_dir, keep=keep)

    def scenario(self, name: str) -> Settings:
        """Settings whose topics, app id, Redis prefix and state folder belong to `name` alone."""
        tag = f"bench-{self.run_id}-{name}"
        self.tags.append(tag)
        return fresh_settings(self.base, tag)

    @contextmanager
    def namespace(self, name: str) -> Iterator[Settings]:
        """`scenario(name)`'s settings, its namespace cleaned up when the block ends."""
        settings = self.scenario(name)
        try:
            yield settings
        finally:
            self.cleanup(settings)

    def cleanup(self, settings: Settings) -> None:
        """Delete the topics, consumer groups and Redis keys of one scenario's namespace."""
        if self.keep:
            return
        tag = settings.app_id.rsplit(".", 1)[-1]
        assert tag.startswith(f"bench-{self.run_id}-"), tag
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        topics = [t for t in admin.list_topics(timeout=30).topics if tag in t]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=60).values():
                try:
                    future.result(60)
                except Exception as exc:  # best effort: report, go on
                    print(f"bench: could not delete a topic of {tag}: {exc}", file=sys.stderr)
        _delete_groups(admin, tag)
        client = redis_client(settings.redis_url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)
        finally:
            client.close()
        shutil.rmtree(settings.data_dir, ignore_errors=True)

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def _delete_groups(admin: AdminClient, tag: str, patience: float = 30.0) -> None:
    """Delete the consumer groups carrying `tag`; a group whose stopped members have not
    timed out yet is still "not empty", so try again for a while."""
    deadline = time.monotonic() + patience
    while True:
        left: list[str] = []
        try:
            listed = admin.list_consumer_groups().result(30)
            groups = [g.group_id for g in listed.valid if tag in g.group_id]
            if groups:
                for group, future in admin.delete_consumer_groups(groups).items():
                    try:
                        future.result(30)
                    except Exception:
                        left.append(group)
        except Exception as exc:
            print(f"bench: could not list the groups of {tag}: {exc}", file=sys.stderr)
            return
        if not left:
            return
        if time.monotonic() > deadline:
            print(f"bench: groups left behind (not empty): {', '.join(left)}", file=sys.stderr)
            return
        time.sleep(2.0)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _kafka_version() -> str:
    pom = (REPO / "deploy" / "local" / "pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    return found.group(1) if found else "unknown"


# Steps of the speed probe's loop (`python_speed`), about 0.1-0.3 s of CPU a round.
PROBE_STEPS = 2_000_000


def python_speed() -> float:
    """Millions of steps per CPU-second of a fixed pure-Python loop (best of 3 rounds):
    how fast this host ran the interpreter at the time. Two runs' figures tell a slower
    machine from slower code; the same host has run the whole bench at a third of its
    usual speed on some days."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for step in range(PROBE_STEPS):
            total += step
        best = min(best, time.process_time() - started)
    return PROBE_STEPS / max(best, 1e-9) / 1e6


def cpu_ticks() -> tuple[int, int] | None:
    """(stolen, all) clock ticks of every core since boot (/proc/stat's first line:
    user, nice, system, idle, iowait, irq, softirq, steal), None where there is none."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if first[:1] != ["cpu"] or len(first) < 9:
        return None
    ticks = [int(field) for field in first[1:9]]
    return ticks[7], sum(ticks)


def stolen_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """The share of the cores' time the hypervisor took between two `cpu_ticks`."""
    if before is None or after is None or after[1] <= before[1]:
        return "unknown"
    return f"{(after[0] - before[0]) / (after[1] - before[1]):.1%}"


def machine_facts() -> dict[str, str]:
    """Cores, RAM, CPU model, Python and the client and broker versions; the load and
    the interpreter's speed now (`python_speed`)."""
    from importlib.metadata import version

    return {
        "cores": str(os.cpu_count()),
        "ram": f"{_ram_gib():.1f} GiB",
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kafka": _kafka_version(),
        "confluent-kafka": f"{version('confluent-kafka')} (librdkafka "
        f"{confluent_kafka.libversion()[0]})",
        "faust-streaming": version("faust-streaming"),
        "kernel": platform.release(),
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "speed": f"{python_speed():.1f}",
    }


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    users: int = 1_000_000
    workers: int = 2
    profile: bool = False
    memory_users: int | None = None  # the memory scenario's second size (default N/10)


def say(message: str) -> None:
    """One progress line on stdout, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
