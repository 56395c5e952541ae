"""Telling delivery reports from poison: a `bulk.delivery-status` record read as the
fold's `Report`, or the reason it goes to the dead-letter topic (`PoisonReport`).

A report is read the fast way when it can be: orjson decodes it and each field
is checked as `DeliveryReport` checks it (camelCase names only, exact types,
the same bounds), with no model built. Anything the fast way cannot vouch for
(a snake_case name, a number given as a string or a float, JSON orjson
refuses) goes the pydantic way, which gives the same `Report` or the reason it
is poison: the fast way never accepts what pydantic refuses, and never refuses
on its own. At a few microseconds a report, pydantic was a tenth of the fold.
`bulkstream_native.ReportBatch` (native/src/report_batch.rs) reads a whole
batch the fast way, vouching for less than `fast_report` at most (what it
leaves is read here).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from schemas.delivery import (
    MAX_AT,
    MAX_PROVIDER,
    MAX_REASON,
    DeliveryReport,
)
from streams.aggregate.outcomes import STATUSES, Report
from streams.errors import PoisonCommand

REQUIRED = frozenset({"messageId", "jobId", "status", "at"})
OPTIONAL = frozenset({"reason", "provider", "tenant"})
# The longest id and tenant `DeliveryReport` takes.
MAX_ID = 200


class PoisonReport(PoisonCommand):
    """A report that cannot be folded; it goes to `bulk.delivery-status.dlq` with the reason."""


def parse_report(key: bytes | None, value: bytes | None, read: Report | None = None) -> Report:
    """Decode and validate a report (`read`: as a batch reader read it already); raise
    PoisonReport with the reason otherwise."""
    if value is None:
        raise PoisonReport("empty", "the message has no value")
    report = read or fast_report(value) or _validated(value)
    if key is None or key.decode(errors="replace") != report.job_id:
        raise PoisonReport("wrong-key", "the message key must be the report's jobId")
    return report


def fast_report(value: bytes) -> Report | None:
    """The report, when orjson and exact checks can vouch for it; None: ask pydantic."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict or not REQUIRED <= raw.keys() <= REQUIRED | OPTIONAL:
        return None
    message_id, job_id, at = raw["messageId"], raw["jobId"], raw["at"]
    status = STATUSES.get(raw["status"]) if type(raw["status"]) is str else None
    if (
        status is None
        or type(message_id) is not str
        or not 0 < len(message_id) <= MAX_ID
        or type(job_id) is not str
        or not 0 < len(job_id) <= MAX_ID
        or type(at) is not int
        or not 0 <= at <= MAX_AT
    ):
        return None
    reason, provider, tenant = raw.get("reason"), raw.get("provider"), raw.get("tenant")
    if not (_text(reason, MAX_REASON) and _text(provider, MAX_PROVIDER) and _text(tenant, MAX_ID)):
        return None
    return Report(message_id, job_id, status, at, reason, provider, tenant)


def _text(value: Any, limit: int) -> bool:
    return value is None or (type(value) is str and len(value) <= limit)


def _validated(value: bytes) -> Report:
    try:
        model = DeliveryReport.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        reason = "undecodable" if errors[0]["type"] == "json_invalid" else "invalid"
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'report'}: {e['msg']}" for e in errors[:10]
        )
        raise PoisonReport(reason, detail) from exc
    return report_of(model)


def report_of(model: DeliveryReport) -> Report:
    """The fold's `Report` of a validated `DeliveryReport`."""
    return Report(
        model.message_id,
        model.job_id,
        model.status,
        model.at,
        model.reason,
        model.provider,
        model.tenant,
    )
