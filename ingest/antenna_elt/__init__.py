"""antenna-elt: Kafka -> PostgreSQL / Parquet lake ingestion, simulator and local stack."""

__version__ = "0.1.0"
