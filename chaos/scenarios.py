"""The faults: each scenario runs one job through them and returns its Tally."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import redis
from prometheus_client.parser import text_string_to_metric_families

from chaos import services
from chaos.control import control
from chaos.outcomes import outcomes
from chaos.results import ResultTimes
from chaos.run import Run, Tally, timed
from streams.aggregate.command_feed import PHASES
from streams.settings import Settings
from streams.testing.client import generated_commands
from streams.testing.processes import cpu_seconds
from streams.testing.topics import read_dlq

Scenario = Callable[[Settings, Path, int, int], Tally]


def _two_workers(run: Run) -> None:
    for worker_id in ("w1", "w2"):
        run.start_worker(worker_id)


# Pages of 50 users in the kill scenario: ten times the transactions of the
# default 500 to kill across, and a fan-out long enough for every kill to land
# in it (with 500, a 20k-user job can finish between two polls of its counter).
KILLS_PAGE_SIZE = 50


def kills(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """SIGKILL of a random worker at random moments during ingest and during fan-out.

    The ingest goes out in `rounds + 1` slices and each kill lands while the
    workers apply a slice, with the rest still to send: a clock would miss the
    ingest altogether on a machine fast enough to apply it in a second.
    """
    tally = Tally("workers killed", users)
    settings = base.model_copy(update={"fanout_page_size": KILLS_PAGE_SIZE})
    run = Run(settings, "kills", logs, seed=users + rounds)
    started = time.monotonic()
    try:
        _two_workers(run)
        job_id = run.create()
        commands: list[str] = []
        bounds = [users * n // (rounds + 1) for n in range(rounds + 2)]
        for first, stop in itertools.pairwise(bounds):
            commands += run.send(job_id, first, stop)
            if stop < users:
                job = run.wait_received(job_id, run.rng.randint(first, stop))
                victim = run.kill_random_worker()
                tally.faults.append(f"ingest at {job.received:,}: SIGKILL {victim}")
        tally.checks["every user accepted"] = run.accepted(commands) == users
        during_ingest = len(tally.faults)
        run.client.run(job_id)
        for n in range(rounds):
            job = run.wait_enqueued(job_id, int(users * (n + 1) / (rounds + 1)))
            if job.status == "COMPLETED":
                break
            victim = run.kill_random_worker()
            tally.faults.append(f"fan-out at {job.enqueued:,}: SIGKILL {victim}")
        during_fanout = len(tally.faults) - during_ingest
        tally.checks[f"{rounds} kills during ingest"] = during_ingest >= rounds
        tally.checks[f"{rounds} kills during fan-out"] = during_fanout >= rounds
        run.finish(tally, job_id)
    finally:
        run.close()
        timed(tally, started)
    return tally


def redis_flushed(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """Redis flushed mid fan-out; the views come back whole and correct."""
    return _redis_lost(base, logs, users, "Redis flushed", _flush)


def redis_restarted(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """Redis stopped and started again (no persistence: empty) mid fan-out."""
    return _redis_lost(base, logs, users, "Redis restarted", _restart_redis)


def _flush(run: Run) -> str:
    redis.Redis.from_url(run.settings.redis_url).flushdb()
    return "FLUSHDB at 25 % of the fan-out"


def _restart_redis(run: Run) -> str:
    services.stop("redis")
    time.sleep(2)
    services.start()
    return "Redis stopped at 25 % of the fan-out, started again 2 s later, empty"


def _redis_lost(
    base: Settings, logs: Path, users: int, name: str, fault: Callable[[Run], str]
) -> Tally:
    tally = Tally(name, users)
    run = Run(base, "redis", logs, seed=1)
    started = time.monotonic()
    try:
        _two_workers(run)
        job_id = run.create()
        run.ingest(job_id, users)
        run.client.run(job_id)
        run.wait_enqueued(job_id, users // 4)
        tally.faults.append(fault(run))
        run.finish(tally, job_id)
        statuses = _wait_all_enqueued(run, job_id, users)
        tally.checks["every user's status ENQUEUED in the rebuilt view"] = statuses == users
        tally.notes.append(f"users with status ENQUEUED in the view: {statuses:,}")
    finally:
        run.close()
        timed(tally, started)
    return tally


def _wait_all_enqueued(run: Run, job_id: str, users: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        items = run.client.users(job_id)
        count = sum(1 for item in items if item.get("status") == "ENQUEUED")
        if count == users:
            break
        time.sleep(2)
    return count


def broker_restart(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """The Kafka broker stopped and started again mid fan-out."""
    tally = Tally("broker restarted", users)
    run = Run(base, "broker", logs, seed=2)
    started = time.monotonic()
    try:
        _two_workers(run)
        job_id = run.create()
        run.ingest(job_id, users)
        run.client.run(job_id)
        run.wait_enqueued(job_id, users // 3)
        services.stop("kafka")
        time.sleep(5)
        services.start()
        tally.faults.append("broker SIGTERM at 33 % of the fan-out, 5 s down, started again")
        run.finish(tally, job_id)
        tally.checks["workers alive"] = all(w.alive() for w in run.workers.values())
    finally:
        run.close()
        timed(tally, started)
    return tally


def paused(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """Redis, then the broker, paused (SIGSTOP) for 10 s mid fan-out; the API says 503
    with Retry-After meanwhile, and everything recovers."""
    tally = Tally("Redis, then broker, paused 10 s", users)
    run = Run(base, "paused", logs, seed=3)
    started = time.monotonic()
    try:
        _two_workers(run)
        api = run.start_api()
        job_id = run.create()
        run.ingest(job_id, users)
        run.client.run(job_id)
        run.wait_enqueued(job_id, users // 4)
        with api.client() as http:
            for service, probe in (
                ("redis", lambda: http.get(f"/bulk/{job_id}")),
                ("kafka", lambda: http.post("/bulk", json={"message": {"template": "T"}})),
            ):
                answers = _during_pause(service, probe)
                tally.faults.append(f"SIGSTOP {service} 10 s: answers {dict(answers)}")
                unavailable = answers.get("503+Retry-After", 0)
                tally.checks[f"API said 503 + Retry-After while {service} paused"] = unavailable > 0
                tally.http_5xx += sum(
                    n
                    for code, n in answers.items()
                    if code.startswith("5") and code != "503+Retry-After"
                )
            tally.checks["API answers again"] = http.get(f"/bulk/{job_id}").status_code == 200
        run.finish(tally, job_id)
    finally:
        for service in ("redis", "kafka"):
            services.resume(service)
        run.close()
        timed(tally, started)
    return tally


def _during_pause(service: str, probe: Callable[[], httpx.Response]) -> dict[str, int]:
    answers: dict[str, int] = {}
    services.pause(service)
    try:
        until = time.monotonic() + 10
        while time.monotonic() < until:
            try:
                response = probe()
                code = str(response.status_code)
                if code == "503" and "Retry-After" in response.headers:
                    code = "503+Retry-After"
            except httpx.TimeoutException:
                code = "client timeout"
            answers[code] = answers.get(code, 0) + 1
    finally:
        services.resume(service)
    return answers


POISON: list[tuple[str, bytes]] = [
    ("bad JSON", b'{"kind": "ingest", "jobId": '),
    ("wrong types", orjson.dumps({"kind": "ingest", "jobId": 42, "users": "everyone"})),
    ("unknown command", orjson.dumps({"kind": "launch-missiles", "jobId": "j"})),
    ("not an object", b"[1, 2, 3]"),
    ("10 MB value", orjson.dumps({"kind": "create", "jobId": "big", "pad": "x" * 10_000_000})),
]


class Phase:
    """Where a phase's time went: the worker's time per command kind (its own
    histogram), and CPU seconds of the worker, the broker and this process."""

    def __init__(self, run: Run, worker_id: str) -> None:
        self.url = run.workers[worker_id].metrics_url()
        self.pids = {"worker": run.workers[worker_id].pid}
        with contextlib.suppress(RuntimeError):  # a broker this checkout did not start
            self.pids["kafka"] = services.pid("kafka")

    def sample(self) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "bulkstream_command_duration_seconds":
                for s in family.samples:
                    if s.name.endswith(("_sum", "_count")):
                        suffix = s.name.rsplit("_", 1)[1]
                        found[f"{s.labels['kind']} {suffix}"] = s.value
            elif family.name == "bulkstream_feed_seconds":
                for s in family.samples:
                    if s.labels.get("feed") == "commands" and s.name.endswith("_total"):
                        found[s.labels["phase"]] = s.value
        return found | self.clocks()

    def clocks(self) -> dict[str, float]:
        found = {
            f"{name} cpu": cpu_seconds(pid)
            for name, pid in [*self.pids.items(), ("chaos", os.getpid())]
        }
        return found | {"wall": time.monotonic()}

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The worker stopped (SIGSTOP) while this process produces a slice.

        On two shared cores, producing 10 MB values (and the broker taking
        them in) costs CPU the worker would otherwise have: the measure would
        charge the fault injector to the worker. Held, the worker starts on a
        slice already in the topic; restart the clocks after."""
        worker = self.pids["worker"]
        os.kill(worker, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(worker, signal.SIGCONT)

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}

    @staticmethod
    def describe(name: str, d: dict[str, float]) -> str:
        wall = d["wall"]
        sampled = d.get("sampled", wall)
        kinds = ", ".join(
            f"{kind} {d[f'{kind} sum']:.1f} s for {d[f'{kind} count']:,.0f}"
            for kind in ("ingest", "dlq")
            if d.get(f"{kind} count")
        )
        feed = ", ".join(f"{phase} {d[phase]:.2f} s" for phase in PHASES if phase in d)
        cpu = ", ".join(
            f"{who} {d[f'{who} cpu'] / sampled:.0%}"
            for who in ("worker", "kafka", "chaos")
            if f"{who} cpu" in d
        )
        return (
            f"{name}: {wall:.1f} s (held before: {d.get('held', 0.0):.1f} s); "
            f"worker's commands: {kinds}; its commands feed: {feed}; CPU of a core: {cpu}"
        )


# Poison goes in among the good commands at a fixed mix, not on a clock: a clock
# puts more poison per good command the slower the worker is, so the check
# would measure the machine. Each round is 10 MB of poison against ~1 MB of
# good commands.
GOOD_COMMANDS_PER_POISON_ROUND = 10
# The job is ingested in pairs of slices, a clean and a poisoned one, so that
# drift (warm-up, a growing state) falls on both alike. Which of a pair goes
# first is a coin toss: with a fixed order, the worker's periodic work (commits,
# checkpoints) and what a slice leaves behind (a compaction, pages to write
# back) can fall on one kind more than the other. One job, not a clean and a
# poisoned one, so that both kinds go through the same partition and state
# store. Measured clean against clean (no poison in either kind): two jobs read
# 0.91-1.13 over five runs; one job in a fixed order 1.05-1.08 over three; one
# job in coin-toss order 0.96 and 1.00.
SLICE_USERS = 10_000
# The first pair is not counted: a worker's first poisoned slices pay once for
# what later ones reuse (the first large buffers, the DLQ's first batches). In
# one CI run the first two poisoned slices took twice their clean pair's time;
# the ratio was 0.79 with them, 0.87 without.
WARM_UP_PAIRS = 1


def poison(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """Malformed and oversized commands between good ones: all in the DLQ with a reason,
    and good commands as fast as without them (the job's clean slices).

    Each slice's commands are built before its clock starts and produced while
    the worker is held, so the rates are the worker's, not this process's."""
    tally = Tally("poison commands", users)
    run = Run(base, "poison", logs, seed=4)
    started = time.monotonic()
    results = ResultTimes(run.settings)
    try:
        run.start_worker("w1")
        phase = Phase(run, "w1")
        job_id = run.create()
        spent: dict[bool, dict[str, float]] = {False: {}, True: {}}
        users_of = {False: 0, True: 0}
        accepted = sent = 0
        pairs = users // (2 * SLICE_USERS)
        if pairs <= WARM_UP_PAIRS:
            raise ValueError(f"poison needs more than {2 * WARM_UP_PAIRS * SLICE_USERS:,} users")
        bounds = [users * n // (2 * pairs) for n in range(2 * pairs + 1)]
        kinds = [kind for _ in range(pairs) for kind in run.rng.sample([False, True], 2)]
        walls: dict[bool, list[float]] = {False: [], True: []}
        slices = enumerate(zip(kinds, itertools.pairwise(bounds), strict=True))
        for n, (kind, (first, stop)) in slices:
            if n < 2 * WARM_UP_PAIRS:
                accepted += _timed_slice(run, phase, results, job_id, first, stop, {}, kind)
            else:
                before = spent[kind].get("wall", 0.0)
                accepted += _timed_slice(
                    run, phase, results, job_id, first, stop, spent[kind], kind
                )
                walls[kind].append(spent[kind]["wall"] - before)
                users_of[kind] += stop - first
            if kind:
                rounds_in = len(range(first, stop, 1000)) // GOOD_COMMANDS_PER_POISON_ROUND
                sent += rounds_in * len(POISON)
        clean, poisoned = spent[False], spent[True]
        clean_rate = users_of[False] / clean["wall"]
        poisoned_rate = users_of[True] / poisoned["wall"]
        tally.notes.append(Phase.describe("clean slices", clean))
        tally.notes.append(Phase.describe("slices with poison", poisoned))
        # Each slice's own time: a few slow slices, or every poisoned one a little slower.
        tally.notes.append(
            "slices, ms: "
            + "; ".join(
                f"{label} {' '.join(f'{1000 * w:.0f}' for w in walls[kind])}"
                for label, kind in (("clean", False), ("with poison", True))
            )
        )
        tally.faults.append(
            f"{sent} poison commands ({', '.join(n for n, _ in POISON)}), one of each "
            f"before every {GOOD_COMMANDS_PER_POISON_ROUND}th good command of half the slices; "
            f"{len(walls[True])} pairs of {users // (2 * pairs):,}-user slices timed, "
            f"after {WARM_UP_PAIRS} not"
        )
        dlq = read_dlq(run.settings, expected=sent, timeout=120)
        reasons = {headers.get("x-bulkstream-reason", b"").decode() for _, headers, _ in dlq}
        tally.checks["every poison command in the DLQ"] = len(dlq) == sent
        tally.checks["every DLQ entry has a reason"] = "" not in reasons
        tally.checks["good commands all accepted"] = accepted == users
        ratio = poisoned_rate / clean_rate
        tally.checks["good-command throughput >= 0.8 of a clean run"] = ratio >= 0.8
        tally.notes.append(
            f"DLQ {len(dlq)}/{sent}, reasons {sorted(reasons)}; ingest {poisoned_rate:,.0f} "
            f"users/s with poison vs {clean_rate:,.0f} clean (ratio {ratio:.2f})"
        )
        tally.checks["worker alive"] = run.workers["w1"].alive()
        run.client.run(job_id)
        run.finish(tally, job_id)
    finally:
        results.close()
        run.close()
        timed(tally, started)
    return tally


def _timed_slice(
    run: Run,
    phase: Phase,
    results: ResultTimes,
    job_id: str,
    first: int,
    stop: int,
    spent: dict[str, float],
    poison: bool,
) -> int:
    """Ingest generated users `first`..`stop - 1`, with `POISON` before every
    `GOOD_COMMANDS_PER_POISON_ROUND`th good command if `poison`; add where the
    time went to `spent`; return the users accepted."""
    client = run.client
    commands = list(generated_commands(client, job_id, first, stop))
    before = phase.sample()
    holding = time.monotonic()
    with phase.held():
        for n, command in enumerate(commands, 1):
            # Before the good command, not after: a slice ends with a good command,
            # so its last result comes after all of its poison was dealt with.
            if poison and n % GOOD_COMMANDS_PER_POISON_ROUND == 0:
                for _, value in POISON:
                    client.producer.send_raw(job_id.encode(), value)
            client.producer.send(command)
        client.producer.flush(120)
    before.update(phase.clocks())
    held = time.monotonic() - holding
    released = time.time()
    # A job's commands are applied in order: its last result ends the slice, at
    # the moment the worker published it.
    ended = results.finished(commands[-1].command_id, timeout=900)
    took = Phase.spent(before, phase.sample())
    # CPU was sampled over a little more than the slice (until its result was read)
    took |= {"sampled": took["wall"], "wall": ended - released, "held": held}
    for key, amount in took.items():
        spent[key] = spent.get(key, 0.0) + amount
    return run.accepted([command.command_id for command in commands])


def http_abuse(base: Settings, logs: Path, users: int, rounds: int) -> Tally:
    """schemathesis (>= 2,000 cases, valid and invalid, on a real job and on guessed ids),
    bodies over the limit, wrong content types, huge cursors, another tenant's job ids:
    every answer as documented, never a 5xx."""
    from chaos.http import abuse

    tally = Tally("HTTP abuse", users)
    run = Run(base, "http", logs, seed=5)
    started = time.monotonic()
    try:
        run.start_worker("w1")
        api = run.start_api()
        abused = abuse(api)
        tally.notes.extend(abused.notes)
        tally.http_5xx = sum(n for code, n in abused.answers.items() if code >= 500)
        tally.checks["schemathesis >= 2,000 cases"] = abused.cases >= 2000
        tally.checks.update(abused.checks)
        tally.faults.append(
            f"{abused.cases} schemathesis cases + hand-made abuse; answers {abused.answers}"
        )
        job_id = run.create()  # and the API's worker still does its work, exactly
        run.ingest(job_id, users)
        run.client.run(job_id)
        fuzzed = run.client.wait_status(abused.job_id, "COMPLETED", 120) if abused.job_id else None
        run.finish(tally, job_id, also={abused.job_id: fuzzed.enqueued} if fuzzed else {})
    finally:
        run.close()
        timed(tally, started)
    return tally


SCENARIOS: dict[str, Scenario] = {
    "kills": kills,
    "redis-flush": redis_flushed,
    "redis-restart": redis_restarted,
    "broker": broker_restart,
    "paused": paused,
    "poison": poison,
    "http": http_abuse,
    "control": control,
    "outcomes": outcomes,
}
