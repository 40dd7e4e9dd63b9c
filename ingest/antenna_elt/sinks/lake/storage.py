"""The few storage operations the lake needs, on lake-relative paths.

Local paths use the operating system directly (atomic ``rename``, ``link`` for exclusive
creation, ``fsync``); other URIs go through fsspec (s3fs, gcsfs), where a PUT is atomic
per object and ``If-None-Match: *`` gives exclusive creation. The S3 endpoint comes from
the settings (``ANTENNA_ELT_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``: MinIO, moto, Ceph, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from antenna_elt.errors import UserError

# -- storage ----------------------------------------------------------------------------

PARTIAL_GRACE_SECONDS = 3600.0
"""A half-written replacement (:meth:`Lake.write`) whose writer may still be alive is left
alone for this long."""
_REPLACING = re.compile(r"\.w(\d+)-[0-9a-f]{8}\.partial$")
"""The temporary name :meth:`Lake.write` writes a replacement under: ``<name>.w<pid>-<token>.partial``."""


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


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

    def __init__(self, location: LakeLocation, s3_endpoint: str | None = None):
        self.location = location
        self.s3_endpoint = s3_endpoint
        self.local = location.scheme == "file"
        self._fs: Any = None

    # -- remote filesystems ---------------------------------------------------------------

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = _remote_fs(self.location.scheme, self.s3_endpoint)
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
        tmp = f"{path}.w{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
        _write_local(tmp, data)
        os.replace(tmp, path)
        self.sweep_partials(rel.rsplit("/", 1)[0] if "/" in rel else "")

    def sweep_partials(self, rel_dir: str) -> list[str]:
        """Delete what :meth:`write` left in ``rel_dir`` when its writer was killed between
        writing the temporary file and renaming it (kill -9, power loss): a
        ``.w<pid>-<token>.partial`` whose process is gone, or older than
        :data:`PARTIAL_GRACE_SECONDS`. Readers never read such names; this keeps them from
        piling up. Object stores write whole objects: nothing to sweep. Returns the names
        deleted."""
        if not self.local:
            return []
        deleted = []
        now = time.time()
        for name in self.list(rel_dir):
            match = _REPLACING.search(name)
            if match is None or int(match.group(1)) == os.getpid():
                continue
            path = self._abs(f"{rel_dir}/{name}" if rel_dir else name)
            try:
                age = now - os.path.getmtime(path)
            except FileNotFoundError:
                continue
            if _process_gone(int(match.group(1))) or age > PARTIAL_GRACE_SECONDS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    deleted.append(name)
        return deleted

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
        except FileNotFoundError:
            # a writer that fenced this number deleted our half-created file: the number
            # is taken, so this record was not created
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
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

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        """A local file to write ``rel`` into; when the block ends without an error it
        becomes ``rel`` whole (local: fsync and one atomic rename; object stores: one
        upload), else it is deleted."""
        if self.local:
            path = self._abs(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
            try:
                yield tmp
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                _fsync_dir(os.path.dirname(path))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return
        with tempfile.TemporaryDirectory(prefix="antenna-elt-") as folder:
            tmp = os.path.join(folder, "file")
            yield tmp
            self.fs.put_file(tmp, self._abs(rel))

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


def _remote_fs(scheme: str, s3_endpoint: str | None) -> Any:
    import fsspec

    if scheme == "s3":
        options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
        if s3_endpoint:
            options["client_kwargs"] = {"endpoint_url": s3_endpoint}
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
