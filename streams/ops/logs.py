"""Log setup of every bulkstream process: plain text, or one JSON object per line.

`BULKSTREAM_LOG_FORMAT=json` gives log shippers objects with `ts`, `level`,
`logger`, `message`, and the structured fields a record carries (`job_id`,
`tenant`, `status`, ...: passed as `extra=` by the code that logs them). No
user data and no keys are logged at info level: job transitions name the job
and tenant only.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from streams.settings import Settings

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for these settings (faust's worker takes it too)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["default"]},
        # httpx logs every request at info: a line per webhook or delivery attempt.
        # Their outcomes are in the metrics, and failures are logged by their callers.
        "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpcore")},
    }


def setup_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
