"""The Redis views: job summaries, users with their status, command results.

Derived from the aggregate's state, written as absolute values, rebuildable
(`streams.aggregate.housekeeping`). Key layout: `streams.views.keys`.
"""

from streams.views.connection import patient_redis
from streams.views.store import InvalidCursor, UsersPage, Views
from streams.views.writes import JobRecord, ViewWrites

__all__ = ["InvalidCursor", "JobRecord", "UsersPage", "ViewWrites", "Views", "patient_redis"]
