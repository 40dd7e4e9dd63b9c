"""``antenna-elt simulate``: send simulated antenna traffic to Kafka and write its ledger."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.settings import Settings
from antenna_elt.sim.generator import DEFAULT_COUNT_PER_HOUR, Generator, SimConfig

log = logging.getLogger("antenna_elt.simulate")


@dataclass(frozen=True)
class SimulateRequest:
    """What ``antenna-elt simulate`` was asked for (see its --help)."""

    topic: str | None = None
    start: int | None = None
    duration: int | None = None
    count: int | None = None
    speedup: float = 0.0
    rate: float = 0.0
    seed: int = 42
    unknown_devices: int = 2
    antennas: int = 5
    apps: str = "FACETIME,SKYPE,FACEBOOK,WHATSAPP"
    malformed_share: float = 0.0
    duplicate_share: float = 0.0
    late_share: float = 0.0
    late_max: int = 1800
    window_seconds: int = 300
    ledger: str | None = None
    output: str | None = None
    quiet: bool = False


def build_config(args: SimulateRequest) -> SimConfig:
    from antenna_elt.sim.users import load_users

    if args.malformed_share + args.duplicate_share + args.late_share > 1:
        raise UserError(
            "--malformed-share, --duplicate-share and --late-share add up to more than 1"
        )
    duration = args.duration
    count = args.count
    if duration is None and count is None:
        duration = 3600
    if count is None:
        assert duration is not None
        count = max(1, duration * DEFAULT_COUNT_PER_HOUR // 3600)
    if duration is None:
        duration = max(1, count * 3600 // DEFAULT_COUNT_PER_HOUR)
    start = (
        args.start
        if args.start is not None
        else default_start(int(time.time()), duration, args.speedup)
    )
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


def default_start(now: int, duration: int, speedup: float) -> int:
    """The latest hour start from which the simulated clock never runs ahead of the real
    one: the ingestors reject event times past their Kafka record's time (plus a few
    minutes of skew) as ``timestamp_in_future``. With ``speedup`` S > 1 the simulated
    clock gains (1 - 1/S) of the duration on the real one; unpaced (0), all of it; at
    S <= 1 it never gains, and the current hour it is."""
    gain = float(duration) if speedup <= 0 else max(0.0, duration * (1 - 1 / speedup))
    earliest = now - math.ceil(gain)
    return earliest - earliest % 3600


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


def simulate(args: SimulateRequest, settings: Settings) -> int:
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
