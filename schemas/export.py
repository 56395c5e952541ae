"""Exports the JSON Schemas of the wire contracts to `schemas/json/`.

python -m schemas.export          # write them
python -m schemas.export --check  # exit 1 if any file is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from schemas.commands import CommandEnvelope, CommandResult
from schemas.delivery import DeliveryReport, MessageEvent
from schemas.events import JobEvent, SendEvent
from schemas.views import JobView, UserView

JSON_DIR = Path(__file__).parent / "json"

# name -> (model, mode): what upstream producers send is validated ("validation"),
# what the engine emits is documented as it is written ("serialization").
EXPORTED: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
    "command": (CommandEnvelope, "validation"),
    "command-result": (CommandResult, "serialization"),
    "send-event": (SendEvent, "serialization"),
    "job-event": (JobEvent, "serialization"),
    "job-view": (JobView, "serialization"),
    "user-view": (UserView, "serialization"),
    "delivery-report": (DeliveryReport, "validation"),
    "message-event": (MessageEvent, "serialization"),
}


def rendered() -> dict[str, str]:
    """File name -> JSON Schema text, as it should be on disk."""
    out = {}
    for name, (model, mode) in EXPORTED.items():
        schema = model.model_json_schema(by_alias=True, mode=mode)
        schema["$id"] = f"https://bulkstream.dev/schemas/{name}.json"
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def stale() -> list[str]:
    return [
        name
        for name, text in rendered().items()
        if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        names = stale()
        if names:
            print(f"stale JSON Schemas: {', '.join(names)}; run `make schemas`", file=sys.stderr)
            return 1
        return 0
    JSON_DIR.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (JSON_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
