"""The unit tier's fixtures: ``kafka_client`` runs a test once per Kafka client."""

from __future__ import annotations

from collections.abc import Iterator

import fakes
import pytest

from antenna_elt.ingest.consumer import CLIENTS


@pytest.fixture(params=CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each Kafka client in turn: the scripted consumers stand for its consumer, and the
    loop drives it through that client's adapter."""
    fakes.use_client(request.param)
    try:
        yield request.param
    finally:
        fakes.use_client(fakes.KAFKA_PYTHON)
