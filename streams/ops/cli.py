"""The `bulkstream` command line: one entry point for every process and tool.

bulkstream worker [--stage all|aggregate|fanout|webhooks]
bulkstream produce [FILE ...] [--tenant T] [--wait]
bulkstream report [FILE ...] | --message-id M --job-id J --status S [--at MS] [--reason R] ...
bulkstream deliver --http URL [--group G] [--concurrency N] [--attempts N] ...
bulkstream status JOB [--tenant T] [--watch]
bulkstream run JOB [--tenant T] [--at TIME] [--rate N] [--dry-run]
bulkstream cancel|pause|resume JOB [--tenant T]
bulkstream demo [--users N] [--workers N] [--rate N]
bulkstream api [--host H] [--port P]
bulkstream dlq list|replay commands|reports|webhooks [--reason R] [--since TIME] [--dry-run]
    [--rekey]
bulkstream rebuild-views
bulkstream settings
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.views import JobStatus
from streams.settings import Settings
from streams.views import Views
from streams.views.connection import redis_from_url


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.worker import Stage, run_worker

    return run_worker(settings, Stage(args.stage))


def _records(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Commands from JSON (an object or a list) or JSON Lines files, or stdin."""
    sources = [Path(p).read_bytes() for p in paths] if paths else [sys.stdin.buffer.read()]
    for text in sources:
        stripped = text.strip()
        if not stripped:
            continue
        try:
            whole = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            for line in stripped.splitlines():
                if line.strip():
                    yield orjson.loads(line)
            continue
        yield from (whole if isinstance(whole, list) else [whole])


def _views(settings: Settings) -> Views:
    return Views(
        redis_from_url(settings.redis_url), settings.redis_prefix, settings.retention_seconds
    )


def _cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.producer import CommandProducer, complete_command

    try:
        commands = [complete_command(r, args.tenant) for r in _records(args.files)]
    except (ValidationError, orjson.JSONDecodeError) as exc:
        print(f"invalid command: {exc}", file=sys.stderr)
        return 2
    producer = CommandProducer(settings)
    for command in commands:
        producer.send(command)
    producer.flush()
    for command in commands:
        line: dict[str, Any] = {
            "commandId": command.command_id,
            "jobId": command.job_id,
            "kind": command.kind,
        }
        if args.wait:
            result = asyncio.run(
                _wait_result(settings, command.tenant, command.job_id, command.command_id)
            )
            line["result"] = result
        print(json.dumps(line))
    return 0


async def _wait_result(
    settings: Settings, tenant: str, job_id: str, command_id: str, patience: float = 60.0
) -> Any:
    views = _views(settings)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            result = await views.read_result(tenant, job_id, command_id)
            if result is not None:
                return result.to_wire()
            await asyncio.sleep(0.1)
        return None
    finally:
        await views.redis.aclose()


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.watch import TERMINAL, watch

    async def read() -> Any:
        views = _views(settings)
        try:
            if not args.watch:
                return await views.read_job(args.tenant, args.job)
            return await watch(
                lambda: views.read_job(args.tenant, args.job),
                interval=args.interval,
                give_up_after=args.timeout,
            )
        finally:
            await views.redis.aclose()

    job = asyncio.run(read())
    if job is None:
        print(f"job {args.job} not found for tenant {args.tenant}", file=sys.stderr)
        return 1
    print(json.dumps({"job": job.to_wire()}, indent=2))
    if args.watch and job.status not in TERMINAL:
        print(f"job {args.job} still {job.status.value} after {args.timeout} s", file=sys.stderr)
        return 1
    return 0 if job.status is not JobStatus.ERROR else 2


def _cmd_steer(args: argparse.Namespace, settings: Settings) -> int:
    """run / cancel / pause / resume: the command on `bulk.commands`, then its result and
    the job view (a cancel or pause answers once it has settled)."""
    from schemas.commands import CommandEnvelope
    from streams.ids import new_command_id
    from streams.kafka.producer import CommandProducer

    raw: dict[str, Any] = {
        "kind": args.command,
        "commandId": new_command_id(),
        "tenant": args.tenant,
        "jobId": args.job,
    }
    if args.command == "run":
        options = {"scheduledAt": args.at, "sendsPerSecond": args.rate, "dryRun": args.dry_run}
        raw.update({k: v for k, v in options.items() if v not in (None, False)})
    try:
        command = CommandEnvelope.model_validate(raw).root
    except ValidationError as exc:
        print(f"invalid {args.command}: {exc}", file=sys.stderr)
        return 2
    producer = CommandProducer(settings)
    producer.send(command)
    producer.flush()

    async def answer() -> tuple[Any, Any]:
        result = await _wait_result(
            settings, args.tenant, args.job, command.command_id, settings.api_settle_timeout_seconds
        )
        views = _views(settings)
        try:
            job = await views.read_job(args.tenant, args.job)
        finally:
            await views.redis.aclose()
        return result, job

    result, job = asyncio.run(answer())
    if result is None:
        print(f"no answer to {args.command} within the settle timeout", file=sys.stderr)
        return 1
    out = {"result": result, **({"job": job.to_wire()} if job is not None else {})}
    print(json.dumps(out, indent=2))
    return 0 if result.get("ok") else 1


def _cmd_rebuild_views(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.producer import CommandProducer

    producer = CommandProducer(settings)
    producer.rebuild_views()
    producer.flush()
    print(f"asked all {settings.partitions} partitions to rebuild their views")
    return 0


def _cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from streams.api.app import create_api
    from streams.api.protocol import protocol_for
    from streams.ops.logs import logging_config

    api = create_api(settings)
    uvicorn.run(
        api,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        http=protocol_for(api.shortcut),
        log_level=settings.log_level,
        log_config=logging_config(settings),
        access_log=settings.api_access_log,
        # X-Forwarded-For and -Proto from a proxy on this host are read only for the
        # access log's line: nothing else in the API reads the client's address or scheme.
        proxy_headers=settings.api_access_log,
    )
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Delivery reports, from flags or from JSON/JSONL files or stdin: all checked
    first (none produced if one is invalid), then produced and acknowledged."""
    from streams.deliver.reports import ReportProducer, read_reports

    flags = {
        "messageId": args.message_id,
        "jobId": args.job_id,
        "status": args.status,
        "at": args.at,
        "reason": args.reason,
    }
    if any(value is not None for value in flags.values()):
        if args.files:
            print("give one report by flags, or reports in files, not both", file=sys.stderr)
            return 2
        record = {k: v for k, v in flags.items() if v is not None}
        sources = [("flags", orjson.dumps(record))]
    elif args.files:
        sources = [(path, Path(path).read_bytes()) for path in args.files]
    else:
        sources = [("stdin", sys.stdin.buffer.read())]
    reports, errors = read_reports(sources, tenant=args.tenant, provider=args.provider)
    for error in errors:
        print(f"invalid report {error}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} invalid report(s): none produced", file=sys.stderr)
        return 2
    producer = ReportProducer(settings)
    for report in reports:
        producer.send(report)
    produced = producer.flush()
    print(json.dumps({"produced": produced, "topic": settings.topic_delivery_status}))
    return 0


def _cmd_deliver(args: argparse.Namespace, settings: Settings) -> int:
    from streams.deliver.worker import DeliverOptions, run_deliver
    from streams.ops.logs import setup_logging

    setup_logging(settings)
    options = DeliverOptions(
        url=args.http,
        group=args.group,
        concurrency=args.concurrency,
        attempts=args.attempts,
        max_in_flight=args.max_in_flight,
        timeout=args.timeout,
        backoff=args.backoff,
        backoff_max=args.backoff_max,
        drain_seconds=args.drain_seconds,
        session_timeout=args.session_timeout,
        provider=args.provider,
    )
    return run_deliver(settings, options)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.demo import run_demo

    return run_demo(settings, users=args.users, workers=args.workers, rate=args.rate)


def _cmd_hash_key(args: argparse.Namespace, settings: Settings) -> int:
    from streams.api.auth import key_hash

    print(f"{args.tenant} sha256:{key_hash(args.key)}")
    return 0


def _cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ops.dlq import Chosen, DeadLetters, parse_since

    try:
        chosen = Chosen(args.reason, parse_since(args.since))
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        return 2
    letters = DeadLetters(settings, args.which)
    if args.action == "list":
        for _, shown in letters.letters(chosen):
            print(orjson.dumps(shown).decode(), flush=True)
        return 0
    try:
        summary = letters.replay(chosen, dry_run=args.dry_run, rekey=args.rekey)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(orjson.dumps(summary).decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkstream", description="bulkstream engine")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker (every stage, or a chosen one)")
    worker.add_argument(
        "--stage", choices=["all", "aggregate", "fanout", "webhooks"], default="all"
    )
    worker.set_defaults(func=_cmd_worker)

    api = sub.add_parser("api", help="serve the Courier-compatible HTTP API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(func=_cmd_api)

    hash_key = sub.add_parser("hash-key", help="print an API key file line for a tenant's key")
    hash_key.add_argument("tenant")
    hash_key.add_argument("key")
    hash_key.set_defaults(func=_cmd_hash_key)

    produce = sub.add_parser("produce", help="send commands from JSON/JSONL files or stdin")
    produce.add_argument("files", nargs="*")
    produce.add_argument("--tenant", default="default", help="tenant of commands without one")
    produce.add_argument("--wait", action="store_true", help="wait for and print each result")
    produce.set_defaults(func=_cmd_produce)

    report = sub.add_parser(
        "report", help="produce delivery reports: one from flags, or JSON/JSONL files or stdin"
    )
    report.add_argument("files", nargs="*")
    report.add_argument("--message-id", default=None)
    report.add_argument("--job-id", default=None)
    report.add_argument("--status", type=str.upper, default=None, help="SENT, DELIVERED, ...")
    report.add_argument("--at", type=int, default=None, help="Unix time in ms (default: now)")
    report.add_argument("--reason", default=None)
    report.add_argument("--provider", default=None, help="provider of reports without one")
    report.add_argument("--tenant", default=None, help="tenant of reports without one")
    report.set_defaults(func=_cmd_report)

    deliver = sub.add_parser(
        "deliver", help="reference delivery worker: POST each send to a URL, report outcomes"
    )
    deliver.add_argument("--http", required=True, metavar="URL", help="where to POST sends")
    deliver.add_argument("--group", default=None, help="consumer group (<app id>-deliver)")
    deliver.add_argument("--concurrency", type=int, default=64, help="requests at once")
    deliver.add_argument("--attempts", type=int, default=5, help="tries per send, at most")
    deliver.add_argument(
        "--max-in-flight", type=int, default=None, help="sends in hand (4 x concurrency)"
    )
    deliver.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    deliver.add_argument("--backoff", type=float, default=0.5, help="first retry's wait (s)")
    deliver.add_argument("--backoff-max", type=float, default=30.0, help="longest wait (s)")
    deliver.add_argument(
        "--drain-seconds", type=float, default=10.0, help="at a stop, time to finish sends"
    )
    deliver.add_argument(
        "--session-timeout", type=float, default=10.0, help="consumer group session (s)"
    )
    deliver.add_argument("--provider", default="http", help="the reports' provider")
    deliver.set_defaults(func=_cmd_deliver)

    status = sub.add_parser("status", help="print a job's status from the Redis view")
    status.add_argument("job")
    status.add_argument("--tenant", default="default")
    status.add_argument(
        "--watch",
        action="store_true",
        help="show live progress until COMPLETED, ERROR or CANCELED",
    )
    status.add_argument("--interval", type=float, default=0.5, help="seconds between reads")
    status.add_argument("--timeout", type=float, default=None, help="give up after this long")
    status.set_defaults(func=_cmd_status)

    run = sub.add_parser("run", help="run a job (at a time, at a rate, or dry) and wait")
    run.add_argument("job")
    run.add_argument("--tenant", default="default")
    run.add_argument("--at", default=None, help="start at this RFC 3339 time")
    run.add_argument("--rate", type=int, default=None, help="at most N sends per second")
    run.add_argument(
        "--dry-run", action="store_true", help="resolve the sends, write none (job view: dryRun)"
    )
    run.set_defaults(func=_cmd_steer)
    for verb, text in (
        ("cancel", "cancel a job; prints it once settled (CANCELED, counts final)"),
        ("pause", "pause a job; prints it once settled (PAUSED, nothing more sent)"),
        ("resume", "resume a paused job"),
    ):
        steer = sub.add_parser(verb, help=text)
        steer.add_argument("job")
        steer.add_argument("--tenant", default="default")
        steer.set_defaults(func=_cmd_steer)

    demo = sub.add_parser("demo", help="start workers and API, run a job of generated users")
    demo.add_argument("--users", type=int, default=100_000)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--rate", type=int, default=None, help="run the job at most N sends a second")
    demo.set_defaults(func=_cmd_demo)

    dlq = sub.add_parser(
        "dlq", help="list a dead-letter topic, or send its letters back once the cause is mended"
    )
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("which", choices=["commands", "reports", "webhooks"])
    dlq.add_argument("--reason", default=None, help="only the letters of this reason")
    dlq.add_argument(
        "--since", default=None, help="only those dead-lettered at or after this RFC 3339 time"
    )
    dlq.add_argument("--dry-run", action="store_true", help="replay: count, send nothing")
    dlq.add_argument(
        "--rekey",
        action="store_true",
        help="replay commands or reports keyed by the jobId each names (mends wrong-key)",
    )
    dlq.set_defaults(func=_cmd_dlq)

    sub.add_parser("rebuild-views", help="rebuild the Redis views from the job state").set_defaults(
        func=_cmd_rebuild_views
    )
    sub.add_parser("settings", help="print the effective settings as JSON").set_defaults(
        func=_cmd_settings
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args, Settings())
    return result


if __name__ == "__main__":
    sys.exit(main())
