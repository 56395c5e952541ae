# The bulkstream image: worker and API share it (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENV BULKSTREAM_DATA_DIR=/var/lib/bulkstream
VOLUME /var/lib/bulkstream
ENTRYPOINT ["bulkstream"]
CMD ["worker"]
