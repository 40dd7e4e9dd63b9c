"""The Parquet lake: where things live in it, and the few storage operations we need.

Layout under ``<lake>`` (a local path, ``file://``, ``s3://`` or ``gs://`` URI)::

    device_usage/year=YYYY/month=MM/day=DD/hour=HH/<topic>+<partition>+<first>+<last>.parquet
    device_usage_rejects/year=YYYY/month=MM/day=DD/hour=HH/<same naming>.parquet   (by ingest time)
    _ingest/<group>/<topic>/<partition>/commits/<first offset>.json    commit records
    _ingest/<group>/<topic>/<partition>/tmp/...                         files not yet committed
    _manifests/open_hours/device_usage/<YYYY-MM-DDTHH>.json             hours being written
    _manifests/closed_hours/device_usage/<YYYY-MM-DDTHH>.json           complete hours

Only finished files ever carry the ``.parquet`` suffix in the data folders, so a reader
globbing ``device_usage/*/*/*/*/*.parquet`` never sees a partial or uncommitted file.

Local paths use the operating system directly (atomic ``rename``, ``link`` for exclusive
creation, ``fsync``); other URIs go through fsspec (s3fs, gcsfs), where a PUT is atomic
per object and ``If-None-Match: *`` gives exclusive creation. The S3 endpoint comes from
``ANTENNA_ELT_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL`` (MinIO, moto, Ceph, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from antenna_elt.errors import UserError

EVENTS_TABLE = "device_usage"
REJECTS_TABLE = "device_usage_rejects"
OPEN_HOURS = f"_manifests/open_hours/{EVENTS_TABLE}"
CLOSED_HOURS = f"_manifests/closed_hours/{EVENTS_TABLE}"
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


# -- storage ----------------------------------------------------------------------------


def s3_endpoint(env: dict[str, str] | None = None) -> str | None:
    env = dict(os.environ if env is None else env)
    return env.get("ANTENNA_ELT_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None


@dataclass(frozen=True)
class LakeLocation:
    """A parsed lake URI: picklable, so a sink factory can carry it to the writer process."""

    uri: str
    scheme: str
    root: str
    """Local: an absolute directory; otherwise ``bucket/prefix`` without a trailing slash."""

    @classmethod
    def parse(cls, uri: str) -> LakeLocation:
        text = uri.strip()
        if not text:
            raise UserError("the lake location is empty; pass --lake or set ANTENNA_ELT_LAKE")
        parsed = urlparse(text)
        scheme = parsed.scheme.lower()
        if scheme in ("", "file") or (len(scheme) == 1 and text[1:3] in (":\\", ":/")):
            path = Path(parsed.path if scheme == "file" else text).expanduser().resolve()
            return cls(uri=path.as_uri(), scheme="file", root=str(path))
        if scheme in ("s3", "s3a", "gs", "gcs"):
            if not parsed.netloc:
                raise UserError(f"lake URI {uri!r} has no bucket; use e.g. {scheme}://bucket/lake")
            root = f"{parsed.netloc}{parsed.path}".rstrip("/")
            canonical = {"s3a": "s3", "gcs": "gs"}.get(scheme, scheme)
            return cls(uri=f"{canonical}://{root}", scheme=canonical, root=root)
        raise UserError(f"lake URI {uri!r} is not supported; use a path, file://, s3:// or gs://")

    def url(self, rel: str) -> str:
        """Full URI of a lake-relative path (for readers: DuckDB, BigQuery)."""
        return f"{self.uri.rstrip('/')}/{rel}"


class Lake:
    """Storage operations on lake-relative paths (``device_usage/year=.../x.parquet``)."""

    def __init__(self, location: LakeLocation):
        self.location = location
        self.local = location.scheme == "file"
        self._fs: Any = None

    # -- remote filesystems ---------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = _remote_fs(self.location.scheme)
        return self._fs

    def _abs(self, rel: str) -> str:
        return f"{self.location.root}/{rel}" if rel else self.location.root

    # -- operations -----------------------------------------------------------------------

    def write(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` with ``data`` atomically (readers see the old or the new)."""
        path = self._abs(rel)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
        _write_local(tmp, data)
        os.replace(tmp, path)

    def create(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` holding ``data`` unless it exists; False if it already did."""
        path = self._abs(rel)
        if not self.local:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            except OSError as exc:  # s3fs maps 412 Precondition Failed to a plain OSError
                if "Precondition" in str(exc) or "412" in str(exc):
                    return False
                raise
            return True
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
        _write_local(tmp, data)
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _fsync_dir(os.path.dirname(path))
        return True

    def read(self, rel: str) -> bytes | None:
        path = self._abs(rel)
        try:
            if self.local:
                return Path(path).read_bytes()
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def read_json(self, rel: str) -> dict[str, Any] | None:
        data = self.read(rel)
        return None if data is None else dict(json.loads(data))

    def write_json(self, rel: str, obj: dict[str, Any]) -> None:
        self.write(rel, json.dumps(obj, indent=1, sort_keys=True).encode())

    def list(self, rel_dir: str) -> list[str]:
        """Names (not paths) directly inside ``rel_dir``, sorted; [] if it does not exist."""
        path = self._abs(rel_dir)
        if self.local:
            try:
                return sorted(os.listdir(path))
            except FileNotFoundError:
                return []
        try:
            self.fs.invalidate_cache(path)
            entries = self.fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def size(self, rel: str) -> int:
        path = self._abs(rel)
        return os.path.getsize(path) if self.local else int(self.fs.size(path))

    def exists(self, rel: str) -> bool:
        path = self._abs(rel)
        return os.path.exists(path) if self.local else bool(self.fs.exists(path))

    def move(self, src: str, dst: str) -> None:
        """Give a finished file its final name. Local: one atomic rename. Object stores:
        copy then delete; the final object appears whole, never partly written."""
        s, d = self._abs(src), self._abs(dst)
        if self.local:
            os.makedirs(os.path.dirname(d), exist_ok=True)
            os.replace(s, d)
            return
        self.fs.copy(s, d)
        self.fs.rm_file(s)

    def delete(self, rel: str) -> None:
        path = self._abs(rel)
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                os.unlink(path)
            else:
                self.fs.rm_file(path)

    def ensure_dir(self, rel: str) -> None:
        if self.local:
            os.makedirs(self._abs(rel), exist_ok=True)

    def open_input(self, rel: str) -> Any:
        return open(self._abs(rel), "rb") if self.local else self.fs.open(self._abs(rel), "rb")

    def write_file(self, rel: str, data: bytes) -> None:
        """Write a new file (temporary names: nobody reads them before the commit)."""
        path = self._abs(rel)
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_local(path, data)
        else:
            self.fs.pipe_file(path, data)


def _write_local(path: str, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remote_fs(scheme: str) -> Any:
    import fsspec

    if scheme == "s3":
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        endpoint = s3_endpoint()
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return fsspec.filesystem("s3", **options)
    if scheme == "gs":
        try:
            return fsspec.filesystem("gs", skip_instance_cache=True)
        except (ImportError, ValueError):
            raise UserError(
                "gs:// lakes need gcsfs: pip install gcsfs into the virtualenv "
                "(.venv/bin/pip install gcsfs)"
            ) from None
    raise UserError(f"no filesystem for {scheme}://")


def is_unavailable(exc: BaseException) -> bool:
    """A storage error worth retrying (network, throttling, a full disk being cleaned)."""
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return False
    if isinstance(exc, OSError):
        return True
    module = type(exc).__module__
    return module.startswith(("botocore", "aiobotocore", "aiohttp", "google", "urllib3"))
