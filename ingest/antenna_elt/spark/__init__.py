"""Apache Spark as the scale-out option: ``antenna-elt ingest spark``, a Structured
Streaming job with the same event contract and the same outputs as the Python ingestors
(session.py: the session and the Kafka connector's jars; stream.py: the query;
lake.py and postgres.py: what each micro-batch writes, exactly once)."""
