"""`python -m tests.image --image bulkstream:0.1.0`: see tests/image/__init__.py.

Its own topics, app id and Redis prefix (a fresh tag per run), so it can share
a broker with other runs; everything it started is removed at the end (or
kept, with --keep). Exit 0 only when every check holds; the last line counts
them.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from courier import Courier

from streams.ids import positional_message_id
from streams.kafka.topics import ensure_topics
from streams.ops.demo import post
from streams.settings import Settings
from streams.testing.processes import free_port
from streams.testing.topics import drop_topics, fresh_settings, read_topic
from streams.testing.users import generated_users
from streams.views import keys
from tests.image.engine import ROOT, STATE_DIR, Container, Engine, detect_engine

TENANT = "imagetest"
# Pages of 50 users (the default is 500): 2,000 fan-out transactions for 100k
# users, so the fan-out lasts long enough for the kill to land inside it.
PAGE_SIZE = 50
BATCH = 1000  # users per ingest request (Courier's informal limit)
CLIENTS = 4  # concurrent ingest requests
KILL_AT = 0.2  # the share of the job enqueued when a worker is killed


class Checks:
    """Named checks, each held or not; printed as they come and counted at the end."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}
        self.started = time.monotonic()

    def __call__(self, name: str, held: bool, detail: str = "") -> bool:
        self.results[name] = held
        mark = "ok  " if held else "FAIL"
        print(f"[image-test] {mark} {name}{f': {detail}' if detail else ''}", flush=True)
        return held

    def note(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[image-test] {elapsed:6.1f} s  {text}", flush=True)

    @property
    def failed(self) -> list[str]:
        return [name for name, held in self.results.items() if not held]


def wait_for(
    probe: Callable[[], Any], timeout: float, what: str, watch: list[Container], every: float = 0.5
) -> Any:
    """Poll until `probe` gives a true value; fail at once, with its log, if a
    watched container stopped."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        for container in watch:
            if not container.running():
                raise AssertionError(
                    f"{container.name} stopped (exit {container.exit_code()}) while waiting for "
                    f"{what}:\n{container.log_tail()}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    """Two worker containers and one API container of the image, on their own topics."""

    def __init__(
        self, engine: Engine, image: str, settings: Settings, tag: str, log_dir: Path
    ) -> None:
        self.settings = settings
        self.tag = tag
        self.key = f"sk-{secrets.token_hex(16)}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.metrics: dict[str, int] = {}
        self.workers: dict[str, Container] = {}
        common = {"data_dir": STATE_DIR, "metrics_host": "127.0.0.1"}
        for worker_id in ("worker-1", "worker-2"):
            self.metrics[worker_id] = port = free_port()
            env = settings.env(**common, worker_id=worker_id, metrics_port=port)
            self.workers[worker_id] = Container(
                engine,
                f"bulkstream-{tag}-{worker_id}",
                image,
                ["worker"],
                env,
                volume=f"bulkstream-{tag}-{worker_id}",
                log_path=log_dir / f"{worker_id}.log",
            )
        env = settings.env(**common, worker_id="api", api_keys=f"{TENANT}:{self.key}")
        self.api = Container(
            engine,
            f"bulkstream-{tag}-api",
            image,
            ["api", "--host", "127.0.0.1", "--port", str(self.api_port)],
            env,
            log_path=log_dir / "api.log",
        )

    @property
    def containers(self) -> list[Container]:
        return [*self.workers.values(), self.api]

    def start(self) -> None:
        for container in self.containers:
            container.create().start()

    def wait_ready(self, containers: list[Container] | None = None, timeout: float = 300) -> None:
        for container in containers or self.containers:
            url = self.readyz(container)
            wait_for(partial(answers_200, url), timeout, f"{container.name} ready", [container])

    def readyz(self, container: Container) -> str:
        if container is self.api:
            return f"{self.api_url}/readyz"
        worker_id = next(w for w, c in self.workers.items() if c is container)
        return f"http://127.0.0.1:{self.metrics[worker_id]}/readyz"

    def remove(self) -> None:
        for container in reversed(self.containers):
            if container.created:
                container.stop()
            container.remove()

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def sdk(self) -> Courier:
        return Courier(api_key=self.key, base_url=self.api_url, _strict_response_validation=True)

    def created_at(self, job_id: str) -> float:
        key = keys.job(self.settings.redis_prefix, TENANT, job_id)
        raw = redis.Redis.from_url(self.settings.redis_url).hget(key, "createdAt")
        assert raw is not None, f"no createdAt in {key}"
        return float(raw)


# -- the static parts: compose and manifests name the image ----------------------


def compose_config(engine: Engine) -> dict[str, Any]:
    """docker-compose.yml as the engine's compose tool resolves it."""
    if engine.name == "podman":
        tool = [str(Path(sys.executable).with_name("podman-compose"))]
    else:
        tool = ["docker", "compose"]
    done = subprocess.run(
        [*tool, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{' '.join(tool)} config: {done.stderr[-2000:]}"
    parsed = yaml.safe_load(done.stdout)
    assert isinstance(parsed, dict)
    return parsed


def check_names(checks: Checks, engine: Engine, image: str) -> None:
    services = compose_config(engine)["services"]
    ours = {name: s.get("image") for name, s in services.items() if "build" in s}
    checks(
        "docker-compose.yml parses and runs the image for the workers and the API",
        set(ours) == {"worker-1", "worker-2", "api"} and set(ours.values()) == {image},
        f"{'podman-compose' if engine.name == 'podman' else 'docker compose'} config: {ours}",
    )
    images = {
        container["image"]
        for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    checks("the Kubernetes Deployments run the image", images == {image}, str(sorted(images)))


# -- the flows -----------------------------------------------------------------


def check_containers(checks: Checks, stack: Stack) -> None:
    for container in stack.containers:
        uid = container.exec("id", "-u").stdout.strip()
        checks(f"{container.name} runs as a non-root user", uid == "10001", f"uid {uid}")
    for container in stack.containers:
        # A worker's HEALTHCHECK passes once its event loop serves /healthz.
        healthy = wait_for(container.healthy, 120, f"{container.name} healthy", [container], 2)
        checks(f"{container.name}: the image's HEALTHCHECK passes", healthy)


def sdk_flow(checks: Checks, stack: Stack) -> tuple[str, set[str]]:
    """Create, ingest (with a duplicate), run, job and users pages through Courier's SDK
    with strict response validation; the job's message ids."""
    client = stack.sdk()
    job_id = client.bulk.create_job(
        message={"event": "WELCOME", "data": {"company": "Acme"}, "brand": "BRAND"}
    ).job_id
    users = [
        {"to": {"user_id": "spike", "data": {"name": "Spike"}}},
        {"to": {"user_id": "faye", "email": "faye@example.com"}},
        {"to": {"user_id": "spike", "data": {"name": "Spike"}}},
    ]
    raw = client.bulk.with_raw_response.add_users(job_id=job_id, users=users)  # type: ignore[arg-type]
    answer = raw.http_response.json()
    checks(
        "SDK: ingest reports the duplicate user",
        raw.http_response.status_code == 200
        and answer.get("total") == 2
        and [e.get("error") for e in answer.get("errors", [])] == ["Duplicate user"],
        str(answer),
    )
    client.bulk.run_job(job_id=job_id)
    deadline = time.monotonic() + 120
    while True:
        job = client.bulk.retrieve_job(job_id=job_id).job
        if job.status == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    checks(
        "SDK: the job runs to COMPLETED with exact counters",
        (job.status, job.received, job.enqueued, job.failures) == ("COMPLETED", 2, 2, 0)
        and job.definition.event == "WELCOME",
        f"{job.status} received {job.received} enqueued {job.enqueued} failures {job.failures}",
    )
    items = []
    cursor: str | None = None
    while True:
        if cursor is None:
            page = client.bulk.list_users(job_id=job_id)
        else:
            page = client.bulk.list_users(job_id=job_id, cursor=cursor)
        items.extend(page.items)
        if not page.paging.more:
            break
        cursor = page.paging.cursor
    ids = {item.message_id for item in items if item.message_id}
    checks(
        "SDK: the users page lists both users ENQUEUED with their messageId",
        sorted(item.status for item in items) == ["ENQUEUED", "ENQUEUED"] and len(ids) == 2,
        f"{[(item.to.user_id if item.to else None, item.status) for item in items]}",
    )
    return job_id, ids


async def _ingest(stack: Stack, job_id: str, users: int) -> int:
    starts = asyncio.Queue[int]()
    for start in range(0, users, BATCH):
        starts.put_nowait(start)
    accepted = 0
    headers = {"Authorization": f"Bearer {stack.key}"}

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not starts.empty():
            start = starts.get_nowait()
            count = min(BATCH, users - start)
            body = {"users": generated_users(start, count)}
            answer = await post(http, f"/bulk/{job_id}", body)
            assert answer.status_code == 200, f"ingest {start}: {answer.status_code} {answer.text}"
            accepted += int(answer.json()["total"])

    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=120) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
    return accepted


def big_job(checks: Checks, stack: Stack, users: int) -> tuple[str, int]:
    """A job of `users` generated users over HTTP; a worker SIGKILLed mid fan-out."""
    with stack.http() as http:
        created = post_sync(http, "/bulk", {"message": {"template": "IMAGE", "data": {"x": 1}}})
        job_id = str(created.json()["jobId"])
        started = time.monotonic()
        accepted = asyncio.run(_ingest(stack, job_id, users))
        took = time.monotonic() - started
        checks(f"{users:,} users ingested over HTTP", accepted == users, f"{took:.1f} s")
        ran = post_sync(http, f"/bulk/{job_id}/run")
        checks("the run is accepted (202)", ran.status_code == 202, str(ran.status_code))

        def job() -> dict[str, Any]:
            view: dict[str, Any] = http.get(f"/bulk/{job_id}").json()["job"]
            return view

        victim = stack.workers["worker-2"]

        def kill_point() -> dict[str, Any] | None:
            view = job()
            done = view["status"] in ("COMPLETED", "ERROR")
            return view if done or view["enqueued"] >= users * KILL_AT else None

        at = wait_for(kill_point, 600, f"{KILL_AT:.0%} of the fan-out", stack.containers, 0.05)
        victim.kill()
        checks(
            f"{victim.name} SIGKILLed mid fan-out",
            at["status"] == "PROCESSING" and 0 < at["enqueued"] < users,
            f"{at['status']}, {at['enqueued']:,} of {users:,} enqueued at the kill",
        )
        victim.start()
        stack.wait_ready([victim])
        checks(f"{victim.name} started again (same id, same volume) and ready", True)
        end = wait_for(
            lambda: (j := job())["status"] in ("COMPLETED", "ERROR") and j,
            900,
            "the job to complete",
            stack.containers,
        )
        counters = (end["received"], end["enqueued"], end["failures"])
        checks(
            "the job COMPLETED with exact counters",
            end["status"] == "COMPLETED" and counters == (users, users, 0),
            f"{end['status']}, received/enqueued/failures {counters}",
        )
    return job_id, users


def post_sync(http: httpx.Client, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    deadline = time.monotonic() + 300
    while True:
        answer = http.post(url, json=body, headers=headers)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))


def count_sends(
    checks: Checks, stack: Stack, small: tuple[str, set[str]], big: tuple[str, int]
) -> None:
    """Every committed send on the sends topic: each user of both jobs exactly once."""
    (small_job, small_ids), (big_job_id, users) = small, big
    sends = read_topic(
        stack.settings,
        stack.settings.topic_sends,
        expected=len(small_ids) + users,
        idle=10,
        timeout=900,
    )
    by_job: dict[str, Counter[str]] = {}
    for _, value, _ in sends:
        by_job.setdefault(value["jobId"], Counter())[value["messageId"]] += 1
    seen_small = by_job.pop(small_job, Counter())
    checks(
        "SDK job: each user sent exactly once, under the users page's messageIds",
        set(seen_small) == small_ids and all(n == 1 for n in seen_small.values()),
        f"{sum(seen_small.values())} sends",
    )
    seen = by_job.pop(big_job_id, Counter())
    created_at = stack.created_at(big_job_id)
    expected = {positional_message_id(created_at, big_job_id, p) for p in range(users)}
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    lost = len(expected - set(seen))
    unexpected = len(set(seen) - expected) + sum(sum(c.values()) for c in by_job.values())
    checks(
        f"{users:,}-user job: every user sent exactly once",
        sum(seen.values()) == users and duplicated == lost == unexpected == 0,
        f"{sum(seen.values()):,} sends, {duplicated} duplicated, {lost} lost, "
        f"{unexpected} unexpected",
    )


@contextmanager
def cleanup(stack: Stack, keep: bool) -> Iterator[None]:
    try:
        yield
    finally:
        for container in stack.containers:
            container.save_logs()
        if keep:
            print(f"[image-test] kept: containers {[c.name for c in stack.containers]}")
        else:
            stack.remove()
            drop_topics(stack.settings, stack.tag)
            client = redis.Redis.from_url(stack.settings.redis_url)
            keys = list(client.scan_iter(f"{stack.settings.redis_prefix}:*", count=1000))
            for first in range(0, len(keys), 1000):
                client.delete(*keys[first : first + 1000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image", description=__doc__)
    parser.add_argument("--image", required=True, help="the image to test, as `make image` tags it")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--engine", default=None, help="docker or podman (default: what answers)")
    parser.add_argument("--keep", action="store_true", help="leave containers, topics, keys")
    args = parser.parse_args(argv)

    checks = Checks()
    engine = Engine(args.engine or detect_engine())
    if not engine.image_exists(args.image):
        print(f"[image-test] no image {args.image}: run `make image` first", file=sys.stderr)
        return 2
    size = engine.image_size(args.image)
    checks.note(f"engine {engine.name}, image {args.image}: {size / 1e6:.0f} MB")
    check_names(checks, engine, args.image)

    tag = f"imgtest-{uuid.uuid4().hex[:6]}"
    settings = fresh_settings(Settings(), tag).model_copy(update={"fanout_page_size": PAGE_SIZE})
    ensure_topics(settings)
    log_dir = ROOT / ".local" / "image-test" / tag
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(engine, args.image, settings, tag, log_dir)
    try:
        with cleanup(stack, args.keep):
            stack.start()
            stack.wait_ready()
            checks.note("2 workers and the API ready")
            check_containers(checks, stack)
            small = sdk_flow(checks, stack)
            checks.note("SDK flow done")
            big = big_job(checks, stack, args.users)
            checks.note("big job done")
            count_sends(checks, stack, small, big)
    except AssertionError as exc:
        checks("the run went through", False, str(exc))
    checks.note(f"logs in {log_dir.relative_to(ROOT)}")
    failed = checks.failed
    if failed:
        print(f"[image-test] failed: {failed}")
    print(f"image-test: {len(checks.results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
