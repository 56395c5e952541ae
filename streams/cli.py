"""The `bulkstream` command line: one entry point for every process and tool."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from streams.settings import Settings


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
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
