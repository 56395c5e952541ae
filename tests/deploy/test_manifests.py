"""The Kubernetes manifests in deploy/kubernetes/ agree with the code.

Every YAML document there is loaded and checked against what the code reads
and serves: variable names are `Settings` fields, the ConfigMap parses with
`Settings`, probes hit declared ports and existing API routes, the container
arguments parse with the CLI, and KEDA watches the consumer groups and topics
the worker uses. No Kafka or Redis is needed. Every object also passes the
schemas of the Kubernetes API (kubernetes-validate, strict: an unknown field
fails, as `kubectl apply` would reject it) and the ScaledObject its KEDA
CRD's schema (tests/deploy/schemas/), offline; the Deployments run the image
`make image` builds.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import TypeAdapter
from starlette.routing import Route

from streams.api.app import create_api
from streams.api.auth import ApiKeys
from streams.ops.cli import build_parser
from streams.settings import Settings
from tests.deploy import made_image

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
PREFIX = "BULKSTREAM_"
# The two variables read without the prefix (validation aliases in Settings).
UNPREFIXED = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers", "REDIS_URL": "redis_url"}
POD_NAME = "bulkstream-worker-5d9c7b8f4-x2x7q"  # what fieldRef metadata.name gives
# The oldest Kubernetes minor still in common support, and the newest the
# installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
KEDA_CRD = ROOT / "tests" / "deploy" / "schemas" / "keda.sh_scaledobjects-v2.20.2.yaml"

Doc = dict[str, Any]


def _load() -> list[tuple[str, Doc]]:
    docs: list[tuple[str, Doc]] = []
    for path in sorted([*MANIFESTS.glob("*.yaml"), *MANIFESTS.glob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
                docs.append((path.name, doc))
    return docs


DOCUMENTS = _load()
OBJECTS = [doc for _, doc in DOCUMENTS if doc.get("kind") != "Kustomization"]


def objects(kind: str) -> list[Doc]:
    return [doc for doc in OBJECTS if doc["kind"] == kind]


def one(kind: str, name: str) -> Doc:
    found = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name!r} in deploy/kubernetes/"
    return found[0]


def containers() -> Iterator[tuple[Doc, Doc]]:
    for deployment in objects("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def command_of(container: Doc) -> str:
    return str(build_parser().parse_args(container.get("args", [])).command)


def the_container(command: str) -> tuple[Doc, Doc]:
    """The Deployment and container that run `bulkstream <command>`."""
    found = [(d, c) for d, c in containers() if command_of(c) == command]
    assert len(found) == 1, f"expected one container running `bulkstream {command}`"
    return found[0]


def container_env(container: Doc) -> dict[str, str]:
    """The environment the container gets: ConfigMaps of envFrom, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom source {source}"
        env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert field_path == "metadata.name", f"{var['name']}: unexpected {field_path}"
            env[var["name"]] = POD_NAME
    return env


def setting_field(name: str) -> str:
    """The Settings field an environment variable sets (it may not exist)."""
    if name in UNPREFIXED:
        return UNPREFIXED[name]
    assert name.startswith(PREFIX), f"{name} is neither {PREFIX}* nor {sorted(UNPREFIXED)}"
    return name.removeprefix(PREFIX).lower()


def container_ports(container: Doc) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container["ports"]}


def resolve_port(container: Doc, port: int | str) -> int:
    ports = container_ports(container)
    if isinstance(port, str):
        assert port in ports, f"{container['name']}: no container port named {port!r} ({ports})"
        return ports[port]
    assert port in ports.values(), f"{container['name']}: port {port} is not declared ({ports})"
    return port


def probes(container: Doc) -> dict[str, Doc]:
    return {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    }


def api_routes() -> set[str]:
    app = create_api(Settings(), ApiKeys({}))
    return {route.path for route in app.routes if isinstance(route, Route)}


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], Settings]:
    """Settings read from exactly this environment (the test's own is cleared)."""

    def build(env: dict[str, str]) -> Settings:
        for name in list(os.environ):
            if name.upper().startswith(PREFIX) or name.upper() in UNPREFIXED:
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return build


# -- the documents -------------------------------------------------------------


def test_every_document_is_a_namespace_agnostic_kubernetes_object() -> None:
    assert OBJECTS, "no manifests found in deploy/kubernetes/"
    seen: set[tuple[str, str]] = set()
    for doc in OBJECTS:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"not a Kubernetes object: {doc}"
        name = doc["metadata"].get("name")
        assert name, f"{doc['kind']} without metadata.name"
        assert "namespace" not in doc["metadata"], (
            f"{doc['kind']} {name} sets a namespace; choose it with `kubectl apply -n`"
        )
        assert (doc["kind"], name) not in seen, f"two {doc['kind']} objects named {name}"
        seen.add((doc["kind"], name))


def test_kustomization_lists_every_manifest() -> None:
    kustomizations = [doc for _, doc in DOCUMENTS if doc.get("kind") == "Kustomization"]
    assert len(kustomizations) == 1, "expected one kustomization.yaml"
    listed = set(kustomizations[0]["resources"])
    files = {name for name, doc in DOCUMENTS if doc.get("kind") != "Kustomization"}
    assert listed == files, f"kustomization resources {sorted(listed)} != files {sorted(files)}"


def test_selectors_match_their_pod_template_labels_only() -> None:
    deployments = objects("Deployment")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), (
            f"Deployment {name}: selector {selector} does not match its pod labels {labels}"
        )
        for other in deployments:
            if other is not deployment:
                other_labels = other["spec"]["template"]["metadata"]["labels"]
                assert not selector.items() <= other_labels.items(), (
                    f"Deployment {name}'s selector also selects the pods of "
                    f"{other['metadata']['name']}"
                )


def test_container_args_parse_with_the_cli() -> None:
    for deployment, container in containers():
        try:
            build_parser().parse_args(container.get("args", []))
        except SystemExit:
            pytest.fail(
                f"Deployment {deployment['metadata']['name']}: `bulkstream "
                f"{' '.join(container.get('args', []))}` is not a valid command line"
            )
    assert {command_of(c) for _, c in containers()} == {"worker", "api"}


# -- environment and Settings --------------------------------------------------


def test_every_variable_is_a_setting() -> None:
    names = {name for cm in objects("ConfigMap") for name in cm["data"]}
    names |= {name for _, container in containers() for name in container_env(container)}
    fields = set(Settings.model_fields)
    unknown = sorted(name for name in names if setting_field(name) not in fields)
    assert not unknown, (
        f"{unknown} set in deploy/kubernetes/ but not read by streams.settings.Settings "
        f"(it ignores unknown {PREFIX}* variables silently)"
    )
    # The unprefixed fields have aliases: their BULKSTREAM_ form is never read.
    shadowed = sorted(name for name in names if name in {PREFIX + f.upper() for f in UNPREFIXED})
    assert not shadowed, f"{shadowed}: use KAFKA_BOOTSTRAP_SERVERS / REDIS_URL"


@pytest.mark.parametrize("command", ["worker", "api"])
def test_container_environment_parses_with_settings(
    command: str, settings_from: Callable[[dict[str, str]], Settings]
) -> None:
    _, container = the_container(command)
    env = container_env(container)
    fields = Settings.model_fields
    unknown = sorted(name for name in env if setting_field(name) not in fields)
    assert not unknown, f"{unknown}: no such streams.settings.Settings fields"
    settings = settings_from(env)  # a ValidationError here names the bad value
    for name, value in env.items():
        field = setting_field(name)
        annotation = fields[field].annotation
        assert annotation is not None, f"Settings.{field} has no type"
        expected = TypeAdapter(annotation).validate_python(value)
        assert getattr(settings, field) == expected, f"{name}={value!r} did not reach {field}"


def test_worker_id_is_the_pod_name(settings_from: Callable[[dict[str, str]], Settings]) -> None:
    _, container = the_container("worker")
    sources = {var["name"]: var for var in container.get("env", [])}
    assert "BULKSTREAM_WORKER_ID" in sources, "the worker needs BULKSTREAM_WORKER_ID"
    field_ref = sources["BULKSTREAM_WORKER_ID"].get("valueFrom", {}).get("fieldRef", {})
    assert field_ref.get("fieldPath") == "metadata.name", (
        "BULKSTREAM_WORKER_ID must come from the pod name: unique per live pod, so no "
        "two workers share a fan-out transactional id"
    )
    assert settings_from(container_env(container)).worker_id == POD_NAME


def test_worker_state_folder_is_a_volume() -> None:
    deployment, container = the_container("worker")
    data_dir = container_env(container)["BULKSTREAM_DATA_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert data_dir in mounts, f"BULKSTREAM_DATA_DIR={data_dir} is not a mounted volume"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[data_dir]], "the state folder is an emptyDir"


# -- ports, probes, routes -----------------------------------------------------


def test_probe_ports_are_declared_container_ports() -> None:
    for _, container in containers():
        assert probes(container).keys() >= {"livenessProbe", "readinessProbe"}, (
            f"{container['name']} needs a liveness and a readiness probe"
        )
        for probe in probes(container).values():
            resolve_port(container, probe["port"])


def test_worker_serves_metrics_and_probes_on_the_metrics_port() -> None:
    deployment, container = the_container("worker")
    env = container_env(container)
    port = int(env["BULKSTREAM_METRICS_PORT"])
    assert container_ports(container).get("metrics") == port, (
        f"the worker's `metrics` container port is not BULKSTREAM_METRICS_PORT={port}"
    )
    for kind, probe in probes(container).items():
        assert resolve_port(container, probe["port"]) == port, f"worker {kind} not on {port}"
    assert probes(container)["livenessProbe"]["path"] == "/healthz"
    assert probes(container)["readinessProbe"]["path"] == "/readyz"
    assert env["BULKSTREAM_METRICS_HOST"] == "0.0.0.0", "kubelet probes need 0.0.0.0"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port


def test_api_listens_on_its_declared_port() -> None:
    deployment, container = the_container("api")
    args = build_parser().parse_args(container["args"])
    assert args.host == "0.0.0.0", "the API must listen on every interface in a pod"
    assert args.port in container_ports(container).values(), (
        f"the API listens on {args.port}, which the container does not declare"
    )
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == args.port


def test_api_probe_paths_are_api_routes() -> None:
    _, container = the_container("api")
    routes = api_routes()
    for kind, probe in probes(container).items():
        assert probe["path"] in routes, f"API {kind} path {probe['path']} not in {sorted(routes)}"
    assert probes(container)["livenessProbe"]["path"] == "/healthz"
    assert probes(container)["readinessProbe"]["path"] == "/readyz"


def test_api_scrape_path_is_an_api_route() -> None:
    deployment, _ = the_container("api")
    path = deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    routes = api_routes()
    assert path in routes, f"the API is scraped at {path}, which it does not serve ({routes})"


def test_service_targets_the_api_http_port() -> None:
    deployment, container = the_container("api")
    service = one("Service", "bulkstream-api")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector.items() <= pod_labels.items(), "Service bulkstream-api misses the API pods"
    for other in objects("Deployment"):
        if other is not deployment:
            labels = other["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= labels.items(), (
                f"Service bulkstream-api also selects {other['metadata']['name']}"
            )
    ports = service["spec"]["ports"]
    assert [p["port"] for p in ports] == [80]
    target = ports[0]["targetPort"]
    assert target == "http", "the Service targets the API's `http` port by name"
    resolve_port(container, target)


# -- API keys ------------------------------------------------------------------


def test_api_keys_secret_is_mounted_at_the_keys_file() -> None:
    deployment, container = the_container("api")
    keys_file = PurePosixPath(container_env(container)["BULKSTREAM_API_KEYS_FILE"])
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == str(keys_file.parent)]
    assert len(mounts) == 1, f"nothing is mounted at {keys_file.parent}"
    assert "subPath" not in mounts[0], "a subPath mount would not see Secret updates"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secret_volume = volumes[mounts[0]["name"]]["secret"]
    secret = one("Secret", secret_volume["secretName"])
    assert secret["metadata"]["name"] == "bulkstream-api-keys"
    items = {item["path"]: item["key"] for item in secret_volume.get("items", [])}
    key = items.get(keys_file.name, keys_file.name)
    assert key == "api-keys", f"{keys_file} should be the Secret's key `api-keys`, not {key}"
    assert key in secret.get("stringData", {}) | secret.get("data", {}), (
        f"Secret {secret['metadata']['name']} has no key {key!r}"
    )


def test_api_keys_secret_is_a_valid_keys_file(tmp_path: Path) -> None:
    content = one("Secret", "bulkstream-api-keys")["stringData"]["api-keys"]
    path = tmp_path / "api-keys"
    path.write_text(content)
    ApiKeys.from_settings(Settings(api_keys="", api_keys_file=path))  # raises on a bad line
    examples = re.findall(r"^#\s*(\S+ sha256:[0-9a-f]{64})\s*$", content, flags=re.MULTILINE)
    assert examples, "the Secret should show an example `tenant sha256:<hex>` line"
    path.write_text("\n".join(examples) + "\n")
    assert len(ApiKeys.from_settings(Settings(api_keys="", api_keys_file=path))) == len(examples)


# -- KEDA ----------------------------------------------------------------------


def test_keda_scales_the_worker_on_the_groups_and_topics_it_reads(
    settings_from: Callable[[dict[str, str]], Settings],
) -> None:
    deployment, container = the_container("worker")
    env = container_env(container)
    settings = settings_from(env)
    (scaled,) = objects("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] == deployment["metadata"]["name"], "KEDA must scale the worker"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    watched = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers}
    assert watched == {
        (settings.app_id, settings.topic_commands),
        (f"{settings.app_id}-fanout", settings.topic_fanout_pages),
    }, "KEDA triggers do not watch the aggregate and fan-out groups of the code"
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"], (
            f"trigger on {meta['topic']}: bootstrapServers differs from the ConfigMap"
        )
        assert int(meta["lagThreshold"]) > 0
        assert str(meta["allowIdleConsumers"]).lower() == "false"


def test_max_replicas_do_not_exceed_partitions(
    settings_from: Callable[[dict[str, str]], Settings],
) -> None:
    _, container = the_container("worker")
    partitions = settings_from(container_env(container)).partitions
    (scaled,) = objects("ScaledObject")
    low, high = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert 1 <= low <= high, f"replicas {low}..{high}"
    assert high <= partitions, (
        f"maxReplicaCount {high} > BULKSTREAM_PARTITIONS {partitions}: the extra replicas "
        "would get no partition and sit idle"
    )


# -- schemas and image ---------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_passes_the_kubernetes_schema(version: str) -> None:
    core = [doc for doc in OBJECTS if doc["kind"] != "ScaledObject"]
    assert {doc["kind"] for doc in core} == {"ConfigMap", "Secret", "Deployment", "Service"}
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc}")


def test_the_schema_check_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(objects("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _strict(schema: Doc) -> Doc:
    """A CRD's OpenAPI v3 schema as strict JSON Schema: an object that lists its
    properties (and does not keep unknown fields) takes no others."""
    out: Doc = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_strict(sub) for sub in value]
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and not keeps_unknown:
        out["additionalProperties"] = False
    return out


def _keda_validator(api_version: str) -> jsonschema.protocols.Validator:
    (crd,) = [doc for doc in yaml.safe_load_all(KEDA_CRD.read_text()) if doc]
    group = crd["spec"]["group"]
    for version in crd["spec"]["versions"]:
        if f"{group}/{version['name']}" == api_version:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            return jsonschema.Draft4Validator(schema)
    raise AssertionError(f"{KEDA_CRD.name} has no version {api_version}")


def test_the_scaled_object_passes_the_keda_crd_schema() -> None:
    (scaled,) = objects("ScaledObject")
    validator = _keda_validator(scaled["apiVersion"])
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(scaled)]
    assert not errors, errors
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["maxReplicas"] = wrong["spec"].pop("maxReplicaCount")
    assert list(validator.iter_errors(wrong)), "the KEDA schema check lets an unknown field by"


def test_deployments_run_the_image_make_image_builds() -> None:
    image = made_image()
    for deployment, container in containers():
        assert container["image"] == image, (
            f"Deployment {deployment['metadata']['name']} runs {container['image']}, "
            f"`make image` builds {image}"
        )
        assert container["imagePullPolicy"] == "IfNotPresent", "a locally loaded image runs"
