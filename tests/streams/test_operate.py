"""Operating bulkstream: the demo, `status --watch`, metrics, health and JSON logs.

Real processes over this test's own topics and Redis prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streams.settings import Settings
from streams.testing.client import Client, ingest_generated
from streams.testing.processes import WorkerProcess, cli, wait_for

USERS = 3000


def samples_of(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_demo_runs_a_job_to_completed_and_status_watch_follows_it(topology: Settings) -> None:
    demo = cli(topology, "demo", "--users", str(USERS), "--workers", "2", timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert f"users received {USERS:,}, sends enqueued {USERS:,}, failures 0" in out, out
    job_id = re.search(r"COMPLETED job (\S+)", out)
    assert job_id is not None, out
    sends = [json.loads(line) for line in out.splitlines() if line.startswith('{"messageId"')]
    assert len(sends) == 3, out
    assert {send["jobId"] for send in sends} == {job_id.group(1)}
    assert all(send["to"]["email"].startswith("demo-user-") for send in sends)
    # Past ENQUEUED: every send delivered or failed by the reference worker, reported back.
    delivered = re.search(r"delivered in [0-9.]+ s after COMPLETED: (\{.*\})", out)
    assert delivered is not None, out
    counts = json.loads(delivered.group(1))
    assert counts["SENT"] + counts["FAILED"] == USERS, counts
    assert 0 < counts["FAILED"] < USERS // 10, counts
    hooks = re.search(r"webhooks received: (.*); (\d+) of (\d+) signed validly", out)
    assert hooks is not None, out
    assert "1 job.completed" in hooks.group(1), out
    assert "message.failed" in hooks.group(1), out
    assert hooks.group(2) == hooks.group(3), out

    watched = cli(
        topology, "status", job_id.group(1), "--tenant", "demo", "--watch", "--timeout", "30"
    )
    assert watched.returncode == 0, watched.stderr
    assert re.search(rf"COMPLETED\s+received {USERS:,}\s+enqueued {USERS:,}", watched.stderr)
    assert json.loads(watched.stdout)["job"]["status"] == "COMPLETED"

    unknown = cli(topology, "status", "no-such-job", "--tenant", "demo", "--watch")
    assert unknown.returncode == 1


def test_status_watch_gives_up_on_a_job_that_does_not_finish(
    start_worker: Callable[..., WorkerProcess], client: Client, topology: Settings
) -> None:
    start_worker()
    job_id = client.create({"template": "T"})
    client.wait_status(job_id, "CREATED", 60)
    watched = cli(
        topology, "status", job_id, "--tenant", client.tenant, "--watch", "--timeout", "2"
    )
    assert watched.returncode == 1
    assert "still CREATED" in watched.stderr


def test_worker_metrics_health_readiness_and_json_logs(
    start_worker: Callable[..., WorkerProcess], client: Client, topology: Settings
) -> None:
    worker = start_worker(log_format="json")
    url = worker.metrics_url()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    wait_for(
        lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200 or None,
        120,
        "the worker to be ready",
    )
    job_id = client.create({"template": "T"})
    assert ingest_generated(client, job_id, 1200) == 1200
    client.run(job_id)
    client.wait_status(job_id, "COMPLETED", 180)

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = samples_of(url)
        return samples if samples.get(("bulkstream_sends_total", ())) == 1200 else None

    samples = wait_for(counted, 30, "the sends to be counted")
    assert samples[("bulkstream_users_ingested_total", ())] == 1200
    assert samples[("bulkstream_commands_total", (("kind", "ingest"), ("outcome", "ok")))] == 2
    assert samples[("bulkstream_job_transitions_total", (("status", "COMPLETED"),))] == 1
    assert samples[("bulkstream_job_duration_seconds_count", ())] == 1
    assert samples[("bulkstream_fanout_pages_total", ())] == 3  # 1,200 users, pages of 500
    # The fan-out loop's wall time by what it did: it waited (the job came after it
    # started), produced the pages' sends and committed their transactions.
    for phase in ("waiting", "producing", "committing"):
        assert samples[("bulkstream_fanout_loop_seconds_total", (("phase", phase),))] > 0
    # The commands feed's wall time: it fetched (and waited for) commands and applied them.
    for phase in ("fetching", "applying"):
        labels = (("feed", "commands"), ("phase", phase))
        assert samples[("bulkstream_feed_seconds_total", labels)] > 0

    def lag_groups() -> set[str] | None:
        # Each group's lag is reported every 5 s: the job may be done before the first.
        groups = {
            dict(labels)["group"]
            for name, labels in samples_of(url)
            if name == "bulkstream_consumer_lag"
        }
        return groups if len(groups) >= 2 else None

    groups = wait_for(lag_groups, 30, "the consumer lag of both groups")
    assert groups == {topology.app_id, f"{topology.app_id}-fanout"}

    lines = [line for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    transitions = [e for e in entries if e.get("job_id") == job_id]
    assert [e["status"] for e in transitions] == ["CREATED", "PROCESSING", "COMPLETED"]
    assert all(e["tenant"] == client.tenant and e["level"] == "info" for e in transitions)
    info = " ".join(line for line, e in zip(lines, entries, strict=True) if e["level"] == "info")
    assert "@example.com" not in info  # no user data at info level
