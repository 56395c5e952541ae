# The bulkstream image: worker and API share it (see docker-compose.yml and
# deploy/kubernetes/). `make image` builds it with Docker or Podman.
#
#   docker build -t bulkstream:0.1.0 .                      # public base, pip from the index
#   make image                                              # the same, or offline (below)
#
# BASE_IMAGE: any Debian-like image with Python 3.11 and its venv module;
# both stages use it. Without a registry, `make image` makes one from Debian's
# packages (deploy/image/base.sh).
# WHEELS: a folder of the build context holding every wheel the install needs
# (`make image` fills build/image/wheels from the tested virtualenv): then
# nothing is fetched from a package index, and the versions are the tested
# ones. Empty (the default): pip installs from the index as usual.
# NATIVE: the wheel of the native module (native/: the fan-out's page expansion,
# the ingest's reads, the delivery fold, the feeds' Kafka reader with its own
# librdkafka linked in) in the build context (`make image` puts the one `make
# native` built in build/image/native); empty: all of it in Python (the same
# results, slower).
ARG BASE_IMAGE=python:3.11-slim

# -- build: a virtualenv with bulkstream and its dependencies ------------------
FROM ${BASE_IMAGE} AS build
ARG WHEELS=
# A digest of the wheels' names: new wheels make a new install layer.
ARG WHEELS_DIGEST=
ARG NATIVE=
ARG NATIVE_DIGEST=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/bulkstream
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
# The context is mounted (not copied) for the wheels, so no layer keeps them.
# Behind a TLS-intercepting proxy, give pip the proxy's CA as the build secret
# `pip-ca` (make image: IMAGE_PIP_CA=/etc/ssl/certs/ca-certificates.crt).
# pip and setuptools leave the virtualenv; then everything the worker and the
# API load is imported once: a missing system library fails the build.
RUN --mount=type=bind,target=/context \
    --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && echo "wheels: ${WHEELS:-none, from the index} ${WHEELS_DIGEST}" \
 && echo "native expansion: ${NATIVE:-none} ${NATIVE_DIGEST}" \
 && /opt/bulkstream/bin/pip install --no-cache-dir ${NATIVE:+/context/$NATIVE} \
      ${WHEELS:+--no-index --find-links /context/$WHEELS} . \
 && /opt/bulkstream/bin/pip uninstall --yes pip setuptools \
 && /opt/bulkstream/bin/python -c "import streams.ops.worker, streams.api.app, streams.ops.healthcheck" \
 && if [ -n "$NATIVE" ]; then /opt/bulkstream/bin/python -c "import bulkstream_native"; fi

# -- the image: the base, the virtualenv, a user -------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bulkstream" \
      org.opencontainers.image.description="Bulk notification jobs over Kafka, Courier's Bulk API on the wire: worker (bulkstream worker) and HTTP API (bulkstream api)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin bulkstream \
 && mkdir -p /var/lib/bulkstream \
 && chown bulkstream:bulkstream /var/lib/bulkstream
COPY --from=build /opt/bulkstream /opt/bulkstream
ENV PATH=/opt/bulkstream/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    BULKSTREAM_DATA_DIR=/var/lib/bulkstream \
    BULKSTREAM_METRICS_HOST=0.0.0.0
VOLUME /var/lib/bulkstream
USER 10001:10001
# 8080: the API; 9100: a worker's /metrics, /healthz, /readyz
EXPOSE 8080 9100
# /healthz of whichever process runs: the API's port (--port or
# BULKSTREAM_API_PORT) or the worker's (BULKSTREAM_METRICS_PORT).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "streams.ops.healthcheck"]
ENTRYPOINT ["bulkstream"]
CMD ["worker"]
