"""The ingest loop every ingestor shares: consume, batch, write, commit (Kafka Connect's
storage sinks and Meltano's SDK are the models; see loop.py)."""
