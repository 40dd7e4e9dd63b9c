"""Deterministic simulated antenna traffic (no Kafka here: see ``sim.producer``).

The same seed and settings give byte-identical messages in the same order and the same
ledger. Traffic has some realism so that every mart has something to show: devices differ
in intensity (a few heavy users), apps differ in size, devices mostly stay on a home
antenna, some devices go silent for a while, and optional shares of the messages are
malformed, duplicated (byte-identical re-sends) or late (an earlier event time).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson

from antenna_elt.contract import BYTES_MAX, MAX_DEPTH
from antenna_elt.sim.ledger import Ledger, iso
from antenna_elt.sim.users import User

APPS: dict[str, int] = {
    # app -> mean bytes per event; calibrated so that a default hour (36 000 events, 20
    # seeded users and 2 unknown devices) puts about a third of the users over quota
    "FACETIME": 260,
    "SKYPE": 180,
    "FACEBOOK": 100,
    "WHATSAPP": 35,
}
DEFAULT_COUNT_PER_HOUR = 36_000
MISSPELT_SHARE = 0.05
_BYTES_CAP = BYTES_MAX // 2
"""Valid events stay far below the contract's bound (the de-duplicating loop in
:meth:`Generator._event` adds a few at most); an exponential draw never gets near it."""


def _valid(rng: random.Random) -> dict[str, object]:
    return {
        "timestamp": 1_764_000_000 + rng.randrange(3600),
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "antenna_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "bytes": rng.randrange(1, 1000),
        "app": rng.choice(list(APPS)),
    }


def _with(**changes: object) -> Callable[[random.Random], bytes]:
    def make(rng: random.Random) -> bytes:
        event = _valid(rng)
        for key, value in changes.items():
            if value is _DROP:
                del event[key]
            else:
                event[key] = value
        return _dumps(event)

    return make


_DROP = object()


class _Deep:
    """Stands for arrays nested deeper than the contract allows (json cannot write them)."""


_DEEP = _Deep()


def _dumps(event: dict[str, object]) -> bytes:
    # the standard library writes integers of any size (bytes over BIGINT) and escapes
    # NUL and lone surrogates; orjson stops at 64 bits and refuses lone surrogates
    deep = [k for k, v in event.items() if v is _DEEP]
    for key in deep:
        event[key] = "@deep@"
    text = json.dumps(event, separators=(",", ":"))
    if deep:
        depth = MAX_DEPTH + 1
        text = text.replace('"@deep@"', "[" * depth + "]" * depth)
    return text.encode()


# Every kind of contract breaker the simulator can send, by the reason the ingestor gives.
MALFORMED_KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "not_json": lambda rng: b'{"timestamp": 17640000, "id": ' + bytes([rng.randrange(65, 90)]),
    "not_object": lambda rng: orjson.dumps([rng.randrange(100), "SKYPE"]),
    "missing_field:timestamp": _with(timestamp=_DROP),
    "missing_field:id": _with(id=_DROP),
    "missing_field:antenna_id": _with(antenna_id=_DROP),
    "missing_field:bytes": _with(bytes=_DROP),
    "missing_field:app": _with(app=_DROP),
    "mistyped_field:timestamp": _with(timestamp="2025-11-24T10:00:00Z"),
    "mistyped_field:id": _with(id=12345),
    "mistyped_field:antenna_id": _with(antenna_id=["a", "b"]),
    "mistyped_field:bytes": _with(bytes="512"),
    "mistyped_field:app": _with(app=7),
    "negative_bytes": _with(bytes=-512),
    "bytes_out_of_range": _with(bytes=2**63),
    "bad_uuid:id": _with(id="device-42"),
    "bad_uuid:antenna_id": _with(antenna_id="00000000-0000-0000-0000-00000000000Z"),
    "timestamp_out_of_range": _with(timestamp=32_503_680_000),  # year 3000
    "empty_app": _with(app=""),
    # more than the allowed skew past any record time before 2096
    "timestamp_in_future": _with(timestamp=4_000_000_000),
    "too_deeply_nested": _with(extra=_DEEP),
    "nul_character:app": _with(app="SKY\x00PE"),
    "lone_surrogate:app": _with(app="SKYPE\ud83d"),  # half of an emoji's surrogate pair
}


@dataclass
class SimConfig:
    start: int
    """Simulated clock at the first event (epoch seconds)."""
    duration: int
    """Simulated seconds the events are spread over."""
    count: int
    """Messages to generate, duplicates and malformed ones included."""
    seed: int = 42
    users: list[User] = field(default_factory=list)
    unknown_devices: int = 2
    antennas: int = 5
    apps: list[str] = field(default_factory=lambda: list(APPS))
    malformed_share: float = 0.0
    duplicate_share: float = 0.0
    late_share: float = 0.0
    late_max: int = 1800
    """Late events are up to this many simulated seconds older than the clock."""
    window_seconds: int = 300


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    sim_time: int
    """The simulated clock when the message is sent (for pacing)."""


@dataclass
class _Device:
    id: str
    weight: float
    home: int
    silent_from: int
    silent_until: int


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Generator:
    """Iterate :class:`Message` s; the ledger is complete once iteration ends."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.ledger = Ledger(window_seconds=config.window_seconds)
        self.rng = random.Random(config.seed)
        rng = self.rng
        self.antennas = [_uuid(rng) for _ in range(config.antennas)]
        ids = [u.id for u in config.users] + [_uuid(rng) for _ in range(config.unknown_devices)]
        self.devices = []
        for device_id in ids:
            # a few heavy users: a long-tailed intensity
            weight = rng.lognormvariate(0.0, 0.8)
            home = rng.randrange(config.antennas)
            if rng.random() < 0.35:  # goes silent for 8 to 20 simulated minutes
                gap = rng.randrange(480, 1200)
                begin = config.start + rng.randrange(max(1, config.duration - gap))
                silent = (begin, begin + gap)
            else:
                silent = (0, 0)
            self.devices.append(_Device(device_id, weight, home, *silent))
        self.weights = [d.weight for d in self.devices]
        self.app_means = [(app, APPS.get(app, 120)) for app in config.apps]
        self.app_weights = [
            4 if app == "WHATSAPP" else 2 if app == "FACEBOOK" else 1 for app in config.apps
        ]
        # identities used per second, to keep distinct events distinct (see DESIGN: dbt
        # de-duplicates on the full event identity)
        self._used: dict[int, set[tuple[str, str, str, int]]] = {}

    def _pick_device(self, now: int) -> _Device:
        for _ in range(20):
            device = self.rng.choices(self.devices, self.weights)[0]
            if not device.silent_from <= now < device.silent_until:
                return device
        return device

    def _event(self, now: int) -> tuple[int, str, str, int, str]:
        rng, config = self.rng, self.config
        timestamp = now
        if config.late_share and rng.random() < config.late_share:
            timestamp = now - rng.randrange(1, config.late_max + 1)
            self.ledger.counters["late"] += 1
        device = self._pick_device(timestamp)
        antenna_index = device.home if rng.random() < 0.8 else rng.randrange(config.antennas)
        antenna = self.antennas[antenna_index]
        app, mean = rng.choices(self.app_means, self.app_weights)[0]
        nbytes = min(int(rng.expovariate(1.0 / mean)), _BYTES_CAP)
        used = self._used.setdefault(timestamp, set())
        while (device.id, antenna, app, nbytes) in used:
            nbytes += 1
        used.add((device.id, antenna, app, nbytes))
        return timestamp, device.id, antenna, nbytes, app

    def _forget_before(self, horizon: int) -> None:
        for second in [s for s in self._used if s < horizon]:
            del self._used[second]

    def __iter__(self) -> Iterator[Message]:
        config, rng, ledger = self.config, self.rng, self.ledger
        counters = ledger.counters
        kinds = list(MALFORMED_KINDS)
        pending: list[tuple[int, Message]] = []  # (send at index, duplicate)
        last_purge = config.start
        for i in range(config.count):
            now = config.start + (i * config.duration) // config.count
            if pending and pending[0][0] <= i:
                _, message = pending.pop(0)
                counters["messages_sent"] += 1
                counters["duplicates"] += 1
                yield Message(message.key, message.value, now)
                continue
            if config.malformed_share and rng.random() < config.malformed_share:
                kind = kinds[counters["malformed"] % len(kinds)]
                counters["malformed"] += 1
                counters["messages_sent"] += 1
                ledger.malformed_by_kind[kind] += 1
                yield Message(b"malformed", MALFORMED_KINDS[kind](rng), now)
                continue
            timestamp, device, antenna, nbytes, app = self._event(now)
            time_key = "timestamp"
            if rng.random() < MISSPELT_SHARE:
                time_key = "timestmap"
                counters["misspelt_timestamp"] += 1
            value = orjson.dumps(
                {
                    time_key: timestamp,
                    "id": device,
                    "antenna_id": antenna,
                    "bytes": nbytes,
                    "app": app,
                }
            )
            message = Message(device.encode(), value, now)
            ledger.add_event(timestamp, device, antenna, nbytes, app)
            counters["messages_sent"] += 1
            yield message
            if config.duplicate_share and rng.random() < config.duplicate_share:
                resend_at = i + rng.randrange(1, 50)
                if resend_at < config.count:  # --count is exact, re-sends included
                    pending.append((resend_at, message))
                    pending.sort(key=lambda p: p[0])
            if now - last_purge > 60:
                self._forget_before(now - config.late_max - 1)
                last_purge = now
        ledger.finish(config.users)
        ledger.settings = {
            "start": iso(config.start),
            "duration": config.duration,
            "count": config.count,
            "seed": config.seed,
            "unknown_devices": config.unknown_devices,
            "antennas": config.antennas,
            "apps": config.apps,
            "malformed_share": config.malformed_share,
            "duplicate_share": config.duplicate_share,
            "late_share": config.late_share,
            "late_max": config.late_max,
            "window_seconds": config.window_seconds,
        }
