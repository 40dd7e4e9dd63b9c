"""antenna-elt: Kafka -> PostgreSQL / Parquet lake ingestion, loaders, alerts and simulator;
the local stack and Superset deployer live apart in :mod:`antenna_elt.devstack`."""

__version__ = "0.1.0"
