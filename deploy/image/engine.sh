#!/usr/bin/env bash
# Prints the container engine to use: $CONTAINER_ENGINE if set, else docker if
# its daemon answers, else podman if it works; fails with a hint otherwise.
set -euo pipefail
if [[ -n "${CONTAINER_ENGINE:-}" ]]; then
  echo "$CONTAINER_ENGINE"
elif command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
  echo docker
elif command -v podman >/dev/null && timeout 60 podman info >/dev/null 2>&1; then
  echo podman
else
  echo "no container engine answers: start Docker, or install Podman" \
    "(apt-get install podman runc)" >&2
  exit 1
fi
