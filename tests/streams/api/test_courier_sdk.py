"""Courier's official Python SDK, unchanged, against this server (only base_url and key)."""

from __future__ import annotations

import time

from courier import Courier

from streams.testing.processes import KEYS, ApiProcess


def test_trycourier_sdk_create_add_run_retrieve_list(api: ApiProcess) -> None:
    client = Courier(api_key=KEYS["acme"], base_url=api.url)
    created = client.bulk.create_job(
        message={"event": "WELCOME", "data": {"company": "Acme"}, "brand": "BRAND"}
    )
    job_id = created.job_id
    assert job_id.startswith("1-")
    client.bulk.add_users(
        job_id=job_id,
        users=[
            {"to": {"user_id": "spike_spiegel", "data": {"recipientName": "Spike Spiegel"}}},
            {"to": {"user_id": "faye_valentine", "data": {"recipientName": "Faye Valentine"}}},
        ],
    )
    client.bulk.run_job(job_id=job_id)
    deadline = time.monotonic() + 60
    while True:
        job = client.bulk.retrieve_job(job_id=job_id).job
        if job.status == "COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (job.status, job.received, job.enqueued, job.failures) == ("COMPLETED", 2, 2, 0)
    assert job.definition.event == "WELCOME"
    page = client.bulk.list_users(job_id=job_id)
    assert [item.status for item in page.items] == ["ENQUEUED", "ENQUEUED"]
    assert all(item.message_id and item.message_id.startswith("1-") for item in page.items)
    assert page.paging.more is False
