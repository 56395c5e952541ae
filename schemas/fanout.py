"""Internal contracts between the job aggregate and the fan-out workers.

A run command is cut into pages of users (`FanoutPage`, on `bulk.fanout-pages`,
key `<job>:<page>`, so one job's pages spread over every partition). Each page
fanned out yields one `PageProgress` (on `bulk.progress`, key = job id, so it
meets the job's aggregate), in the same Kafka transaction as its sends.
"""

from __future__ import annotations

from typing import Any

from schemas.base import JsonObject, WireModel

# (position in the job, identity, the user as ingested)
PageUser = tuple[int, str, dict[str, Any]]


class FanoutPage(WireModel):
    job_id: str
    tenant: str
    page: int
    page_size: int
    created_at: float
    message: JsonObject
    data: JsonObject
    users: list[PageUser]


class PageProgress(WireModel):
    job_id: str
    tenant: str
    page: int
    enqueued: int
    # (position, reason) of every user of the page that could not be sent
    failures: list[tuple[int, str]]
