"""`python -m chaos --cluster`: a job of 200k users through the HTTP API, two
workers, on the local three-node cluster (`make cluster-up`), while one broker
holding a role of the job is SIGKILLed:

* `leader`: the leader of the job's command partition, once during the ingest
  and once during the fan-out (whichever broker leads it then), each restarted;
* `txn-coordinator`: the transaction coordinator of a fan-out worker's
  transactional id, during the fan-out, restarted;
* `group-coordinator`: the coordinator of the fan-out consumer group, during
  the fan-out, restarted;
* `broker-lost`: the active controller, during the ingest; it stays down for
  the rest of the job (the ingest, the run and the whole fan-out).

Each counts lost and duplicated sends and the job's counters like every other
scenario, every HTTP answer (a 503 is allowed only with Retry-After), and for
each fault the time to the first accepted write or the first send after it.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from chaos.cluster import LocalCluster, SendsTail, key_partition
from chaos.run import Run, Tally, timed
from streams.settings import Settings
from streams.testing.processes import KEYS, ApiProcess

# Seconds a killed broker stays down before it is started again: past the
# controller's broker session timeout (9 s), so its partitions do move.
DOWN_SECONDS = 10.0
# Where in a phase a fault lands: the received or enqueued count it waits for.
AT = 0.3
CLIENTS = 4  # concurrent HTTP clients of the ingest
BATCH = 1000  # users per request (Courier's informal limit)


# -- a careful HTTP client, as Courier's SDKs are ------------------------------
@dataclass(frozen=True)
class Answer:
    route: str
    started: float  # time.time()
    ended: float
    code: str  # "200", "503+Retry-After", "client timeout", ...


class HttpJob:
    """Drives a job through the API: an Idempotency-Key per request, retried with the
    same key on 408, 409, 429 and 5xx (after Retry-After), timeouts and transport
    errors, as Courier's SDKs retry. Every answer is kept."""

    def __init__(self, api: ApiProcess, alive: Callable[[], None], deadline: float = 900) -> None:
        self.api = api
        self.alive = alive  # raises when a process the answers depend on died
        self.deadline = deadline
        self.answers: list[Answer] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/json"}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=60)

    def post(self, http: httpx.Client, route: str, path: str, body: Any) -> httpx.Response:
        key = uuid.uuid4().hex
        content = orjson.dumps(body)
        give_up = time.monotonic() + self.deadline
        while True:
            started = time.time()
            response: httpx.Response | None = None
            try:
                response = http.post(path, content=content, headers={"Idempotency-Key": key})
                code = str(response.status_code)
                if "Retry-After" in response.headers and code in ("409", "429", "503"):
                    code += "+Retry-After"
            except httpx.TimeoutException:
                code = "client timeout"
            except httpx.TransportError:
                code = "transport error"
            with self._lock:
                self.answers.append(Answer(route, started, time.time(), code))
            if response is not None:
                status = response.status_code
                if status < 300:
                    return response
                if status < 500 and status not in (408, 409, 429):
                    raise AssertionError(f"POST {path}: {status} {response.text[:300]}")
            if time.monotonic() > give_up:
                raise AssertionError(f"POST {path}: no answer but {code} in {self.deadline} s")
            self.alive()
            retry_after = response.headers.get("Retry-After") if response is not None else None
            time.sleep(float(retry_after) if retry_after else 1.0)

    def create(self) -> str:
        body = {"message": {"message": {"template": "CHAOS"}, "data": {"run": "chaos"}}}
        with self.client() as http:
            job_id: str = self.post(http, "create", "/bulk", body).json()["jobId"]
        return job_id

    def ingest(self, job_id: str, users: int) -> int:
        """Generated users 0..users-1 in requests of BATCH from CLIENTS clients; users accepted."""
        starts: queue.SimpleQueue[int] = queue.SimpleQueue()
        for start in range(0, users, BATCH):
            starts.put(start)
        totals: list[int] = []
        failures: list[BaseException] = []

        def client() -> None:
            with self.client() as http:
                while True:
                    try:
                        start = starts.get_nowait()
                    except queue.Empty:
                        return
                    body = {"users": _users(start, min(start + BATCH, users))}
                    try:
                        answer = self.post(http, "ingest", f"/bulk/{job_id}", body)
                    except BaseException as exc:
                        failures.append(exc)
                        return
                    totals.append(int(answer.json()["total"]))

        threads = [threading.Thread(target=client, name=f"ingest-{n}") for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return sum(totals)

    def run(self, job_id: str) -> None:
        with self.client() as http:
            self.post(http, "run", f"/bulk/{job_id}/run", {})

    def codes(self) -> Counter[str]:
        return Counter(answer.code for answer in self.answers)

    def first_accepted_after(self, at: float) -> float | None:
        """Seconds from `at` to the first 2xx answer to a write sent after it."""
        ends = [a.ended for a in self.answers if a.started >= at and a.code.startswith("2")]
        return min(ends) - at if ends else None


def _users(first: int, stop: int) -> list[dict[str, Any]]:
    """The users `tests.streams.harness.generated_commands` makes, so `Run.finish`
    knows their message ids."""
    return [
        {"to": {"user_id": f"user-{i}", "email": f"user-{i}@example.com"}, "data": {"n": i}}
        for i in range(first, stop)
    ]


# -- the faults ---------------------------------------------------------------
@dataclass
class Fault:
    role: str  # what the broker was picked for
    phase: str  # "ingest" or "fan-out"
    node: int
    roles: str  # what else it held at the time
    at: float  # time.time() of the SIGKILL
    restarted_after: float | None = None  # seconds; None: left down
    measures: dict[str, float | None] = field(default_factory=dict)

    def describe(self) -> str:
        back = (
            f"started again {self.restarted_after:.0f} s later"
            if self.restarted_after is not None
            else "left down for the rest of the job"
        )
        return (
            f"{self.phase} at {AT:.0%}: SIGKILL broker {self.node}, {self.role} "
            f"({self.roles}); {back}"
        )


@dataclass
class ClusterTally(Tally):
    fault_list: list[Fault] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    fanout_seconds: float | None = None


@dataclass(frozen=True)
class Plan:
    phase: str  # "ingest" or "fan-out"
    role: str
    pick: Callable[[Context], int]
    restart: bool = True


@dataclass
class Context:
    run: Run
    cluster: LocalCluster
    job_id: str
    controller: int | None = None  # the active controller when the phase began

    @property
    def transactional_ids(self) -> list[str]:
        return [f"{self.run.settings.app_id}-fanout-{w}" for w in sorted(self.run.workers)]

    @property
    def fanout_group(self) -> str:
        return f"{self.run.settings.app_id}-fanout"

    def command_partition(self) -> int:
        return key_partition(self.job_id.encode(), self.run.settings.partitions)


def _command_leader(ctx: Context) -> int:
    return ctx.cluster.leader(ctx.run.settings.topic_commands, ctx.command_partition())


def _txn_coordinator(ctx: Context) -> int:
    return ctx.cluster.transaction_coordinator(ctx.transactional_ids[0])[0]


def _group_coordinator(ctx: Context) -> int:
    return ctx.cluster.group_coordinator(ctx.fanout_group)


def _controller(ctx: Context) -> int:
    if ctx.controller is None:
        raise RuntimeError("kafka-metadata-quorum named no leader")
    return ctx.controller


def _inject(ctx: Context, plan: Plan, down: float) -> Fault:
    node = plan.pick(ctx)
    roles = ctx.cluster.roles(node, ctx.transactional_ids, ctx.fanout_group, ctx.controller)
    at = ctx.cluster.kill(node)
    fault = Fault(plan.role, plan.phase, node, roles, at)
    print(f"[chaos] {plan.phase}: SIGKILL broker {node}, {plan.role} ({roles})", flush=True)
    if plan.restart:
        time.sleep(max(0.0, at + down - time.time()))
        ctx.cluster.start(node)
        fault.restarted_after = time.time() - at
    return fault


def _workers_alive(run: Run) -> None:
    """Raise if a worker is gone (its exit code: negative for the signal that ended it)."""
    for worker_id, worker in run.workers.items():
        if not worker.alive():
            code = worker.proc.returncode if worker.proc is not None else None
            raise AssertionError(f"worker {worker_id} exited ({code}):\n{worker.log_tail(20)}")


def _checks_on_topics(tally: Tally, run: Run, cluster: LocalCluster) -> None:
    """Every topic of the run (bulkstream's and faust's) has the replicas and
    min.insync.replicas the settings ask for."""
    s = run.settings
    topics = {name: t for name, t in cluster.metadata().topics.items() if run.tag in name}
    replicas = {min(len(p.replicas) for p in t.partitions.values()) for t in topics.values()}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    described = cluster.admin.describe_configs(resources, request_timeout=30)
    isr = {
        resource.name: described[resource].result(30)["min.insync.replicas"].value
        for resource in resources
    }
    wanted_isr = str(s.min_insync_replicas) if s.min_insync_replicas is not None else None
    faust_topics = sorted(name for name in topics if name.startswith(s.app_id))
    tally.checks[
        f"{len(topics)} topics (faust's {', '.join(faust_topics)} among them): "
        f"{s.replication_factor} replicas, min.insync.replicas={wanted_isr}"
    ] = replicas == {s.replication_factor} and (
        wanted_isr is None or set(isr.values()) == {wanted_isr}
    )


def _check_command_partition(tally: Tally, ctx: Context) -> None:
    """The job's commands are on the partition murmur2 says (the run's topic has only them)."""
    s = ctx.run.settings
    consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap_servers, "group.id": "probe"})

    def high(partition: int) -> int:
        tp = TopicPartition(s.topic_commands, partition)
        for _ in range(10):  # a broker just lost: its partitions' leaders are moving
            try:
                return int(consumer.get_watermark_offsets(tp, timeout=30)[1])
            except KafkaException:
                time.sleep(3)
        return int(consumer.get_watermark_offsets(tp, timeout=30)[1])

    try:
        filled = {p for p in range(s.partitions) if high(p) > 0}
    finally:
        consumer.close()
    tally.checks[f"the job's commands are on partition {ctx.command_partition()} (murmur2)"] = (
        filled == {ctx.command_partition()}
    )


def _cluster_scenario(
    name: str, plans: list[Plan], base: Settings, logs: Path, users: int, down: float
) -> ClusterTally:
    tally = ClusterTally(name, users)
    cluster = LocalCluster(base.kafka_bootstrap_servers)
    waited = cluster.await_whole()
    tally.notes.append(f"cluster whole (3 brokers, every partition in sync) after {waited:.0f} s")
    run = Run(base, name.split()[0].lower(), logs, seed=users)
    started = time.monotonic()
    tail: SendsTail | None = None
    http: HttpJob | None = None
    lost: list[int] = []
    try:
        for worker_id in ("w1", "w2"):
            run.start_worker(worker_id)
        api = run.start_api()
        http = HttpJob(api, alive=partial(_workers_alive, run))
        job_id = http.create()
        ctx = Context(run, cluster, job_id)
        tail = SendsTail(base.kafka_bootstrap_servers, run.settings.topic_sends).start()
        accepted: list[int] = []
        failed: list[BaseException] = []

        def ingest() -> None:
            assert http is not None
            try:
                accepted.append(http.ingest(job_id, users))
            except BaseException as exc:
                failed.append(exc)

        ingesting = threading.Thread(target=ingest, name="ingest")
        ingesting.start()
        ctx.controller = cluster.quorum_leader()
        for plan in (p for p in plans if p.phase == "ingest"):
            run.wait_received(job_id, int(users * AT))
            fault = _inject(ctx, plan, down)
            tally.fault_list.append(fault)
            if not plan.restart:
                lost.append(fault.node)
        ingesting.join()
        if failed:
            raise failed[0]
        tally.checks["every user accepted over HTTP"] = accepted == [users]
        _check_command_partition(tally, ctx)
        _checks_on_topics(tally, run, cluster)
        run_at = time.monotonic()
        ctx.controller = cluster.quorum_leader()
        http.run(job_id)
        for plan in (p for p in plans if p.phase == "fan-out"):
            job = run.wait_enqueued(job_id, int(users * AT))
            if job.status == "COMPLETED":
                tally.checks[f"{plan.role}: killed during the fan-out"] = False
                break
            fault = _inject(ctx, plan, down)
            tally.fault_list.append(fault)
        run.client.wait_status(job_id, "COMPLETED", 900)
        tally.fanout_seconds = time.monotonic() - run_at
        run.finish(tally, job_id)
        tally.checks["workers alive"] = all(w.alive() for w in run.workers.values())
    except Exception:
        tally.checks["scenario ran to the end"] = False
        tally.notes.append(traceback.format_exc(limit=3).strip().splitlines()[-1])
        traceback.print_exc()
    finally:
        if tail is not None:
            tail.stop()
        if http is not None:
            tally.answers = http.codes()
            tally.http_5xx = sum(
                n for code, n in tally.answers.items() if code.startswith("5") and "+" not in code
            )
            tally.checks["no client timeouts nor transport errors"] = not any(
                code in ("client timeout", "transport error") for code in tally.answers
            )
        for fault in tally.fault_list:
            if http is not None and fault.phase == "ingest":
                fault.measures["first accepted write"] = http.first_accepted_after(fault.at)
            # Sends flow only in the fan-out: after an ingest fault, the first
            # send is the run's, which says nothing about the fault.
            if tail is not None and fault.phase == "fan-out":
                fault.measures |= {f"send {k}": v for k, v in tail.after(fault.at).items()}
                tally.checks[f"broker {fault.node} killed while sends still flowed"] = (
                    fault.measures["send seen"] is not None
                )
            tally.faults.append(fault.describe())
        for node in lost:
            cluster.start(node)
        run.close()
        timed(tally, started)
    return tally


def leader(base: Settings, logs: Path, users: int, down: float) -> ClusterTally:
    role = "the leader of the job's command partition"
    return _cluster_scenario(
        "Command-partition leader killed",
        [Plan("ingest", role, _command_leader), Plan("fan-out", role, _command_leader)],
        base,
        logs,
        users,
        down,
    )


def txn_coordinator(base: Settings, logs: Path, users: int, down: float) -> ClusterTally:
    plan = Plan("fan-out", "the transaction coordinator of w1's fan-out", _txn_coordinator)
    return _cluster_scenario("Transaction coordinator killed", [plan], base, logs, users, down)


def group_coordinator(base: Settings, logs: Path, users: int, down: float) -> ClusterTally:
    plan = Plan("fan-out", "the coordinator of the fan-out group", _group_coordinator)
    return _cluster_scenario("Group coordinator killed", [plan], base, logs, users, down)


def broker_lost(base: Settings, logs: Path, users: int, down: float) -> ClusterTally:
    plan = Plan("ingest", "the active controller", _controller, restart=False)
    return _cluster_scenario("Broker lost", [plan], base, logs, users, down)


ClusterScenario = Callable[[Settings, Path, int, float], ClusterTally]

CLUSTER_SCENARIOS: dict[str, ClusterScenario] = {
    "leader": leader,
    "txn-coordinator": txn_coordinator,
    "group-coordinator": group_coordinator,
    "broker-lost": broker_lost,
}
