"""Where things live in the lake, by name only (no storage access here).

Layout under ``<lake>`` (a local path, ``file://``, ``s3://`` or ``gs://`` URI)::

    device_usage/year=YYYY/month=MM/day=DD/hour=HH/<topic>+<partition>+<first>+<last>.parquet
    device_usage_rejects/year=YYYY/month=MM/day=DD/hour=HH/<same naming>.parquet   (by ingest time)
    _ingest/<group>/<topic>/<partition>/commits/<first offset>.json    commit records
    _ingest/<group>/<topic>/<partition>/tmp/...                         files not yet committed
    _manifests/open_hours/device_usage/<YYYY-MM-DDTHH>.json             hours being written
    _manifests/closed_hours/device_usage/<YYYY-MM-DDTHH>.json           complete hours
    _manifests/versions/device_usage/<YYYY-MM-DDTHH>/v<n>.json          their versions (:mod:`.manifests`)
    device_usage/.../hour=HH/compacted-v<n>-<k>.parquet                  an hour's files compacted

Only finished files ever carry the ``.parquet`` suffix in the data folders, so a reader
globbing ``device_usage/*/*/*/*/*.parquet`` never sees a partial or uncommitted file; once
an hour was compacted, a reader also applies the manifest's rule of live files
(:func:`.manifests.live_paths`), so that it never reads a file and its replacement.
"""

from __future__ import annotations

from datetime import UTC, datetime

from antenna_elt.schema import EVENTS, REJECTS

HOUR = 3600
EVENTS_TABLE = EVENTS.name
REJECTS_TABLE = REJECTS.name
OPEN_HOURS = f"_manifests/open_hours/{EVENTS_TABLE}"
CLOSED_HOURS = f"_manifests/closed_hours/{EVENTS_TABLE}"
VERSIONS = f"_manifests/versions/{EVENTS_TABLE}"
HOUR_FORMAT = "%Y-%m-%dT%H"


# -- names ------------------------------------------------------------------------------


def hour_label(hour_start: int) -> str:
    """``2026-11-24T03`` for the hour starting at ``hour_start`` (epoch seconds, UTC)."""
    return datetime.fromtimestamp(hour_start, UTC).strftime(HOUR_FORMAT)


def parse_hour(text: str) -> int:
    """Epoch seconds of an hour label (``2026-11-24T03``, minutes and zone optional)."""
    cleaned = text.strip().removesuffix("Z").removesuffix("+00:00")
    for fmt in (HOUR_FORMAT, "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(cleaned, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if moment.minute or moment.second:
            raise ValueError(f"{text!r} is not the start of an hour")
        return int(moment.timestamp())
    raise ValueError(f"{text!r} is not an hour like 2026-11-24T03")


def hour_dir(table: str, hour_start: int) -> str:
    t = datetime.fromtimestamp(hour_start, UTC)
    return f"{table}/year={t:%Y}/month={t:%m}/day={t:%d}/hour={t:%H}"


def file_name(topic: str, partition: int, first: int, last: int) -> str:
    """Kafka Connect's naming: a replay of the same offsets gives the same name."""
    return f"{topic}+{partition}+{first:020d}+{last:020d}.parquet"


def ingest_dir(group: str, topic: str, partition: int) -> str:
    return f"_ingest/{group}/{topic}/{partition}"


def closed_manifest(hour_start: int) -> str:
    return f"{CLOSED_HOURS}/{hour_label(hour_start)}.json"


def open_marker(hour_start: int) -> str:
    return f"{OPEN_HOURS}/{hour_label(hour_start)}.json"


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_text(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
