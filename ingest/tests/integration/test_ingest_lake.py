"""`antenna-elt ingest lake` against the real broker: the Parquet lake holds every event
once, in the hour it belongs to, and only ever whole, committed files."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from helpers import all_offsets, end_offsets, kill9, produce, unique_group, wait_for
from lake_helpers import (
    HOUR_03,
    event,
    ingest_lake,
    lake_loop,
    lake_offsets,
    lake_process,
    leftovers,
    parquet_files,
    read_lake,
)

from antenna_elt.settings import Settings
from antenna_elt.sim import ledger as ledger_module
from antenna_elt.sinks.lake.parquet import event_schema, reject_schema

HOUR = 3600


def hour_folder(root: Path, hour: int, table: str = "device_usage") -> Path:
    t = datetime.fromtimestamp(hour, UTC)
    return root / table / f"year={t:%Y}/month={t:%m}/day={t:%d}/hour={t:%H}"


def manifest(root: Path, hour: int) -> dict | None:
    label = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H")
    path = root / "_manifests/closed_hours/device_usage" / f"{label}.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_lake_totals_per_hour_antenna_user_and_app_equal_the_simulator_ledger(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "ledger.json"
    sim = run_cli(
        "simulate", "--topic", kafka_topic, "--count", "30000", "--duration", "3h",
        "--start", "2026-11-24T03:00:00Z", "--seed", "11", "--malformed-share", "0.01",
        "--duplicate-share", "0.01", "--late-share", "0.03", "--ledger", str(ledger_path),
        "--quiet",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    truth = ledger_module.load(ledger_path)
    lake = tmp_path / "lake"

    stats = ingest_lake(settings, kafka_topic, str(lake), unique_group(), batch_size=4000)

    # every offset of the topic once, as an event or a reject
    ends = end_offsets(settings, kafka_topic)
    assert sum(ends.values()) == 30_000 == truth.counters["messages_sent"]
    assert sorted(lake_offsets(lake)) == all_offsets(ends)
    assert stats.rejects == truth.counters["malformed"]
    rejects = read_lake(lake, "device_usage_rejects")
    assert Counter(rejects.column("reason").to_pylist()) == Counter(truth.malformed_by_kind)

    # one row per distinct event (duplicates are byte-identical re-sends), totals exact
    events = read_lake(lake).to_pylist()
    distinct = {(r["event_time"], r["id"], r["antenna_id"], r["app"], r["bytes"]) for r in events}
    assert len(events) == truth.counters["events"] + truth.counters["duplicates"]
    assert len(distinct) == truth.counters["events"]
    for dimension, column in (("antenna", 2), ("user", 1), ("app", 3)):
        totals: dict[tuple[datetime, str], int] = defaultdict(int)
        for row in distinct:
            totals[(row[0].replace(minute=0, second=0, microsecond=0), row[column])] += row[4]
        assert dict(totals) == truth.bytes_by("hour", dimension), dimension


def test_files_have_the_explicit_schema_and_hold_one_partition_and_hour_each(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    # partition 0: hours 03 and 04; partition 2: a breaker and hour 04
    produce(
        settings,
        kafka_topic,
        [(0, event(HOUR_03 + 10 * i, i)) for i in range(5)]
        + [(0, event(HOUR_03 + HOUR + 5, 50)), (2, b"[1, 2]"), (2, event(HOUR_03 + HOUR, 7))],
    )
    lake = tmp_path / "lake"

    ingest_lake(settings, kafka_topic, str(lake), unique_group())

    names = [str(p.relative_to(lake)) for p in parquet_files(lake)]
    t = kafka_topic
    assert names == [
        f"device_usage/year=2026/month=11/day=24/hour=03/{t}+0+00000000000000000000+00000000000000000004.parquet",
        f"device_usage/year=2026/month=11/day=24/hour=04/{t}+0+00000000000000000005+00000000000000000005.parquet",
        f"device_usage/year=2026/month=11/day=24/hour=04/{t}+2+00000000000000000001+00000000000000000001.parquet",
    ]
    first = pq.ParquetFile(parquet_files(lake)[0])
    assert first.schema_arrow == event_schema()
    assert first.metadata.row_group(0).column(0).compression == "ZSTD"
    assert read_lake(lake).select(["bytes", "app", "kafka_partition", "kafka_offset"]).to_pylist()[
        :2
    ] == [
        {"bytes": 0, "app": "SKYPE", "kafka_partition": 0, "kafka_offset": 0},
        {"bytes": 1, "app": "SKYPE", "kafka_partition": 0, "kafka_offset": 1},
    ]
    [reject_file] = parquet_files(lake, "device_usage_rejects")
    assert reject_file.name == f"{t}+2+00000000000000000000+00000000000000000000.parquet"
    assert pq.ParquetFile(reject_file).schema_arrow == reject_schema()
    assert pq.read_table(reject_file).select(["raw_value", "reason"]).to_pylist() == [
        {"raw_value": b"[1, 2]", "reason": "not_object"}
    ]


def test_files_roll_by_count_with_names_given_by_their_offsets(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    produce(settings, kafka_topic, [(1, event(HOUR_03 + i, i)) for i in range(1000)])
    lake = tmp_path / "lake"
    group = unique_group()

    ingest_lake(settings, kafka_topic, str(lake), group, batch_size=100)
    again = ingest_lake(settings, kafka_topic, str(lake), group, batch_size=100)

    files = parquet_files(lake)
    assert [f.name for f in files] == [
        f"{kafka_topic}+1+{first:020d}+{first + 99:020d}.parquet" for first in range(0, 1000, 100)
    ]
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [100] * 10
    assert again.messages == 0


def test_a_quiet_topic_still_closes_its_file_after_the_maximum_age(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    loop = lake_loop(
        settings, kafka_topic, str(lake), unique_group(), max_latency=1.0, until_caught_up=False
    )
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        produce(settings, kafka_topic, [(0, event(HOUR_03 + i, i)) for i in range(10)])
        # no more traffic: the batch (far from 250000 messages) must still be written
        wait_for(lambda: len(parquet_files(lake)) == 1, 30, "the file of a quiet topic")
    finally:
        loop.stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert read_lake(lake).column("bytes").to_pylist() == list(range(10))


def test_late_events_add_a_file_to_their_closed_hour_and_leave_earlier_files_untouched(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    group = unique_group()
    # hour 03 and, on every partition, events 20 minutes into hour 04: the watermark
    # (04:20 - 10 minutes of grace) closes hour 03
    produce(
        settings,
        kafka_topic,
        [(p, event(HOUR_03 + 60 * i + p, 100 + i)) for p in range(3) for i in range(10)]
        + [(p, event(HOUR_03 + HOUR + 1200, 1)) for p in range(3)],
    )
    # without compaction (test_lake_compaction.py has late events after compaction)
    ingest_lake(settings, kafka_topic, str(lake), group, compact=False)
    folder = hour_folder(lake, HOUR_03)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    closed = manifest(lake, HOUR_03)
    assert closed is not None and (closed["rows"], closed["version"]) == (30, 1)
    assert manifest(lake, HOUR_03 + HOUR) is None  # hour 04 is still open

    produce(
        settings, kafka_topic, [(1, event(HOUR_03 + 1800, 5000)), (1, event(HOUR_03 + 1801, 1))]
    )
    ingest_lake(settings, kafka_topic, str(lake), group, compact=False)

    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    late_file = f"{kafka_topic}+1+00000000000000000011+00000000000000000012.parquet"
    assert set(after) == set(before) | {late_file}
    assert {name: after[name] for name in before} == before
    assert pq.read_table(folder / late_file).column("bytes").to_pylist() == [5000, 1]
    reclosed = manifest(lake, HOUR_03)
    assert reclosed is not None
    assert (reclosed["rows"], reclosed["version"]) == (32, 2)
    assert sorted(Path(f["path"]).name for f in reclosed["files"]) == sorted(after)


@pytest.mark.slow
@pytest.mark.usefixtures("kafka_client")  # once per Kafka client
def test_kill_9_during_writes_leaves_no_partial_lost_or_doubled_event(
    settings: Settings, kafka_topic: str, tmp_path: Path
) -> None:
    total = 24_000

    def messages(start: int, stop: int) -> list[tuple[int, bytes | None]]:
        # two hours of event time, a contract breaker every 50 messages
        return [
            (i % 3, event(HOUR_03 + i * 7200 // total, i) if i % 50 != 49 else b"{broken")
            for i in range(start, stop)
        ]

    producer = threading.Thread(
        target=lambda: [
            produce(settings, kafka_topic, messages(s, s + 2000)) or time.sleep(0.3)
            for s in range(0, total, 2000)
        ]
    )
    producer.start()
    lake = tmp_path / "lake"
    group = unique_group()
    log = tmp_path / "ingest.log"
    rng = random.Random(5)
    # small batches and latency: a kill lands while files, records or renames are written
    args = ("--batch-size", "600", "--max-latency", "0.1", "--close-grace", "0")
    starts = 0

    def start() -> subprocess.Popen[bytes]:
        nonlocal starts
        starts += 1
        proc = lake_process(kafka_topic, str(lake), group, *args, log_path=log)
        # kill only once it owns partitions: then it is reading, writing and committing
        wait_for(
            lambda: log.read_text().count("resuming at stored offsets") >= starts,
            60,
            "the ingestor to get its partitions",
        )
        return proc

    proc = start()
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.2))
        kill9(proc)
        # what a reader sees right after a crash is whole: every visible file reads
        for path in parquet_files(lake) + parquet_files(lake, "device_usage_rejects"):
            pq.read_table(path)
        proc = start()
    producer.join()
    wait_for(lambda: lake_rows(lake) >= total, 120, "every message in the lake")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "stop requested" in log.read_text()
    final = lake_process(kafka_topic, str(lake), group, *args, "--until-caught-up", log_path=log)
    assert final.wait(timeout=120) == 0, log.read_text()[-3000:]

    ends = end_offsets(settings, kafka_topic)
    assert sum(ends.values()) == total
    assert sorted(lake_offsets(lake)) == all_offsets(ends)
    assert sum(read_lake(lake).column("bytes").to_pylist()) == sum(
        i for i in range(total) if i % 50 != 49
    )
    assert leftovers(lake) == []
    # hour 03 closed on the event-time watermark (and was compacted); its manifest lists
    # the live files of its folder
    closed = manifest(lake, HOUR_03)
    assert closed is not None
    assert sorted(Path(f["path"]).name for f in closed["files"]) == sorted(
        p.name for p in parquet_files(lake) if p.parent == hour_folder(lake, HOUR_03)
    )
    assert closed["rows"] == sum(1 for i in range(total) if i % 50 != 49 and i < total // 2)


def lake_rows(root: Path) -> int:
    files = parquet_files(root) + parquet_files(root, "device_usage_rejects")
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def test_bad_lake_locations_are_one_line_naming_the_fix(tmp_path: Path) -> None:
    bad_scheme = run_cli("ingest", "lake", "--lake", "ftp://host/lake", timeout=60)
    assert bad_scheme.returncode == 2
    assert bad_scheme.stderr.splitlines() == [
        "antenna-elt: error: lake URI 'ftp://host/lake' is not supported; use a path, file://, s3:// or gs://"
    ]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    unwritable = run_cli(
        "ingest", "lake", "--lake", str(blocked / "lake"), "--until-caught-up", timeout=60
    )
    assert unwritable.returncode == 2
    [line] = unwritable.stderr.strip().splitlines()
    assert line.startswith(f"antenna-elt: error: cannot write to the lake at file://{blocked}/lake")
    assert line.endswith("or pass --lake / set ANTENNA_ELT_LAKE")


# -- S3, against a real S3-compatible server (moto in server mode) -----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_server() -> Iterator[dict[str, str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "ANTENNA_ELT_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        wait_for(lambda: _accepts(port), 30, "moto_server")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_s3_lake_on_a_local_s3_server_holds_every_event_once(
    settings: Settings, kafka_topic: str, s3_server: dict[str, str], tmp_path: Path
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": s3_server["ANTENNA_ELT_S3_ENDPOINT"]},
        key="testing",
        secret="testing",
    )
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    produce(
        settings,
        kafka_topic,
        [(i % 3, event(HOUR_03 + i, i) if i % 100 != 99 else b"nope") for i in range(3000)],
    )
    env = {**os.environ, **s3_server}
    group = unique_group()
    log = tmp_path / "s3.log"
    args = ("--until-caught-up", "--batch-size", "1000", "--close-grace", "0")
    lake = f"s3://{bucket}/lake"

    first = lake_process(kafka_topic, lake, group, *args, log_path=log, env=env)
    assert first.wait(timeout=120) == 0, log.read_text()[-3000:]
    second = lake_process(kafka_topic, lake, group, *args, log_path=log, env=env)
    assert second.wait(timeout=120) == 0, log.read_text()[-3000:]

    fs.invalidate_cache()
    offsets: list[tuple[int, int]] = []
    total_bytes = 0
    for table in ("device_usage", "device_usage_rejects"):
        for path in sorted(fs.glob(f"{bucket}/lake/{table}/*/*/*/*/*.parquet")):
            with fs.open(path, "rb") as handle:
                data = pq.read_table(handle, partitioning=None)
            offsets += zip(
                data.column("kafka_partition").to_pylist(),
                data.column("kafka_offset").to_pylist(),
                strict=True,
            )
            if table == "device_usage":
                total_bytes += sum(data.column("bytes").to_pylist())
    assert sorted(offsets) == all_offsets(end_offsets(settings, kafka_topic))
    assert total_bytes == sum(i for i in range(3000) if i % 100 != 99)
    assert fs.glob(f"{bucket}/lake/_ingest/{group}/*/*/tmp/*") == []
    assert "done: 0 events and 0 rejects" in log.read_text()
