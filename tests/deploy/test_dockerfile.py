"""The Dockerfile builds bulkstream from what it copies, as far as it can be
checked without a Docker engine: the build step (`pip install .`) is run on a
context made of exactly the Dockerfile's COPY sources, and the wheel it makes
must hold every module and schema of the checkout and the `bulkstream` command
the ENTRYPOINT calls; ENV names settings, EXPOSE the ports the code serves.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from streams.cli import build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
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


def _args(instruction: str) -> list[str]:
    return [args for name, args in _instructions() if name == instruction]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    context = tmp_path_factory.mktemp("context")
    for args in _args("COPY"):
        *sources, _ = args.split()
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


def test_the_install_step_is_what_the_image_runs() -> None:
    (run,) = _args("RUN")
    assert run.startswith("pip install --no-cache-dir . ")


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
    assert parsed["console_scripts"]["bulkstream"] == "streams.cli:main"
    assert _args("ENTRYPOINT") == ['["bulkstream"]']
    (command,) = _args("CMD")
    build_parser().parse_args(command.strip('[]"').split('", "'))


def test_env_sets_settings_and_expose_names_the_served_ports() -> None:
    fields = {f"BULKSTREAM_{name.upper()}" for name in Settings.model_fields}
    (env,) = _args("ENV")
    names = {pair.split("=", 1)[0] for pair in env.split()}
    assert names <= fields, sorted(names - fields)
    (exposed,) = _args("EXPOSE")
    api_port = Settings.model_fields["api_port"].default
    metrics_port = Settings.model_fields["metrics_port"].default
    assert set(exposed.split()) == {str(api_port), str(metrics_port)}
