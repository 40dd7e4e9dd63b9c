"""The Kafka client libraries by name (ANTENNA_ELT_KAFKA_CLIENT, --kafka-client)."""

from __future__ import annotations

from antenna_elt.ingest import kafka_python, librdkafka
from antenna_elt.ingest.consumer import CLIENTS, KAFKA_PYTHON, LIBRDKAFKA, Client

__all__ = ["CLIENTS", "KAFKA_PYTHON", "LIBRDKAFKA", "client"]


def client(name: str) -> Client:
    """The client called ``name`` (one of :data:`CLIENTS`). Neither library is imported
    until a consumer is opened."""
    if name == KAFKA_PYTHON:
        return kafka_python.CLIENT
    if name == LIBRDKAFKA:
        return librdkafka.CLIENT
    raise ValueError(f"unknown Kafka client {name!r}; use one of {', '.join(CLIENTS)}")
