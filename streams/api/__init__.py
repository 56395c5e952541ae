"""The Courier-compatible HTTP API: writes go through Kafka, reads come from Redis."""
