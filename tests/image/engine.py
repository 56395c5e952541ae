"""Containers of the image under test, run by Docker or Podman.

Every container uses the host's network (the local Kafka and Redis are on
loopback), and has a name and, for a worker, a named volume of its own, so a
killed worker can be started again as itself: same worker id, same state.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = "/var/lib/bulkstream"  # the image's BULKSTREAM_DATA_DIR and VOLUME


def detect_engine() -> str:
    """docker if its daemon answers, else podman (deploy/image/engine.sh decides)."""
    found = subprocess.run(
        [str(ROOT / "deploy" / "image" / "engine.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return found.stdout.strip()


@dataclass
class Engine:
    name: str  # docker or podman

    def base(self) -> list[str]:
        """The engine's command; Podman with runc, where the default crun refuses the
        host's cgroups (`PODMAN_RUNTIME` chooses another, empty for the default)."""
        command = [self.name]
        if self.name == "podman":
            runtime = os.environ.get("PODMAN_RUNTIME", shutil.which("runc") or "")
            if runtime:
                command += ["--runtime", runtime]
        return command

    def run_flags(self) -> list[str]:
        """Podman's default ulimits are above what a sandbox may grant. Open files: the
        limit this process has (a container cannot be given more). Processes: 4,096
        (the user of every container, uid 10001, needs a few hundred threads); raising
        it to the host's own limit needs CAP_SYS_RESOURCE, which a sandbox may lack."""
        if self.name != "podman":
            return []
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = 65536 if files == resource.RLIM_INFINITY else min(files, 65536)
        return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.base(), *args], capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"`{self.name} {' '.join(args[:3])} ...` failed ({done.returncode}): "
                f"{done.stderr.strip()[-2000:]}"
            )
        return done

    def image_exists(self, image: str) -> bool:
        return self("image", "inspect", image, check=False).returncode == 0

    def image_size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


@dataclass
class Container:
    """One `bulkstream` container: `create` once, then start, kill, start again."""

    engine: Engine
    name: str
    image: str
    args: list[str]
    env: dict[str, str]
    volume: str | None = None
    log_path: Path | None = None
    created: bool = field(default=False, init=False)

    def create(self) -> Container:
        self.engine("rm", "--force", self.name, check=False)
        flags = ["--name", self.name, "--network", "host", *self.engine.run_flags()]
        if self.volume is not None:
            flags += ["--volume", f"{self.volume}:{STATE_DIR}"]
        for key, value in sorted(self.env.items()):
            flags += ["--env", f"{key}={value}"]
        self.engine("create", *flags, self.image, *self.args)
        self.created = True
        return self

    def start(self) -> Container:
        self.engine("start", self.name)
        return self

    def kill(self) -> None:
        """SIGKILL to the container's main process: no shutdown, no flush."""
        self.engine("kill", "--signal", "KILL", self.name)
        deadline = time.monotonic() + 60
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self, grace: int = 60) -> None:
        self.engine("stop", "--time", str(grace), self.name, check=False, timeout=grace + 60)

    def running(self) -> bool:
        state = self.engine(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        ).stdout.strip()
        return state == "true"

    def exit_code(self) -> str:
        return self.engine(
            "inspect", "--format", "{{.State.ExitCode}}", self.name, check=False
        ).stdout.strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.engine("exec", self.name, *command, check=False, timeout=60)

    def healthy(self) -> bool:
        """The image's HEALTHCHECK, run now (Podman without systemd has no timer for
        it; Docker's own schedule says `healthy` once it passed)."""
        if self.engine.name == "podman":
            return self.engine("healthcheck", "run", self.name, check=False).returncode == 0
        status = self.engine(
            "inspect", "--format", "{{.State.Health.Status}}", self.name, check=False
        ).stdout.strip()
        return status == "healthy"

    def logs(self) -> str:
        done = self.engine("logs", self.name, check=False, timeout=120)
        return done.stdout + done.stderr

    def save_logs(self) -> None:
        if self.log_path is not None and self.created:
            self.log_path.write_text(self.logs())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def remove(self) -> None:
        if self.created:
            self.save_logs()
            # --volumes: the anonymous volume of the image's VOLUME, too (the API's)
            self.engine("rm", "--force", "--volumes", self.name, check=False, timeout=120)
        if self.volume is not None:
            self.engine("volume", "rm", "--force", self.volume, check=False)
