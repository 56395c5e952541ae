"""The container image's HEALTHCHECK: `python -m streams.healthcheck [/readyz]`.

One image runs either `bulkstream worker` or `bulkstream api`. This reads the
command line of the container's main process (pid 1) to know which, and asks
that process's own endpoint: the API's `--port` (or `BULKSTREAM_API_PORT`),
the worker's `BULKSTREAM_METRICS_PORT`. Exit 0 when it answers 200, 1 otherwise
(Docker's healthy and unhealthy). It imports no more than the settings and the
argument parser, so it stays cheap to run every few seconds.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from streams.ops.cli import build_parser
from streams.settings import Settings

COMMANDS = {"worker", "api"}


def main_command(cmdline: Sequence[str]) -> argparse.Namespace | None:
    """The `bulkstream` arguments of a process's command line, parsed; None if it runs
    something else. A console script's command line is `python .../bulkstream ARGS`."""
    for start, word in enumerate(cmdline):
        if word in COMMANDS and (start == 0 or Path(cmdline[start - 1]).name == "bulkstream"):
            try:
                return build_parser().parse_args(list(cmdline[start:]))
            except SystemExit:
                return None
    return None


def endpoint(args: argparse.Namespace | None, settings: Settings, path: str) -> str:
    """The URL of the main process's probe."""
    if args is not None and args.command == "api":
        host, port = args.host or settings.api_host, args.port or settings.api_port
    else:
        host, port = settings.metrics_host, settings.metrics_port
    if port == 0:
        raise ValueError("the port is 0 (picked at random): it cannot be probed")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}{path}"


def read_cmdline(pid: int = 1) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    path = argv[0] if argv else "/healthz"
    try:
        url = endpoint(main_command(read_cmdline()), Settings(), path)
    except ValueError as exc:
        print(f"unhealthy: {exc}")
        return 1
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
