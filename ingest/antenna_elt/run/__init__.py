"""``antenna-elt run``: the single-machine production mode.

One process supervises both ingestors as worker processes (restarted with backoff when one
dies), and runs the dbt builds on a cadence while they write:

- the speed cycle, back to back (or every ``--speed-interval``): an incremental ``dbt build``
  of the PostgreSQL marts (data tests on what the build touched), then ``notify``; ``dbt
  source freshness`` beside it; one status line each (what ran, seconds, rows, tests
  failed, ingest lag per partition);
- the batch cycle, when the lake ingestor closes an hour (its manifest appears or gets a
  new version): ``load bigquery`` of those hours when BigQuery is configured, then a build
  of the warehouse target (DuckDB by default).

A failing data test or a stale source is logged loudly; ingestion goes on. Every step is
idempotent and transactional (ingestion watermarks, alert outbox), so a worker or a build
killed at any point only delays the marts.
"""
