"""Where the ingest loop lands batches: PostgreSQL (speed layer) and the Parquet lake."""
