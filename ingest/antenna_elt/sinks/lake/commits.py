"""The per-partition commit log of the lake sink: a chain of commit records, fenced on
every assignment, so that any number of writers (a second instance in the group, a
zombie that lost its partitions but finishes its batch) commit every offset once and
never delete or overwrite each other's files.

The chain. Record number ``n`` of a partition is
``_ingest/<group>/<topic>/<partition>/commits/c<n:020d>.json``, created exclusively (the
commit point). It names the record it builds on (``prev``) and lists its batch's files
(temporary and final names) and the partition's next offset. A writer reads the newest
record (the head, number ``n``), checks that its batch starts at or after the head's next
offset, gives the head's files their final names if nobody has yet (roll forward), writes
its files under temporary names that carry the number it will commit as, ``n + 1``, and
creates record ``n + 1``. Two writers that read the same head race for the same name: one
wins, the other's batch is stale (nothing of it is visible; it deletes its files and
re-reads). So offsets only grow along the chain, and a record's files are renamed before
any record builds on it.

The fence. On assignment a writer rolls the head forward and appends an empty record (no
files, the same next offset): any writer still holding an older head (a zombie) now loses
its race, whatever it does next. Temporary files numbered at or below the fence can then
never be committed (their number is taken, and every record up to the fence has been
rolled forward), so they are deleted; files numbered above it belong to writers that
already read the fence, and are left alone.

Pruning keeps the newest :data:`KEEP_COMMITS` records. A writer stalled so long that the
number it targets was pruned would win a race nobody else runs: after creating a record,
the writer checks that the next record, if there is one, builds on its own; otherwise its
record is a fork beside the chain, never a head, and it takes it back.

Lakes written before the chain (records named by their first offset, format 1) are read:
their newest record is the head the chain continues from.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from typing import Any

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.manifests import was_replaced
from antenna_elt.sinks.lake.storage import Lake

log = logging.getLogger("antenna_elt.ingest.lake")

KEEP_COMMITS = 20
"""Commit records kept a partition (older ones are deleted; only the newest is read)."""
FENCE_ATTEMPTS = 100

Record = dict[str, Any]


def _chain_number(name: str) -> int | None:
    """The number of a chain record's file name (``c00...07.json``), else None."""
    if len(name) == 26 and name.startswith("c") and name.endswith(".json"):
        digits = name[1:21]
        if digits.isdigit():
            return int(digits)
    return None


def _partial_number(name: str) -> int | None:
    """The number of a record a writer was creating when it died (``c<n>.json.<token>
    .partial``: the storage writes a record there, then links it to its name)."""
    if name.endswith(".partial"):
        return _chain_number(name[:26])
    return None


def _tmp_number(name: str) -> int | None:
    """The record number a temporary file was written for (``<n:020d>-<writer>-...``)."""
    digits = name[:20]
    if len(name) > 21 and name[20] == "-" and digits.isdigit():
        return int(digits)
    return None


class CommitLog:
    def __init__(self, lake: Lake, group: str, writer: str | None = None):
        self.lake = lake
        self.group = group
        self.writer = writer or uuid.uuid4().hex[:12]
        """This writer's id, in its records and temporary file names."""
        self._rolled: dict[tuple[str, int], str] = {}
        """(topic, partition) -> id of the newest record this writer rolled forward."""

    def _commits(self, topic: str, partition: int) -> str:
        return f"{L.ingest_dir(self.group, topic, partition)}/commits"

    def tmp_dir(self, topic: str, partition: int) -> str:
        """Where a batch's files wait for their commit."""
        return f"{L.ingest_dir(self.group, topic, partition)}/tmp"

    def tmp_name(self, topic: str, partition: int, number: int, n: int) -> str:
        """Temporary name of file ``n`` of a batch to be committed as record ``number``."""
        return f"{self.tmp_dir(topic, partition)}/{number:020d}-{self.writer}-{n:04d}.tmp"

    def partitions(self, topic: str) -> list[int]:
        """Partitions of ``topic`` that have a commit folder."""
        names = self.lake.list(f"_ingest/{self.group}/{topic}")
        return [int(name) for name in names if name.isdigit()]

    # -- reading the chain ------------------------------------------------------------------

    def head(self, topic: str, partition: int) -> tuple[Record | None, list[str]]:
        """The newest commit record of a partition, and the names of all kept records."""
        commits = self._commits(topic, partition)
        names = [n for n in self.lake.list(commits) if n.endswith(".json")]
        chain = [n for n in names if _chain_number(n) is not None]
        newest = chain[-1] if chain else (names[-1] if names else None)
        if newest is None:
            return None, names
        record = self.lake.read_json(f"{commits}/{newest}")
        if record is None:  # pruned between listing and reading: look again
            return self.head(topic, partition)
        if _chain_number(newest) is None:  # format 1: the chain continues from it
            record.setdefault("number", 0)
            record.setdefault("id", f"format1:{newest}")
        return record, names

    @staticmethod
    def next_number(head: Record | None) -> int:
        return 1 if head is None else int(head["number"]) + 1

    def chain_fields(self, head: Record | None) -> Record:
        """The fields that put a new record after ``head``."""
        return {
            "format": 2,
            "number": self.next_number(head),
            "id": uuid.uuid4().hex,
            "prev": None if head is None else head["id"],
            "writer": self.writer,
        }

    # -- committing -------------------------------------------------------------------------

    def commit(self, record: Record) -> bool:
        """Create ``record`` (the commit point). False: it is not in the chain, because
        another writer created that number first, or because it came too late (its number
        had been pruned, see the module's text) and was taken back. Either way none of its
        files is ever renamed: the caller deletes them and re-reads."""
        topic, partition, number = record["topic"], record["partition"], record["number"]
        commits = self._commits(topic, partition)
        self.lake.ensure_dir(commits)
        path = f"{commits}/c{number:020d}.json"
        if not self.lake.create(path, json.dumps(record, indent=1).encode()):
            return False
        newer = [n for n in self.lake.list(commits) if (_chain_number(n) or 0) > number]
        if newer:
            successor = self.lake.read_json(f"{commits}/{newer[0]}")
            if successor is None or successor.get("prev") != record["id"]:
                log.warning(
                    "partition %d: commit %d came after the chain moved on (a stalled "
                    "writer); taking it back",
                    partition,
                    number,
                )
                self.lake.delete(path)
                return False
        return True

    def roll_forward(self, record: Record) -> dict[int, set[str]]:
        """Give every file of a commit its final name (idempotent); returns the event
        files by hour. A file compaction replaced (and perhaps deleted after its grace
        period) counts as done."""
        event_hours: dict[int, set[str]] = defaultdict(set)
        for f in record["files"]:
            try:
                self.lake.move(f["tmp"], f["path"])
            except FileNotFoundError:
                if not self.lake.exists(f["path"]) and not (
                    f["table"] == L.EVENTS_TABLE
                    and was_replaced(self.lake, int(f["hour"]), f["path"])
                ):
                    raise RuntimeError(
                        f"commit of partition {record['partition']} at offset "
                        f"{record['first_offset']} lists {f['path']}, which is missing "
                        "(was the lake edited by hand?)"
                    ) from None
            if f["table"] == L.EVENTS_TABLE:
                event_hours[int(f["hour"])].add(f["path"])
        self._rolled[(record["topic"], int(record["partition"]))] = str(record.get("id"))
        return event_hours

    def rolled_forward(self, record: Record) -> bool:
        """Whether this writer already rolled ``record`` forward."""
        return self._rolled.get((record["topic"], int(record["partition"]))) == record.get("id")

    def prune(self, topic: str, partition: int, older: list[str]) -> None:
        """After a new commit: delete the oldest records beyond :data:`KEEP_COMMITS`."""
        for name in older[: max(0, len(older) + 1 - KEEP_COMMITS)]:
            self.lake.delete(f"{self._commits(topic, partition)}/{name}")

    # -- on assignment ----------------------------------------------------------------------

    def recover(
        self, topic: str, partition: int
    ) -> tuple[Record, Record | None, dict[int, set[str]]]:
        """On assignment (and after a stale batch): roll the head forward, fence the
        partition, delete the temporary files nobody can commit any more. Returns the
        fence (its ``next_offset`` is None if the partition was never written), the head
        it was built on (None: none) and that head's event files by hour."""
        for _ in range(FENCE_ATTEMPTS):
            head, names = self.head(topic, partition)
            event_hours = self.roll_forward(head) if head is not None else {}
            fence: Record = {
                **self.chain_fields(head),
                "fence": True,
                "group": self.group,
                "topic": topic,
                "partition": partition,
                "first_offset": None if head is None else head["next_offset"],
                "next_offset": None if head is None else head["next_offset"],
                "events": 0,
                "rejects": 0,
                # the data's marks, not the fence's: an idle partition stays idle for the
                # hour closer's watermark
                "max_event_time": None if head is None else head.get("max_event_time"),
                "committed_at": None if head is None else head.get("committed_at"),
                "committed_epoch": 0.0 if head is None else head.get("committed_epoch", 0.0),
                "fenced_at": L.utc_now_text(),
                "files": [],
            }
            if self.commit(fence):
                self._rolled[(topic, partition)] = fence["id"]
                self.prune(topic, partition, names)
                self.delete_uncommitted(topic, partition, int(fence["number"]))
                return fence, head, event_hours
        raise RuntimeError(
            f"could not fence partition {partition} of {topic} in {FENCE_ATTEMPTS} attempts: "
            "other writers keep committing to it; is the consumer group rebalancing in a loop?"
        )

    def delete_uncommitted(self, topic: str, partition: int, fence: int) -> None:
        """Delete the temporary files written for a record number at or below ``fence``
        (and any of a format the chain does not know), and the half-created records of
        those numbers that a writer killed while creating one left behind (their number
        is taken: they can never become a record)."""
        tmp_dir = self.tmp_dir(topic, partition)
        for name in self.lake.list(tmp_dir):
            number = _tmp_number(name)
            if number is None or number <= fence:
                log.info("deleting uncommitted file %s/%s", tmp_dir, name)
                self.lake.delete(f"{tmp_dir}/{name}")
        commits = self._commits(topic, partition)
        for name in self.lake.list(commits):
            number = _partial_number(name)
            if number is not None and number <= fence:
                log.info("deleting half-created record %s/%s", commits, name)
                self.lake.delete(f"{commits}/{name}")
