"""Courier's official Node SDK (@trycourier/courier 7.10.2, pinned in tests/node/),
unchanged, against this server: only COURIER_BASE_URL and COURIER_API_KEY are set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from streams.testing.processes import KEYS, ApiProcess

NODE_DIR = Path(__file__).resolve().parents[2] / "node"


def _node_sdk() -> None:
    """Install the pinned SDK once (`npm ci`, from tests/node/package-lock.json)."""
    assert shutil.which("node"), "Node.js is needed"
    assert shutil.which("npm"), "npm is needed"
    if not (NODE_DIR / "node_modules" / "@trycourier" / "courier").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )


def test_courier_node_sdk_create_add_run_retrieve_list_and_refusals(api: ApiProcess) -> None:
    _node_sdk()
    env = os.environ | {"COURIER_BASE_URL": api.url, "COURIER_API_KEY": KEYS["acme"]}
    done = subprocess.run(
        ["node", "courier_flow.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["added"] == {
        "errors": [
            {"error": "Duplicate user", "user": {"recipient": "spike", "to": {"user_id": "spike"}}}
        ],
        "total": 2,
    }
    job = out["job"]
    assert (job["status"], job["received"], job["enqueued"], job["failures"]) == (
        "COMPLETED",
        2,
        1,
        1,
    )
    assert job["definition"] == {
        "message": {"template": "TPL"},
        "data": {"company": "Acme"},
        "event": "TPL",
    }
    items = out["users"]["items"]
    assert [(i.get("recipient"), i["status"]) for i in items] == [
        ("spike", "ENQUEUED"),
        (None, "ERROR"),
    ]
    assert out["users"]["paging"] == {"cursor": None, "more": False}
    for name, prefix in (
        ("run", "BulkJobDuplicateInvocationError"),
        ("ingest", "BulkJobAlreadySubmittedError"),
    ):
        refused = out["refused"][name]
        assert (refused["name"], refused["status"]) == ("BadRequestError", 400)
        assert refused["error"]["type"] == "invalid_request_error"
        assert refused["error"]["message"].startswith(prefix)
