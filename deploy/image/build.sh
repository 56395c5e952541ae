#!/usr/bin/env bash
# Builds the bulkstream image from the Dockerfile with Docker or Podman,
# whichever answers (deploy/image/engine.sh):   make image
#
#   IMAGE         the tag to build (the Makefile: bulkstream:<version>)
#   BASE_IMAGE    the base of both stages. Unset: python:3.11-slim if the engine
#                 has it or can pull it, else a base made from Debian's packages
#                 (deploy/image/base.sh, tagged $LOCAL_BASE, made once).
#   IMAGE_WHEELS  yes: install from wheels built here from the tested virtualenv
#                 (pip reaches no index inside the build); no: pip in the build
#                 uses the index; auto (default): yes with the local base.
#   IMAGE_PIP_CA  a CA bundle for pip inside the build (the build secret
#                 `pip-ca`), where a proxy intercepts TLS and IMAGE_WHEELS=no.
#   PYTHON        the virtualenv's python, for the wheels (Python 3.11).
#   NATIVE_WHEELS where `make native` put the wheel of the native module
#                 (native/target/wheels): the image installs it; without one, the
#                 image runs its native parts in Python.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/image"
cd "$ROOT"
IMAGE="${IMAGE:?set IMAGE, e.g. bulkstream:0.1.0}"
PUBLIC_BASE=python:3.11-slim
# Tagged by its recipe: a change to base.sh makes a new one.
LOCAL_BASE="${LOCAL_BASE:-localhost/bulkstream-base:bookworm-$(sha256sum "$HERE/base.sh" | cut -c1-12)}"
IMAGE_WHEELS="${IMAGE_WHEELS:-auto}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WHEELS=build/image/wheels
NATIVE_WHEELS="${NATIVE_WHEELS:-native/target/wheels}"
NATIVE_DIR=build/image/native
VERSION="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"

log() { printf '[image] %s\n' "$*"; }

ENGINE="$("$HERE/engine.sh")"
log "engine: $ENGINE"

if [[ -z "${BASE_IMAGE:-}" ]]; then
  if "$ENGINE" image inspect "$PUBLIC_BASE" >/dev/null 2>&1 \
      || timeout 300 "$ENGINE" pull --quiet "$PUBLIC_BASE" >/dev/null 2>&1; then
    BASE_IMAGE="$PUBLIC_BASE"
  else
    log "$PUBLIC_BASE cannot be pulled: using a base made from Debian's packages"
    "$HERE/base.sh" "$ENGINE" "$LOCAL_BASE"
    BASE_IMAGE="$LOCAL_BASE"
  fi
fi
log "base: $BASE_IMAGE"

if [[ "$IMAGE_WHEELS" == auto ]]; then
  if [[ "$BASE_IMAGE" == "$LOCAL_BASE" ]]; then IMAGE_WHEELS=yes; else IMAGE_WHEELS=no; fi
fi
wheels_arg=()
if [[ "$IMAGE_WHEELS" == yes ]]; then
  # The base's python is 3.11: wheels of the same minor (manylinux or pure).
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    log "wheels for the image need the virtualenv on Python 3.11 ($PYTHON is not)"; exit 1; }
  log "wheels: the tested virtualenv's versions, built here into $WHEELS"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PYTHON" -m pip freeze --exclude-editable > build/image/constraints.txt
  # setuptools: the build backend, for `pip install .` without an index.
  if ! "$PYTHON" -m pip wheel --disable-pip-version-check --wheel-dir "$WHEELS" \
      --constraint build/image/constraints.txt . 'setuptools>=77' > build/image/wheels.log 2>&1; then
    tail -n 30 build/image/wheels.log; log "pip wheel failed (build/image/wheels.log)"; exit 1
  fi
  rm -f "$WHEELS"/bulkstream-*.whl  # the image builds bulkstream from its own sources
  if ls "$WHEELS" | grep -v -E -- '-(none-any|[a-z0-9_.]*manylinux[a-z0-9_.]*)\.whl$'; then
    log "the wheels above are neither pure nor manylinux: they may not run on the base"; exit 1
  fi
  digest="$(ls "$WHEELS" | sha256sum | cut -c1-16)"
  wheels_arg=(--build-arg "WHEELS=$WHEELS" --build-arg "WHEELS_DIGEST=$digest")
fi

# The native module: its wheel, built here against the tested sources (abi3,
# manylinux), in both modes: it is not on any package index.
native_arg=()
rm -rf "$NATIVE_DIR" && mkdir -p "$NATIVE_DIR"
native_wheel="$(ls "$NATIVE_WHEELS"/bulkstream_native-*-abi3-manylinux*.whl 2>/dev/null | head -n 1 || true)"
if [[ -n "$native_wheel" ]]; then
  cp "$native_wheel" "$NATIVE_DIR/"
  log "native expansion: $(basename "$native_wheel")"
  native_arg=(--build-arg "NATIVE=$NATIVE_DIR/$(basename "$native_wheel")"
              --build-arg "NATIVE_DIGEST=$(sha256sum "$native_wheel" | cut -c1-16)")
else
  log "no native wheel in $NATIVE_WHEELS (make native): the image expands pages in Python"
fi

flags=()
if [[ -n "${IMAGE_PIP_CA:-}" ]]; then
  flags+=(--secret "id=pip-ca,src=$IMAGE_PIP_CA")
fi
if [[ "$ENGINE" == podman ]]; then
  # chroot: no runtime needed to build; docker format: keeps the HEALTHCHECK.
  flags+=(--isolation chroot --format docker)
fi
started=$(date +%s)
"$ENGINE" build "${flags[@]}" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" "${wheels_arg[@]}" \
  "${native_arg[@]}" \
  --tag "$IMAGE" --file Dockerfile .
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
log "built $IMAGE with $ENGINE in $(( $(date +%s) - started )) s: $(( size / 1000000 )) MB ($size bytes)"
