"""The dbt marts against the simulator's ledger, across targets, and incremental builds.

A fixed-seed simulated run (with malformed, duplicated and late events) goes through the
real Kafka broker into both ingestors: the PostgreSQL ingestor (speed layer) and the lake
ingestor (hourly Parquet, batch layer). `dbt build` runs on PostgreSQL over staging and on
DuckDB over the lake the lake ingestor wrote, and the two must agree row for row. The run
and the two builds are shared with test_spark.py (fixtures in conftest.py, marts_run.py).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from lake_helpers import read_lake
from marts_run import MARTS, Run, mart_rows, naive, rounded

from antenna_elt.dbt import query_postgres, run_dbt
from antenna_elt.sim.users import load_users


def test_staged_events_equal_the_ledger(simulated: Run) -> None:
    ledger = simulated.ledger
    rows = query_postgres(
        simulated.settings.pg_conninfo,
        f"select count(*), count(distinct (event_time, id, antenna_id, app, bytes)) from {simulated.raw_schema}.device_usage",
    )
    assert rows == [
        (ledger.counters["events"] + ledger.counters["duplicates"], ledger.counters["events"])
    ]
    rejects = query_postgres(
        simulated.settings.pg_conninfo,
        f"select reason, count(*) from {simulated.raw_schema}.device_usage_rejects group by 1",
    )
    assert dict(rejects) == dict(ledger.malformed_by_kind)
    for dimension, column in (
        ("antenna", "antenna_id::text"),
        ("user", "id::text"),
        ("app", "app"),
    ):
        staged = query_postgres(
            simulated.settings.pg_conninfo,
            f"select date_trunc('hour', event_time), {column}, sum(bytes)::bigint from "
            f"(select distinct event_time, id, antenna_id, app, bytes from {simulated.raw_schema}.device_usage) e "
            "group by 1, 2",
        )
        assert {(h, k): v for h, k, v in staged} == ledger.bytes_by("hour", dimension)


def test_bytes_equals_the_ledger_per_window(simulated: Run, postgres_marts: str) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "bytes")
    kinds = {"antenna_bytes_total": "antenna", "id_bytes_total": "user", "app_bytes_total": "app"}
    for kind, dimension in kinds.items():
        served = {(ts, key): value for ts, key, value, t in rows if t == kind}
        expected = {
            (naive(ts), key): v
            for (ts, key), v in simulated.ledger.bytes_by("window", dimension).items()
        }
        assert served == expected, kind
    assert {t for *_, t in rows} == set(kinds)


def test_bytes_hourly_equals_the_ledger_per_hour(simulated: Run, postgres_marts: str) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "bytes_hourly")
    emails = {u.id: u.email for u in load_users()}
    ledger = simulated.ledger
    antenna = {(naive(ts), k): v for (ts, k), v in ledger.bytes_by("hour", "antenna").items()}
    app = {(naive(ts), k): v for (ts, k), v in ledger.bytes_by("hour", "app").items()}
    mail = {
        (naive(ts), emails[k]): v
        for (ts, k), v in ledger.bytes_by("hour", "user").items()
        if k in emails
    }
    assert {(ts, k): v for ts, k, v, t in rows if t == "antenna_bytes_total"} == antenna
    assert {(ts, k): v for ts, k, v, t in rows if t == "app_bytes_total"} == app
    assert {(ts, k): v for ts, k, v, t in rows if t == "mail_bytes_total"} == mail
    # unknown devices are missing from the emails only, not from the antenna totals
    assert ledger.unknown_devices
    assert sum(antenna.values()) == ledger.total_bytes


def test_user_quota_limit_lists_exactly_the_ledgers_breaches(
    simulated: Run, postgres_marts: str
) -> None:
    rows = mart_rows(simulated, "postgres", postgres_marts, "user_quota_limit")
    expected = {
        (email, naive(hour), usage, quota)
        for email, hour, usage, quota in simulated.ledger.breaches()
    }
    assert expected, "the simulated run has breaches"
    assert sorted(rows) == sorted((e, u, q, h) for e, h, u, q in expected)


def test_devices_active_recent_equals_the_ledger_on_both_targets(
    simulated: Run, postgres_marts: str, duckdb_marts: str
) -> None:
    """The devices active in the 10 minutes before the newest event, those missing from
    user metadata among them, and their bytes: what the simulator sent (it knows each
    device's last event and the bytes of each second), late and duplicated events
    included once."""
    recent = simulated.ledger.recent
    assert recent is not None and recent["unknown_devices_active"] > 0
    expected = [
        (
            naive(datetime.fromisoformat(recent["as_of"].replace("Z", "+00:00"))),
            recent["active_minutes"],
            recent["devices_active"],
            recent["unknown_devices_active"],
            recent["bytes_total"],
        )
    ]
    assert mart_rows(simulated, "postgres", postgres_marts, "fct_devices_active_recent") == expected
    assert mart_rows(simulated, "duckdb", duckdb_marts, "fct_devices_active_recent") == expected


def test_the_lake_holds_exactly_the_ledgers_events(simulated: Run) -> None:
    ledger = simulated.ledger
    events = read_lake(simulated.tmp / "lake")
    rejects = read_lake(simulated.tmp / "lake", "device_usage_rejects")
    assert events.num_rows == ledger.counters["events"] + ledger.counters["duplicates"]
    reasons: dict[str, int] = {}
    for reason in rejects.column("reason").to_pylist():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == dict(ledger.malformed_by_kind)
    distinct = {
        (row["event_time"], row["id"], row["antenna_id"], row["app"], row["bytes"])
        for row in events.select(["event_time", "id", "antenna_id", "app", "bytes"]).to_pylist()
    }
    assert len(distinct) == ledger.counters["events"]
    for dimension, column in (("antenna", "antenna_id"), ("user", "id"), ("app", "app")):
        totals: dict[tuple[datetime, str], int] = {}
        for event_time, dev, antenna, app, nbytes in distinct:
            key = (
                event_time.replace(minute=0, second=0, microsecond=0),
                {"antenna_id": antenna, "id": dev, "app": app}[column],
            )
            totals[key] = totals.get(key, 0) + nbytes
        assert totals == ledger.bytes_by("hour", dimension), dimension


def test_duckdb_over_the_lake_builds_the_same_marts_as_postgres(
    simulated: Run, postgres_marts: str, duckdb_marts: str
) -> None:
    schema = duckdb_marts
    for mart in MARTS:
        assert mart_rows(simulated, "duckdb", schema, mart) == mart_rows(
            simulated, "postgres", postgres_marts, mart
        ), mart
    # the analyst marts too (floats rounded to 9 digits)
    for mart in (
        "fct_network_activity_windowed",
        "fct_antenna_bandwidth_windowed",
        "fct_quota_breaches",
    ):
        duck = mart_rows(simulated, "duckdb", schema, mart)
        pg = mart_rows(simulated, "postgres", postgres_marts, mart)
        assert rounded(duck) == rounded(pg), mart


def test_duckdb_lists_the_hours_the_lake_ingestor_closed(simulated: Run, duckdb_marts: str) -> None:
    """Events run from 07:30 (late ones) to 09:59; an hour closes once the watermark is 10
    minutes past its end, so 07:00 and 08:00 are closed and 09:00 is still open."""
    events = read_lake(simulated.tmp / "lake")
    per_hour: dict[datetime, int] = {}
    for moment in events.column("event_time").to_pylist():
        hour = naive(moment.replace(minute=0, second=0, microsecond=0))
        per_hour[hour] = per_hour.get(hour, 0) + 1
    closed = mart_rows(simulated, "duckdb", duckdb_marts, "dim_closed_hours")
    hours = [datetime(2026, 11, 24, 7), datetime(2026, 11, 24, 8)]
    assert [(row[0], row[1]) for row in closed] == [(h, per_hour[h]) for h in hours]
    assert datetime(2026, 11, 24, 9) in per_hour


def test_bigquery_target_parses_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
    proc = run_dbt(
        ["parse", "--target", "bigquery", "--no-partial-parse", "--target-path", str(tmp_path)],
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
