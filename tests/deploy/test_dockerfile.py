"""The Dockerfile builds bulkstream from what it copies, as far as it can be
checked without a container engine (`make image-test` builds and runs it):
the build stage's install step is run on a context made of exactly that
stage's COPY sources, and the wheel it makes must hold every module and schema
of the checkout and the `bulkstream` command the ENTRYPOINT calls. The final
stage gets only the virtualenv (no pip, no compiler), runs as the user the
Kubernetes manifests expect, carries a HEALTHCHECK and labels; ENV names
settings, EXPOSE the ports the code serves.
"""

from __future__ import annotations

import configparser
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from streams.ops.cli import build_parser
from streams.ops.healthcheck import endpoint, main_command
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

Instruction = tuple[str, str]


def _instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> tuple[list[Instruction], list[list[Instruction]]]:
    """The instructions before the first FROM, and each stage's (its FROM first)."""
    preamble: list[Instruction] = []
    stages: list[list[Instruction]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


PREAMBLE, STAGES = _stages()
BUILD, FINAL = STAGES[0], STAGES[-1]


def _args(instruction: str, stage: list[Instruction]) -> list[str]:
    return [args for name, args in stage if name == instruction]


def _arg_defaults(stage: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for args in _args("ARG", stage):
        name, _, default = args.partition("=")
        defaults[name] = default
    return defaults


def _copies(stage: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of the stage's COPY from the build context."""
    found = []
    for args in _args("COPY", stage):
        if not args.startswith("--from"):
            *sources, destination = args.split()
            found.append((sources, destination))
    return found


def _install_run() -> tuple[list[str], list[str]]:
    """The build stage's install RUN: its --mount options and its `&&`-joined commands."""
    (run,) = [args for args in _args("RUN", BUILD) if "pip install" in args]
    mounts = re.findall(r"--mount=(\S+)", run)
    command = re.sub(r"--mount=\S+\s*", "", run)
    return mounts, [part.strip() for part in command.split("&&")]


def _expand(command: str, wheels: str) -> str:
    """The shell's expansion of ${WHEELS:+...} and $WHEELS in the install step."""
    command = re.sub(r"\$\{WHEELS:\+([^}]*)\}", lambda m: m.group(1) if wheels else "", command)
    return command.replace("$WHEELS", wheels).replace("${WHEELS}", wheels)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    context = tmp_path_factory.mktemp("context")
    for sources, _ in _copies(BUILD):
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                (context / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, context / source)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(out),
            str(context),
        ],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("bulkstream-*.whl")
    return zipfile.ZipFile(built)


# -- the stages ------------------------------------------------------------------


def test_two_stages_on_one_base_image_given_as_a_build_argument() -> None:
    assert _arg_defaults(PREAMBLE) == {"BASE_IMAGE": "python:3.11-slim"}, (
        "BASE_IMAGE, before the first FROM, defaults to the public Python 3.11 image"
    )
    assert len(STAGES) == 2
    assert BUILD[0][1] == "${BASE_IMAGE} AS build"
    assert FINAL[0][1] == "${BASE_IMAGE}", "both stages on the same base: the venv's python"


def test_the_install_step_installs_the_copied_project_without_a_cache() -> None:
    mounts, commands = _install_run()
    assert "type=bind,target=/context" in mounts, "the wheels come from the mounted context"
    for wheels in ("", "build/image/wheels"):
        (install,) = [_expand(c, wheels) for c in commands if "pip install" in c]
        assert install.startswith("/opt/bulkstream/bin/pip install --no-cache-dir ")
        assert install.endswith(" ."), "the project as the build stage copied it"
        if wheels:
            assert f"--no-index --find-links /context/{wheels} ." in install
        else:
            assert "--no-index" not in install
            assert "--find-links" not in install


def test_a_ca_bundle_for_pip_can_be_given_as_a_build_secret() -> None:
    mounts, commands = _install_run()
    assert "type=secret,id=pip-ca" in mounts
    assert commands[0] == (
        "if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi"
    ), "the secret, when given, is pip's CA bundle for the install"
    assert all("pip-ca" not in args for args in _args("ENV", BUILD) + _args("ENV", FINAL))


def test_the_venv_leaves_pip_behind_and_imports_what_the_commands_load() -> None:
    _, commands = _install_run()
    install = next(n for n, c in enumerate(commands) if "pip install" in c)
    assert commands[install + 1] == "/opt/bulkstream/bin/pip uninstall --yes pip setuptools"
    assert re.fullmatch(
        r'/opt/bulkstream/bin/python -c "import streams\.ops\.worker, streams\.api\.app, '
        r'streams\.ops\.healthcheck"',
        commands[install + 2],
    )


def test_the_final_stage_copies_only_the_venv_and_installs_nothing() -> None:
    assert _copies(FINAL) == [], "the final stage takes nothing from the context"
    assert _args("COPY", FINAL) == ["--from=build /opt/bulkstream /opt/bulkstream"]
    for run in _args("RUN", FINAL):
        for tool in ("pip", "apt-get", "gcc", "cc ", "make"):
            assert tool not in run, f"the final stage runs {tool}: {run}"
    (env,) = _args("ENV", FINAL)
    assert "PATH=/opt/bulkstream/bin:" in env


def test_the_build_context_holds_the_copied_sources_and_the_wheels() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    for sources, _ in _copies(BUILD):
        for source in sources:
            assert included(source), f".dockerignore leaves out {source}, which the build copies"
    assert included("build/image/wheels/x-1.0-py3-none-any.whl")
    for heavy in (".venv/bin/python", ".local/kafka/data", ".git/HEAD"):
        assert not included(heavy), f"{heavy} would be sent as build context"


# -- user, labels, healthcheck -----------------------------------------------------


def test_the_image_runs_as_the_user_the_manifests_expect() -> None:
    (user,) = _args("USER", FINAL)
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a numeric user: runAsNonRoot can only check a number"
    assert int(uid) != 0, "a non-root user"
    (run,) = [args for args in _args("RUN", FINAL) if "useradd" in args]
    assert f"--uid {uid}" in run
    (volume,) = _args("VOLUME", FINAL)
    assert f"chown bulkstream:bulkstream {volume}" in run, "the state volume is the user's"
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                context = doc["spec"]["template"]["spec"]["securityContext"]
                assert context["runAsUser"] == int(uid)
                assert str(context["runAsGroup"]) == (gid or uid)


def test_labels_name_the_project_its_version_and_license() -> None:
    labels = " ".join(_args("LABEL", FINAL))
    found = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', labels))
    assert found["org.opencontainers.image.title"] == PROJECT["name"]
    assert found["org.opencontainers.image.version"] == "${VERSION}"
    assert found["org.opencontainers.image.licenses"] == PROJECT["license"]  # SPDX (PEP 639)
    assert found["org.opencontainers.image.description"]
    assert _arg_defaults(FINAL)["VERSION"] == PROJECT["version"]


def test_the_healthcheck_probes_the_main_process() -> None:
    (healthcheck,) = _args("HEALTHCHECK", FINAL)
    assert healthcheck.endswith('CMD ["python", "-m", "streams.ops.healthcheck"]')
    settings = Settings(metrics_host="0.0.0.0", metrics_port=9100, api_host="::", api_port=8080)
    script = "/opt/bulkstream/bin/bulkstream"
    python = "/opt/bulkstream/bin/python3"
    (command,) = _args("CMD", FINAL)
    default = main_command([python, script, *command.strip('[]"').split('", "')])
    assert default is not None
    assert default.command == "worker"
    assert endpoint(default, settings, "/healthz") == "http://127.0.0.1:9100/healthz"
    api = main_command([python, script, "api", "--host", "0.0.0.0", "--port", "8081"])
    assert endpoint(api, settings, "/healthz") == "http://127.0.0.1:8081/healthz"
    assert main_command(["sh", "-c", "sleep 1"]) is None


# -- what the image runs -----------------------------------------------------------


def test_the_wheel_holds_every_module_and_schema(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = {
        path.relative_to(ROOT).as_posix()
        for package in ("streams", "schemas")
        for path in (ROOT / package).rglob("*")
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts
    }
    assert expected, "no modules found"
    assert expected <= names, sorted(expected - names)


def test_the_entrypoint_is_the_wheels_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parsed = configparser.ConfigParser()
    parsed.read_string(wheel.read(entry_points).decode())
    assert parsed["console_scripts"]["bulkstream"] == "streams.ops.cli:main"
    assert _args("ENTRYPOINT", FINAL) == ['["bulkstream"]']
    (command,) = _args("CMD", FINAL)
    build_parser().parse_args(command.strip('[]"').split('", "'))


def test_env_sets_settings_and_expose_names_the_served_ports() -> None:
    fields = {f"BULKSTREAM_{name.upper()}" for name in Settings.model_fields}
    (env,) = _args("ENV", FINAL)
    names = {pair.split("=", 1)[0] for pair in env.split()}
    ours = {name for name in names if name.startswith("BULKSTREAM_")}
    assert ours <= fields, sorted(ours - fields)
    assert names - ours <= {"PATH", "PYTHONUNBUFFERED"}, sorted(names - ours)
    (volume,) = _args("VOLUME", FINAL)
    assert f"BULKSTREAM_DATA_DIR={volume}" in env.split()
    (exposed,) = _args("EXPOSE", FINAL)
    api_port = Settings.model_fields["api_port"].default
    metrics_port = Settings.model_fields["metrics_port"].default
    assert set(exposed.split()) == {str(api_port), str(metrics_port)}
