"""The API's Prometheus metrics: requests and latency by route template, method and code."""

from __future__ import annotations

from streams.testing.processes import ApiProcess
from tests.streams.test_operate import samples_of


def test_api_counts_requests_by_route_template(api: ApiProcess) -> None:
    with api.client() as http:
        job_id = http.post("/bulk", json={"message": {"template": "T"}}).json()["jobId"]
        assert http.get(f"/bulk/{job_id}").status_code == 200
        assert http.get("/bulk/unknown-job").status_code == 404
        assert http.get("/no/such/route").status_code == 404
        assert http.delete("/bulk").status_code == 405
        samples = samples_of(api.url)
    requests = {
        dict(labels)["route"] + " " + dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "bulkstream_http_requests_total" and dict(labels)["method"] == "GET"
    }
    assert requests["/bulk/{job_id} 200"] == 1
    assert requests["/bulk/{job_id} 404"] == 1
    assert requests["unmatched 404"] == 1
    deletes = [
        dict(labels)["route"]
        for (name, labels), value in samples.items()
        if name == "bulkstream_http_requests_total" and dict(labels)["method"] == "DELETE"
    ]
    assert deletes == ["/bulk"], "a 405 keeps its path's template"
    assert (
        samples[
            (
                "bulkstream_http_request_duration_seconds_count",
                (("code", "200"), ("method", "POST"), ("route", "/bulk")),
            )
        ]
        == 1
    )
    assert not any(job_id in str(labels) for _, labels in samples)
