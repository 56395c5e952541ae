"""The command line: `bulkstream report` (flags, JSON Lines, a bad line refused) and
`bulkstream deliver` as a real process, SIGKILLed mid-way and started again:
every send reported, none lost."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from chaos.cluster import key_partition
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.testing.processes import DeliverProcess, cli, wait_for
from streams.testing.receiver import Receiver, Rules
from streams.testing.topics import read_topic
from tests.streams.deliver.conftest import Sends, produce_sends, read_reports, send_events


def test_report_from_flags(settings: Settings) -> None:
    ensure_topics(settings)
    done = cli(
        settings,
        "report",
        "--message-id",
        "1-abc-m1",
        "--job-id",
        "1-abc",
        "--status",
        "delivered",
        "--provider",
        "ses",
        "--tenant",
        "acme",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"produced": 1, "topic": settings.topic_delivery_status}
    [(key, report, partition)] = read_topic(settings, settings.topic_delivery_status)
    assert key == b"1-abc"
    assert partition == key_partition(b"1-abc", settings.partitions)
    at = report.pop("at")
    assert abs(at - time.time() * 1000) < 60_000, "`at` defaults to now, in ms"
    assert report == {
        "messageId": "1-abc-m1",
        "jobId": "1-abc",
        "status": "DELIVERED",
        "provider": "ses",
        "tenant": "acme",
    }


def test_report_from_json_lines_on_stdin_and_in_files(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    lines = [
        {"messageId": "m1", "jobId": "job-a", "status": "SENT", "at": 1000},
        {"messageId": "m2", "jobId": "job-b", "status": "FAILED", "at": 2000, "reason": "bounced"},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    done = cli(settings, "report", "--provider", "smtp", stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["produced"] == 2
    listed = tmp_path / "more.json"
    listed.write_text(json.dumps([{"messageId": "m3", "jobId": "job-a", "status": "OPENED"}]))
    done = cli(settings, "report", str(listed))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["produced"] == 1

    records = read_topic(settings, settings.topic_delivery_status)
    by_id = {value["messageId"]: (key, value) for key, value, _ in records}
    assert len(records) == 3
    assert by_id["m1"] == (b"job-a", {**lines[0], "provider": "smtp"})
    assert by_id["m2"] == (b"job-b", {**lines[1], "provider": "smtp"})
    assert by_id["m3"][0] == b"job-a"
    assert by_id["m3"][1]["status"] == "OPENED"


def test_a_bad_line_is_named_with_why_and_nothing_is_produced(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    path = tmp_path / "reports.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"messageId": "m1", "jobId": "j", "status": "SENT"}',
                '{"messageId": "m2", "jobId": "j", "status": "LOST"}',
                "{not json",
                '{"messageId": "m4", "status": "SENT"}',
                "[1, 2]",
            ]
        )
    )
    done = cli(settings, "report", str(path))
    assert done.returncode == 2
    errors = done.stderr.splitlines()
    assert errors[0].startswith(f"invalid report {path}:2: status: Input should be 'SENT'")
    assert errors[1].startswith(f"invalid report {path}:3: not JSON")
    assert errors[2] == f"invalid report {path}:4: jobId: Field required"
    assert errors[3] == f"invalid report {path}:5: not a JSON object"
    assert errors[4] == "4 invalid report(s): none produced"
    assert done.stdout == ""

    both = cli(settings, "report", str(path), "--message-id", "m", "--job-id", "j")
    assert both.returncode == 2
    assert "not both" in both.stderr
    missing = cli(settings, "report", "--message-id", "m", "--status", "SENT")
    assert missing.returncode == 2
    assert "invalid report flags: jobId: Field required" in missing.stderr
    assert read_topic(settings, settings.topic_delivery_status) == []


def _alive(process: DeliverProcess) -> bool:
    process.ensure_alive()  # fails the wait at once, with its log, when it died
    return True


def test_a_killed_deliver_process_loses_no_send_and_a_sigterm_stops_it_cleanly(
    settings: Settings, sends: Sends, tmp_path: Path
) -> None:
    ensure_topics(settings)
    for job in range(3):
        produce_sends(settings, send_events(f"1-0000000{job}-killed", [{}] * 400), into=sends)
    ids = set(sends.by_id())
    topic = settings.topic_delivery_status
    args = ["--concurrency", "4", "--session-timeout", "6", "--backoff", "0.01"]
    with Receiver(Rules(delay=0.01)) as receiver:
        first = DeliverProcess(settings, receiver.url, tmp_path, "first", args).start()
        try:
            wait_for(
                lambda: _alive(first) and len(receiver.tally().accepted) >= 300,
                60,
                "the first worker to deliver 300 sends",
            )
        finally:
            first.kill()
        at_kill = len(receiver.tally().accepted)
        assert at_kill < len(ids), "killed mid-way"

        second = DeliverProcess(settings, receiver.url, tmp_path, "second", args).start()
        try:
            wait_for(
                lambda: (
                    _alive(second)
                    and {v["messageId"] for _, v, _ in read_topic(settings, topic)} >= ids
                ),
                90,
                "every send to be reported",
                every=1.0,
            )
        finally:
            code = second.stop()
        assert code == 0, second.log_tail()
        tally = receiver.tally()
    assert b"deliver: stopped" in second.log()
    assert set(tally.accepted) == ids, "every send posted and taken"
    reports = Counter(v["messageId"] for _, v, _ in read_reports(settings, len(ids), idle=1.0))
    assert set(reports) == ids, "none lost"
    # Reported twice at most: the sends the first had in hand or not yet committed.
    assert max(reports.values()) <= 2
    assert sum(reports.values()) - len(ids) <= at_kill
