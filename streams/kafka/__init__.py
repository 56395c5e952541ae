"""Kafka plumbing: the topics (declared once), client settings, producers, bounded calls."""
