"""``antenna-elt simulate``: send simulated antenna traffic to Kafka and write its ledger."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from antenna_elt.argtypes import non_negative, positive_int, share
from antenna_elt.config import Settings
from antenna_elt.errors import UserError

log = logging.getLogger("antenna_elt.simulate")

_DURATION = re.compile(r"^(\d+)([smh]?)$")


def parse_duration(text: str) -> int:
    """``90m``, ``1h``, ``3600s`` or ``3600`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600s, 90m or 1h")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_start(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time like 2026-11-24T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def build_config(args: argparse.Namespace) -> Any:
    from antenna_elt.generator import DEFAULT_COUNT_PER_HOUR, SimConfig
    from antenna_elt.users import load_users

    if args.malformed_share + args.duplicate_share + args.late_share > 1:
        raise UserError(
            "--malformed-share, --duplicate-share and --late-share add up to more than 1"
        )
    now = int(time.time())
    start = args.start if args.start is not None else now - now % 3600
    duration = args.duration
    count = args.count
    if duration is None and count is None:
        duration = 3600
    if count is None:
        count = max(1, duration * DEFAULT_COUNT_PER_HOUR // 3600)
    if duration is None:
        duration = max(1, count * 3600 // DEFAULT_COUNT_PER_HOUR)
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    if not apps:
        raise UserError("--apps needs at least one app name, e.g. SKYPE,WHATSAPP")
    return SimConfig(
        start=start,
        duration=duration,
        count=count,
        seed=args.seed,
        users=load_users(),
        unknown_devices=args.unknown_devices,
        antennas=args.antennas,
        apps=apps,
        malformed_share=args.malformed_share,
        duplicate_share=args.duplicate_share,
        late_share=args.late_share,
        late_max=args.late_max,
        window_seconds=args.window_seconds,
    )


class Pacer:
    """Hold sending back so the simulated clock runs ``speedup`` times real time and at
    most ``rate`` messages a second go out (either may be 0: no limit)."""

    def __init__(self, start: int, speedup: float, rate: float):
        self.start = start
        self.speedup = speedup
        self.rate = rate
        self.began = time.monotonic()

    def wait(self, index: int, sim_time: int) -> None:
        due = 0.0
        if self.speedup > 0:
            due = (sim_time - self.start) / self.speedup
        if self.rate > 0:
            due = max(due, index / self.rate)
        delay = self.began + due - time.monotonic()
        if delay > 0.002:
            time.sleep(delay)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from antenna_elt.generator import Generator

    config = build_config(args)
    topic = args.topic or settings.topic
    ledger_path = Path(
        args.ledger
        or settings.home
        / "ledgers"
        / f"{topic}-seed{config.seed}-{datetime.fromtimestamp(config.start, UTC):%Y%m%dT%H%M}.json"
    )
    generator = Generator(config)
    sink = (
        _Output(args.output)
        if args.output
        else _KafkaOutput(settings.kafka_bootstrap_servers, topic)
    )
    pacer = Pacer(config.start, args.speedup, args.rate)
    progress = _Progress(config.count, enabled=not args.quiet)
    began = time.monotonic()
    try:
        for index, message in enumerate(generator):
            pacer.wait(index, message.sim_time)
            sink.send(message.key, message.value)
            progress.update(index + 1, message.sim_time)
        sink.close()
    finally:
        progress.close()
    elapsed = time.monotonic() - began
    generator.ledger.write(ledger_path)
    c = generator.ledger.counters
    destination = args.output or f"{topic} at {settings.kafka_bootstrap_servers}"
    print(
        f"sent {c['messages_sent']} messages to {destination} ({c['events']} events, "
        f"{c['duplicates']} duplicates, {c['malformed']} malformed, {c['late']} late) in "
        f"{elapsed:.1f} s ({c['messages_sent'] / elapsed if elapsed else 0:.0f}/s); "
        f"{len(generator.ledger.quota_breaches)} user-hours over quota; ledger at {ledger_path}",
        flush=True,
    )
    return 0


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.bar: Any = None
        self.enabled = enabled
        self.last = time.monotonic()
        self.began = self.last
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit="msg", unit_scale=True, desc="simulate", file=sys.stderr
            )
        self.done = 0

    def update(self, done: int, sim_time: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            if done - self.done >= 1000 or done == self.total:
                self.bar.update(done - self.done)
                self.done = done
            return
        now = time.monotonic()
        if now - self.last >= 5 or done == self.total:
            rate = done / (now - self.began) if now > self.began else 0.0
            log.info(
                "sent %d of %d messages (%.0f/s), simulated clock at %s",
                done,
                self.total,
                rate,
                datetime.fromtimestamp(sim_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _KafkaOutput:
    """An idempotent producer (librdkafka through confluent-kafka): retries never duplicate
    or reorder a message, so the ledger stays the exact truth of what is in the topic.
    kafka-python's producer manages about 10k messages/s here, librdkafka over 150k/s."""

    def __init__(self, bootstrap: str, topic: str):
        from confluent_kafka import KafkaException, Producer

        self.topic = topic
        self.failed: list[str] = []
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "message.timeout.ms": 120_000,
                "error_cb": self._on_error,
                # librdkafka prints every failed reconnect to stderr; errors reach error_cb
                "log_level": 0,
            }
        )
        try:
            self.producer.list_topics(timeout=5)
        except KafkaException:
            raise UserError(
                f"cannot reach Kafka at {bootstrap}: start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS"
            ) from None

    def _on_error(self, error: Any) -> None:
        if error.fatal():
            self.failed.append(str(error))

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed.append(str(error))

    def send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, key=key, on_delivery=self._on_delivery
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.05)
        self.producer.poll(0)
        if self.failed:
            raise UserError(f"Kafka refused a message: {self.failed[0]}")

    def close(self) -> None:
        remaining = self.producer.flush(120)
        if remaining or self.failed:
            raise UserError(
                f"{remaining} messages not delivered within 120 s"
                + (f": {self.failed[0]}" if self.failed else "")
            )


class _Output:
    """``--output FILE``: one message value per line (JSON lines), no Kafka."""

    def __init__(self, path: str):
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()

    def send(self, key: bytes, value: bytes) -> None:
        self.file.write(value.replace(b"\n", b"\\n") + b"\n")

    def close(self) -> None:
        self.file.close()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="send simulated antenna traffic to Kafka and write its ground-truth ledger",
        description=(
            "Generate contract events for the seeded users (plus unknown devices) over a "
            "simulated clock and produce them to the events topic. Events are spread evenly over "
            "--duration of simulated time starting at --start. --speedup S makes simulated time "
            "run S times faster than real time (1 h in 10 s: --speedup 360); --rate caps "
            "messages per real second; with neither, messages go out as fast as possible. "
            "The same --seed and settings give the same messages and the same ledger."
        ),
    )
    p.add_argument("--topic", help="topic to produce to (default: ANTENNA_ELT_TOPIC or devices)")
    p.add_argument(
        "--start",
        type=parse_start,
        help="simulated time of the first event, ISO 8601 UTC (default: the current hour)",
    )
    p.add_argument(
        "--duration",
        type=parse_duration,
        help="simulated time the events span: 3600s, 90m, 1h (default: 1h, or derived from --count)",
    )
    p.add_argument(
        "--count", type=positive_int, help="messages to send (default: 36000 per simulated hour)"
    )
    p.add_argument(
        "--speedup",
        type=non_negative,
        default=0.0,
        help="simulated seconds per real second; 0 = no pacing (default: 0)",
    )
    p.add_argument(
        "--rate",
        type=non_negative,
        default=0.0,
        help="at most this many messages per real second; 0 = no cap (default: 0)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument(
        "--unknown-devices",
        type=int,
        default=2,
        help="devices not in user metadata, besides the 20 seeded users (default: 2)",
    )
    p.add_argument(
        "--antennas", type=positive_int, default=5, help="number of antennas (default: 5)"
    )
    p.add_argument(
        "--apps",
        default="FACETIME,SKYPE,FACEBOOK,WHATSAPP",
        help="comma-separated app names (default: FACETIME,SKYPE,FACEBOOK,WHATSAPP)",
    )
    p.add_argument(
        "--malformed-share",
        type=share,
        default=0.0,
        help="share of messages that break the contract, every kind in turn (default: 0)",
    )
    p.add_argument(
        "--duplicate-share",
        type=share,
        default=0.0,
        help="share of events re-sent byte for byte a little later (default: 0)",
    )
    p.add_argument(
        "--late-share",
        type=share,
        default=0.0,
        help="share of events with an event time before the simulated clock (default: 0)",
    )
    p.add_argument(
        "--late-max",
        type=parse_duration,
        default=1800,
        help="how late a late event can be (default: 30m)",
    )
    p.add_argument(
        "--window-seconds",
        type=positive_int,
        default=300,
        help="window of the ledger's per-window totals; match dbt's var (default: 300)",
    )
    p.add_argument(
        "--ledger",
        help="where to write the ledger JSON (default: <ANTENNA_ELT_HOME>/ledgers/<topic>-seed<seed>-<start>.json)",
    )
    p.add_argument("--output", help="write the messages to this file (JSON lines) instead of Kafka")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)
