"""The per-partition commit log of the lake sink: create, roll forward, prune, recover.

A commit record ``_ingest/<group>/<topic>/<partition>/commits/<first offset>.json``,
created exclusively, is the commit point of one batch of one partition: it lists the
batch's files (temporary and final names) and the partition's next offset. Rolling a
record forward gives every file its final name (idempotent); recovering a partition rolls
its newest record forward and deletes every uncommitted temporary file.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

from antenna_elt.sinks.lake import layout as L
from antenna_elt.sinks.lake.storage import Lake

log = logging.getLogger("antenna_elt.ingest.lake")

KEEP_COMMITS = 20
"""Commit records kept a partition (older ones are deleted; only the newest is read)."""

Record = dict[str, Any]


class CommitLog:
    def __init__(self, lake: Lake, group: str):
        self.lake = lake
        self.group = group

    def _commits(self, topic: str, partition: int) -> str:
        return f"{L.ingest_dir(self.group, topic, partition)}/commits"

    def tmp_dir(self, topic: str, partition: int) -> str:
        """Where a batch's files wait for their commit."""
        return f"{L.ingest_dir(self.group, topic, partition)}/tmp"

    def partitions(self, topic: str) -> list[int]:
        """Partitions of ``topic`` that have a commit folder."""
        names = self.lake.list(f"_ingest/{self.group}/{topic}")
        return [int(name) for name in names if name.isdigit()]

    def head(self, topic: str, partition: int) -> tuple[Record | None, list[str]]:
        """The newest commit record of a partition, and the names of all kept records."""
        commits = self._commits(topic, partition)
        names = [n for n in self.lake.list(commits) if n.endswith(".json")]
        if not names:
            return None, names
        return self.lake.read_json(f"{commits}/{names[-1]}"), names

    def create(self, record: Record) -> bool:
        """Commit: create the record unless one exists for its first offset (then False:
        another writer committed first)."""
        commits = self._commits(record["topic"], record["partition"])
        self.lake.ensure_dir(commits)
        path = f"{commits}/{record['first_offset']:020d}.json"
        return self.lake.create(path, json.dumps(record, indent=1).encode())

    def roll_forward(self, record: Record) -> dict[int, set[str]]:
        """Give every file of a commit its final name (idempotent); returns the event
        files by hour."""
        event_hours: dict[int, set[str]] = defaultdict(set)
        for f in record["files"]:
            try:
                self.lake.move(f["tmp"], f["path"])
            except FileNotFoundError:
                if not self.lake.exists(f["path"]):
                    raise RuntimeError(
                        f"commit of partition {record['partition']} at offset "
                        f"{record['first_offset']} lists {f['path']}, which is missing "
                        "(was the lake edited by hand?)"
                    ) from None
            if f["table"] == L.EVENTS_TABLE:
                event_hours[int(f["hour"])].add(f["path"])
        return event_hours

    def prune(self, topic: str, partition: int, older: list[str]) -> None:
        """After a new commit: delete the oldest records beyond :data:`KEEP_COMMITS`."""
        for name in older[: max(0, len(older) + 1 - KEEP_COMMITS)]:
            self.lake.delete(f"{self._commits(topic, partition)}/{name}")

    def delete_uncommitted(self, topic: str, partition: int) -> None:
        tmp_dir = self.tmp_dir(topic, partition)
        for name in self.lake.list(tmp_dir):
            log.info("deleting uncommitted file %s/%s", tmp_dir, name)
            self.lake.delete(f"{tmp_dir}/{name}")

    def recover(self, topic: str, partition: int) -> tuple[Record | None, dict[int, set[str]]]:
        """After a crash or on assignment: roll the newest commit forward and delete the
        uncommitted files. Returns that commit (None: never committed) and its event
        files by hour."""
        head, _ = self.head(topic, partition)
        event_hours = self.roll_forward(head) if head is not None else {}
        self.delete_uncommitted(topic, partition)
        return head, event_hours
