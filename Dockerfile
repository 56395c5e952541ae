# The bulkstream image: worker and API share it (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir . \
 && useradd --uid 10001 --user-group --no-create-home bulkstream \
 && mkdir -p /var/lib/bulkstream && chown bulkstream:bulkstream /var/lib/bulkstream
ENV BULKSTREAM_DATA_DIR=/var/lib/bulkstream \
    BULKSTREAM_METRICS_HOST=0.0.0.0
VOLUME /var/lib/bulkstream
USER 10001
# 8080: the API; 9100: a worker's /metrics, /healthz, /readyz
EXPOSE 8080 9100
ENTRYPOINT ["bulkstream"]
CMD ["worker"]
