#!/usr/bin/env bash
# Makes a base image from Debian's packages, for machines that reach no image
# registry: Debian 12 (bookworm) with its python3 (3.11, the project's),
# python3-venv, ca-certificates and libstdc++6 (rocksdict is C++), imported
# into the container engine.
#
#   deploy/image/base.sh ENGINE TAG       (make image calls it when it must)
#
# Nothing is done if the engine already has TAG. Needs root and mmdebstrap
# (installed with apt-get if missing); takes 20-40 s.
set -euo pipefail

ENGINE="${1:?usage: base.sh docker|podman TAG}"
TAG="${2:?usage: base.sh docker|podman TAG}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$ROOT/build/image"

log() { printf '[image] %s\n' "$*"; }

if "$ENGINE" image inspect "$TAG" >/dev/null 2>&1; then
  log "base image $TAG already there"
  exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
  log "installing mmdebstrap with apt-get"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mmdebstrap >/dev/null
fi

mkdir -p "$WORK"
tarball="$WORK/base.tar"
trap 'rm -f "$tarball"' EXIT
log "making base image $TAG from Debian bookworm's packages (mmdebstrap)"
# `essential` and not `minbase`: no apt in the image. usr-is-merged rather than
# usrmerge (which pulls in the whole of perl), and then that perl is purged.
# No docs, man pages or translations.
mmdebstrap --quiet --variant=essential \
  --include=usr-is-merged,passwd,python3,python3-venv,ca-certificates,libstdc++6 \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='chroot "$1" dpkg --purge usrmerge libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36 libgdbm-compat4' \
  bookworm "$tarball"
"$ENGINE" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tarball" "$TAG" >/dev/null
log "base image $TAG: $("$ENGINE" image inspect --format '{{.Size}}' "$TAG") bytes"
