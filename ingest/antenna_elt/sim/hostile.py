"""Hostile traffic: what a careless or malicious producer can put on the events topic.

``hostile_messages(seed, count, now)`` gives ``count`` Kafka records (partition, key,
value, headers), the same for the same seed and hour: every kind of contract breaker the
parser knows (and its unusual spellings: NaN, byte order marks, UTF-16, invalid UTF-8,
escaped NULs and lone surrogates, numbers of any length, nesting of any depth), valid
events at the edges of every range (0 and 2**32 - 1 bytes, the first accepted second, a
minute ahead of the clock, unicode apps, the misspelt ``timestmap``, unknown fields full of
the same poison), exact re-sends, null and empty values, binary garbage up to 600 KB and
random mutations of valid events. The differential test sends them through both ingestors
and holds them to the same answer (ingest/tests/integration/test_differential_fuzz.py).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable

from antenna_elt.contract import BYTES_MAX, MAX_DEPTH, TIMESTAMP_MAX, TIMESTAMP_MIN

Message = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""(partition, key, value, headers)"""

PARTITIONS = 3
APPS = ("FACETIME", "SKYPE", "FACEBOOK", "WHATSAPP")
UNICODE_APPS = (
    "WhatsApp 📱", "微信", "Ünïcödé", "עברית", "e\u0301", "a\tb", "new\nline", "back\\slash",
    'quo"te', "\uffff", "\U0010ffff", "\u200b", "\x7f\x01", "\u017f", "\u01c5", "ß" * 300,
)  # fmt: skip


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Raw(str):
    """JSON text to splice in as it is (numbers and nesting json.dumps cannot write)."""


def _dumps(obj: dict[str, object], rng: random.Random, ascii_only: bool | None = None) -> bytes:
    raws: dict[str, str] = {}
    for key, value in list(obj.items()):
        if isinstance(value, _Raw):
            marker = f"@raw{len(raws)}@"
            raws[f'"{marker}"'] = str(value)
            obj[key] = marker
    ensure_ascii = rng.random() < 0.5 if ascii_only is None else ascii_only
    separators = (",", ":") if rng.random() < 0.5 else (", ", ": ")
    text = json.dumps(obj, ensure_ascii=ensure_ascii, separators=separators)
    for marker, raw in raws.items():
        text = text.replace(marker, raw)
    return text.encode("utf-8", "surrogatepass")


class HostileGenerator:
    def __init__(self, seed: int, now: int):
        self.rng = random.Random(seed)
        self.now = now
        self.sent: list[bytes] = []
        self.kinds: list[tuple[float, Callable[[], bytes | None]]] = [
            (30, self.valid),
            (12, self.valid_edge),
            (4, self.resend),
            (2, lambda: None),
            (1, lambda: b""),
            (6, self.garbage),
            (3, self.not_object),
            (5, self.missing),
            (6, self.mistyped),
            (4, self.numbers_out_of_range),
            (3, self.bad_uuid),
            (4, self.timestamps),
            (3, self.bad_app),
            (3, self.unusual_json),
            (1, self.deep),
            (6, self.mutated),
            (0.3, self.huge),
        ]
        self.weights = [w for w, _ in self.kinds]

    # -- valid ------------------------------------------------------------------------------

    def event(self, **changes: object) -> dict[str, object]:
        rng = self.rng
        event: dict[str, object] = {
            "timestamp": self.now - rng.randrange(7 * 86400),
            "id": _uuid(rng),
            "antenna_id": _uuid(rng),
            "bytes": rng.randrange(0, 100_000),
            "app": rng.choice(APPS),
        }
        event.update(changes)
        return {k: v for k, v in event.items() if v is not _DROP}

    def valid(self) -> bytes:
        return _dumps(self.event(), self.rng)

    def valid_edge(self) -> bytes:
        rng = self.rng
        edge = rng.randrange(12)
        if edge == 0:
            event = self.event(bytes=rng.choice((0, BYTES_MAX, BYTES_MAX - 1, 1)))
        elif edge == 1:
            event = self.event(timestamp=rng.choice((TIMESTAMP_MIN, self.now + 60, self.now)))
        elif edge == 2:
            event = self.event(app=rng.choice(UNICODE_APPS))
        elif edge == 3:  # the misspelt key real producers send, alone or beside the right one
            event = self.event()
            event["timestmap"] = event.pop("timestamp") if rng.random() < 0.7 else 1
        elif edge == 4:
            event = self.event(id=_uuid(rng).upper(), antenna_id=_uuid(rng).upper())
        elif edge == 5:  # unknown fields, the poison in them is ignored
            event = self.event(
                extra=rng.choice(("a\x00b", "\ud800", [1, {"x": None}], {"nested": [True]}, 1e308)),
                note=rng.choice(("", None, "x" * 1000)),
            )
        elif edge == 6:
            event = self.event(extra=_Raw("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)))
        elif edge == 7:  # the slower parser on a valid event: a lone surrogate elsewhere
            event = self.event(note="\udc80")
        elif edge == 8:  # duplicate keys: the last one counts, in both parsers
            text = _dumps(self.event(), rng, ascii_only=True)
            return text[:-1] + b', "bytes": 7}'
        elif edge == 9:
            return b" \n\t" + self.valid() + b"\r\n "
        elif edge == 10:  # fields in another order
            items = list(self.event().items())
            rng.shuffle(items)
            event = dict(items)
        else:
            event = self.event(app=rng.choice(APPS) * rng.randrange(1, 2000))
        return _dumps(event, rng)

    def resend(self) -> bytes | None:
        return self.rng.choice(self.sent) if self.sent else self.valid()

    # -- breakers ---------------------------------------------------------------------------

    def garbage(self) -> bytes:
        rng = self.rng
        size = rng.choice((1, 2, 5, 50, 500, 5000))
        return bytes(rng.getrandbits(8) for _ in range(size))

    def not_object(self) -> bytes:
        return self.rng.choice(
            (b"[]", b"[1,2,3]", b'"text"', b"42", b"-1.5e3", b"null", b"true", b"false",
             b'[{"timestamp": 1}]', b'"{\\"a\\": 1}"')
        )  # fmt: skip

    def missing(self) -> bytes:
        field = self.rng.choice(("timestamp", "id", "antenna_id", "bytes", "app"))
        return _dumps(self.event(**{field: self.rng.choice((_DROP, None))}), self.rng)

    def mistyped(self) -> bytes:
        rng = self.rng
        field = rng.choice(("timestamp", "id", "antenna_id", "bytes", "app"))
        value = rng.choice(
            ("1764000000", 1.5, True, False, [], {}, ["x"], {"a": 1}, 12, "", 0.0, 1e3)
        )
        return _dumps(self.event(**{field: value}), rng)

    def numbers_out_of_range(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(7)
        if choice == 0:
            return _dumps(self.event(bytes=rng.choice((BYTES_MAX + 1, 2**63, 2**64 + 1))), rng)
        if choice == 1:
            return _dumps(self.event(bytes=-rng.randrange(1, 2**40)), rng)
        if choice == 2:
            digits = "9" * rng.randrange(20, 6000)
            return _dumps(self.event(bytes=_Raw(rng.choice(("", "-")) + digits)), rng)
        if choice == 3:
            return _dumps(self.event(bytes=_Raw(rng.choice(("1e400", "-1e400", "1e19")))), rng)
        if choice == 4:
            return _dumps(self.event(timestamp=_Raw("7" * rng.randrange(20, 6000))), rng)
        if choice == 5:
            return _dumps(self.event(timestamp=_Raw(rng.choice(("1e400", "-1e400")))), rng)
        return _dumps(self.event(bytes=2**63 - 1), rng)

    def bad_uuid(self) -> bytes:
        rng = self.rng
        bad = rng.choice(
            ("", "not-a-uuid", _uuid(rng).replace("-", ""), _uuid(rng)[:-1] + "g",
             _uuid(rng)[:-1] + "\x00", "{" + _uuid(rng) + "}", " " + _uuid(rng), _uuid(rng) + "\n")
        )  # fmt: skip
        return _dumps(self.event(**{rng.choice(("id", "antenna_id")): bad}), rng)

    def timestamps(self) -> bytes:
        rng = self.rng
        ts = rng.choice(
            (-1, 0, TIMESTAMP_MIN - 1, TIMESTAMP_MAX, TIMESTAMP_MAX - 1, 2**70, 32_503_680_000,
             4_000_000_000, self.now + 7200, self.now + 86_400)
        )  # fmt: skip
        return _dumps(self.event(timestamp=ts), rng)

    def bad_app(self) -> bytes:
        rng = self.rng
        app = rng.choice(("", " ", "\t\n", "\u3000", "\x00", "SKY\x00PE", "\ud800", "a\udfffb"))
        return _dumps(self.event(app=app), rng)

    def unusual_json(self) -> bytes:
        rng = self.rng
        valid = _dumps(self.event(), rng, ascii_only=True)
        choice = rng.randrange(8)
        if choice == 0:
            return _dumps(self.event(bytes=_Raw(rng.choice(("NaN", "Infinity", "-Infinity")))), rng)
        if choice == 1:
            return b"\xef\xbb\xbf" + valid
        if choice == 2:
            return valid.decode().encode(rng.choice(("utf-16", "utf-16-le", "utf-32")))
        if choice == 3:  # a surrogate encoded in UTF-8 (invalid UTF-8)
            return valid.replace(b'"app":', b'"x": "\xed\xa0\x80", "app":').replace(
                b'"app": ', b'"x": "\xed\xa0\x80", "app": '
            )
        if choice == 4:  # an overlong encoding of "/"
            return valid[:-1] + b', "x": "\xc0\xaf"}'
        if choice == 5:
            return valid + b"garbage"
        if choice == 6:
            return valid[: rng.randrange(1, len(valid))]
        return valid.replace(b"{", b"{/* comment */", 1)

    def deep(self) -> bytes:
        depth = self.rng.choice((MAX_DEPTH + 1, 5000, 20_000))
        if self.rng.random() < 0.5:
            return b"[" * depth + b"]" * depth
        return _dumps(self.event(extra=_Raw("[" * depth + "]" * depth)), self.rng)

    def mutated(self) -> bytes:
        rng = self.rng
        data = bytearray(self.valid())
        for _ in range(rng.randrange(1, 4)):
            where = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[where] = rng.getrandbits(8)
            elif action == 1:
                del data[where]
            else:
                data.insert(where, rng.choice(b'"{}[],:\\0123456789eE-+ \x00'))
        return bytes(data)

    def huge(self) -> bytes:
        rng = self.rng
        size = rng.randrange(100_000, 600_000)
        if rng.random() < 0.5:
            return bytes(rng.getrandbits(8) for _ in range(size // 50)) * 50
        return _dumps(self.event(app="A" * size), rng)

    # -- the stream -------------------------------------------------------------------------

    def message(self) -> Message:
        rng = self.rng
        make = rng.choices(self.kinds, self.weights)[0][1]
        value = make()
        if value is not None and len(self.sent) < 10_000:
            self.sent.append(value)
        key = rng.choice(
            (None, b"", _uuid(rng).encode(), bytes(rng.getrandbits(8) for _ in range(8)))
        )
        headers = [] if rng.random() < 0.9 else [("h", bytes([rng.getrandbits(8)]) * 3)]
        return rng.randrange(PARTITIONS), key, value, headers


_DROP = object()


def hostile_messages(seed: int, count: int, now: int) -> list[Message]:
    """``count`` hostile records; the same for the same ``seed`` and ``now`` (pass the
    current hour's start: a few event times are set around it)."""
    generator = HostileGenerator(seed, now)
    return [generator.message() for _ in range(count)]
