"""What the runner watches between builds: closed lake hours and ingest lag."""

from __future__ import annotations

import logging
from typing import Any

from antenna_elt.sinks.lake import layout
from antenna_elt.sinks.lake.storage import Lake, LakeLocation

log = logging.getLogger("antenna_elt.run")


class ClosedHours:
    """The lake's closed-hour manifests, and which of them changed since the last look
    (a new hour, or a new version when late events added a file)."""

    def __init__(self, lake_uri: str, s3_endpoint: str | None = None):
        self.lake = Lake(LakeLocation.parse(lake_uri), s3_endpoint)
        self.seen: dict[str, int] = {}

    def changed(self) -> list[int]:
        """Hour starts (epoch seconds) of the manifests new or rewritten since the last call."""
        hours = []
        for name in self.lake.list(layout.CLOSED_HOURS):
            if not name.endswith(".json"):
                continue
            manifest = self.lake.read_json(f"{layout.CLOSED_HOURS}/{name}") or {}
            version = int(manifest.get("version", 0))
            if self.seen.get(name) != version:
                self.seen[name] = version
                hours.append(layout.parse_hour(name.removesuffix(".json")))
        return sorted(hours)


class Lag:
    """Consumer lag per partition of the ingestors' groups, from Kafka (the ingestors
    mirror the offsets they stored to their group after each write)."""

    def __init__(self, bootstrap_servers: str, topic: str, groups: dict[str, str]):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.groups = groups
        self._admin: Any = None
        self._consumer: Any = None

    def text(self) -> str:
        try:
            return self._text()
        except Exception as exc:  # Kafka down or the topic missing: say so, carry on
            self.close()
            return f"lag unknown ({type(exc).__name__})"

    def _text(self) -> str:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers)
        partitions = sorted(self._consumer.partitions_for_topic(self.topic) or [])
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = self._consumer.end_offsets(tps) if tps else {}
        parts = []
        for name, group in self.groups.items():
            committed = self._admin.list_group_offsets(group).get(group, {})
            lags = []
            for tp in tps:
                stored = committed.get(tp)
                position = stored.offset if stored is not None and stored.offset >= 0 else 0
                lags.append(f"p{tp.partition}={max(0, ends.get(tp, 0) - position)}")
            parts.append(f"{name} {' '.join(lags) or '-'}")
        return "lag " + ", ".join(parts)

    def committed_text(self, name: str) -> str | None:
        """The offsets a group has stored, as text (None when Kafka cannot tell): the
        runner builds again only when they moved."""
        try:
            if self._admin is None:
                self._text()
            group = self.groups[name]
            committed = self._admin.list_group_offsets(group).get(group, {})
        except Exception:
            self.close()
            return None
        return ",".join(f"{tp.partition}:{om.offset}" for tp, om in sorted(committed.items()))

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # closing a broken client: nothing to keep
                    log.debug("closing a Kafka client: %s", exc)
        self._admin = self._consumer = None
