"""schemathesis against /openapi.json: no 5xx, no answer that breaks the schema."""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from tests.streams.api.conftest import KEYS, ApiServer

# 5 operations x 100 examples: at least 500 generated cases.
EXAMPLES_PER_OPERATION = 100


def test_api_conforms_to_its_openapi(api: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    auth = {"Authorization": f"Bearer {KEYS['acme']}"}
    cases: dict[str, int] = {}
    for loaded in schema.get_all_operations():
        assert isinstance(loaded, Ok), loaded
        operation = loaded.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            label = case.operation.label
            cases[label] = cases.get(label, 0) + 1
            if case.headers and "Idempotency-Key" in case.headers:
                # Generated keys repeat across cases with other bodies, which is a 422 by
                # design (tested in test_bulk_api); keep each case's key its own.
                key = case.headers["Idempotency-Key"][:200]
                case.headers["Idempotency-Key"] = f"{key}-{uuid.uuid4().hex}"
            case.call_and_validate(headers=auth)

        check()
    print(f"\nschemathesis cases per operation: {cases}")
    assert len(cases) == 5
    assert sum(cases.values()) >= 500
