"""Control messages on `bulk.control` (co-partitioned with `bulk.commands`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, RootModel

from schemas.base import WireModel


class RebuildViews(WireModel):
    """Rewrite every Redis view of the jobs on this partition from the job state."""

    kind: Literal["rebuild-views"] = "rebuild-views"


class PurgeJob(WireModel):
    """Delete a finished job whose retention ran out: its state and its views. `due`
    (its purge-index entry's, seconds since the epoch) lets a purge cut short resume
    once the job's record is gone."""

    kind: Literal["purge"] = "purge"
    job_id: str
    due: int | None = None


class ReleasePages(WireModel):
    """Hand a running job's next pages to the fan-out, as its window and its send-rate
    limit allow; start a scheduled job that is due. With `again`, first hand over once
    more every page handed over and not reported yet (a new owner of the partition)."""

    kind: Literal["release"] = "release"
    job_id: str
    again: bool = False


AnyControl = RebuildViews | PurgeJob | ReleasePages


class ControlMessage(RootModel[Annotated[AnyControl, Field(discriminator="kind")]]):
    pass
