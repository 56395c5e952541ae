"""The JSON Schemas in schemas/json/ are what the models say today."""

from __future__ import annotations

import json

from schemas import export


def test_exported_json_schemas_are_fresh() -> None:
    assert export.stale() == [], "run `make schemas` and commit schemas/json/"


def test_command_schema_offers_every_kind() -> None:
    schema = json.loads((export.JSON_DIR / "command.json").read_text())
    kinds = set(schema["discriminator"]["mapping"])
    assert kinds == {"create", "ingest", "run", "cancel", "pause", "resume", "retry"}
