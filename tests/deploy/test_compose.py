"""docker-compose.yml runs the full stack: Kafka, Redis, two workers and the API.

No Docker engine is needed: the file is read and checked against the code
(variables are settings, every bulkstream service has a healthcheck on the
port it serves, each worker has its own id and state volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from tests.deploy import made_image

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
IMAGE = made_image()
UNPREFIXED = {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    parsed = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(parsed, dict)
    found = parsed["services"]
    assert isinstance(found, dict)
    return found


def _bulkstream(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def test_the_full_stack_is_there(services: dict[str, Any]) -> None:
    workers = [n for n, s in _bulkstream(services).items() if s["command"][0] == "worker"]
    assert len(workers) == 2, workers
    assert "api" in services
    assert {"kafka", "redis"} <= set(services)


def test_bulkstream_services_build_the_image_from_the_dockerfile(services: dict[str, Any]) -> None:
    """`docker compose build` makes what `make image` makes, on a base of the user's choice."""
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == set(_bulkstream(services)), f"services building {IMAGE}: {sorted(built)}"
    for name, service in built.items():
        assert service["build"]["context"] == ".", name
        assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert service["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-python:3.11-slim}", name


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    missing = [name for name, s in services.items() if "healthcheck" not in s]
    assert not missing, f"services without a healthcheck: {missing}"


def test_bulkstream_services_wait_for_healthy_services(services: dict[str, Any]) -> None:
    for name, service in _bulkstream(services).items():
        conditions = {dep: v["condition"] for dep, v in service["depends_on"].items()}
        assert conditions == {"kafka": "service_healthy", "redis": "service_healthy"}, name


def test_variables_are_settings(services: dict[str, Any]) -> None:
    fields = {f"BULKSTREAM_{name.upper()}" for name in Settings.model_fields}
    for name, service in _bulkstream(services).items():
        unknown = set(service["environment"]) - fields - UNPREFIXED
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_workers_have_their_own_id_and_state(services: dict[str, Any]) -> None:
    workers = [s for s in _bulkstream(services).values() if s["command"][0] == "worker"]
    ids = {s["environment"]["BULKSTREAM_WORKER_ID"] for s in workers}
    volumes = {s["volumes"][0].split(":")[0] for s in workers}
    assert len(ids) == len(volumes) == len(workers)


def test_healthchecks_probe_the_ports_served(services: dict[str, Any]) -> None:
    worker_port = Settings.model_fields["metrics_port"].default
    for name, service in _bulkstream(services).items():
        probe = " ".join(service["healthcheck"]["test"])
        if service["command"][0] == "worker":
            assert service["environment"]["BULKSTREAM_METRICS_HOST"] == "0.0.0.0"
            assert f":{worker_port}/readyz" in probe, name
        else:
            port = service["command"][service["command"].index("--port") + 1]
            assert f"{port}:{port}" in service["ports"]
            assert f":{port}/readyz" in probe, name
